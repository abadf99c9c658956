-- An alert held by the kill switch and still firing at `resume` is decided again, once: its
-- firing event is queued again (done_at cleared) and `decide_again_at` set to the resume, so
-- that the remediation the pause blocked (recorded before it) does not count as the event's.
ALTER TABLE alert_events ADD COLUMN decide_again_at TEXT;
-- GET /api/v1/runs/{id}/messages: a run's messages by an index, not a scan of the outbox.
CREATE INDEX outbox_by_remediation ON outbox (remediation_id) WHERE remediation_id IS NOT NULL;
