-- The runs in flight, counted at every scrape of /metrics (remediator_runs_in_flight): a
-- look-up of the few unfinished remediations, not a scan of them all.
CREATE INDEX remediations_in_flight ON remediations (outcome)
    WHERE outcome IN ('waiting', 'running', 'verifying');
