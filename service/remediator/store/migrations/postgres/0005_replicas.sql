-- Retention: raw bodies are pruned once no event refers to them, found by one hash anti-join
-- an hour (no index on alert_events.notification_id: it would cost every intake a write).
CREATE INDEX audit_log_by_at ON audit_log (at);

-- An incident's state is the newest message per channel: one index range, however long its
-- history (a storm of alerts on one target appends to the same incident).
CREATE INDEX outbox_latest ON outbox (dedup_key, channel, created_at DESC, id DESC);

-- The Alertmanager an episode came from, for the silence link in its escalations.
ALTER TABLE alerts ADD COLUMN external_url TEXT NOT NULL DEFAULT '';
