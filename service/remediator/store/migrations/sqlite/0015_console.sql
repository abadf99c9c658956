-- The console (service/remediator/console). Its History page lists runs newest first
-- (started_at DESC, id) filtered by one of these columns and paged on from a cursor: each
-- filter reads its own index in that order, so a page costs the same whether the value is
-- common, rare or absent and however deep the page (without them, 17-33 ms a page over
-- 100,000 runs, a scan of them all, for a rare target or outcome, or a deep page).
CREATE INDEX remediations_by_alertname ON remediations (alertname, started_at DESC, id);
CREATE INDEX remediations_by_policy ON remediations (policy, started_at DESC, id);
CREATE INDEX remediations_by_target ON remediations (target, started_at DESC, id);
CREATE INDEX remediations_by_outcome ON remediations (outcome, started_at DESC, id);
-- Its Now page: the alerts still firing, the latest begun first, without reading the
-- resolved ones (nearly all of them).
CREATE INDEX alerts_firing ON alerts (starts_at DESC, fingerprint) WHERE status = 'firing';
