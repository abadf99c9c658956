-- Several replicas: a statement that queues alert events tells the others at commit
-- (LISTEN remediator_events), so an idle replica starts at once instead of at its next poll.
-- Statement-level: one notification per intake statement, however many alerts it carries, and
-- none when it queued nothing (a repeat from Alertmanager: ON CONFLICT DO NOTHING).
-- The payload is the schema, so deployments sharing a database wake only their own replicas.
CREATE FUNCTION remediator_events_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM queued) THEN
        PERFORM pg_notify('remediator_events', current_schema());
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER alert_events_queued AFTER INSERT ON alert_events
    REFERENCING NEW TABLE AS queued
    FOR EACH STATEMENT EXECUTE FUNCTION remediator_events_queued();

-- Retention: raw bodies are pruned once no event refers to them.
CREATE INDEX alert_events_by_notification ON alert_events (notification_id);
CREATE INDEX audit_log_by_at ON audit_log (at);

-- An incident's state is the newest message per channel: one index range, however long its
-- history (a storm of alerts on one target appends to the same incident).
CREATE INDEX outbox_latest ON outbox (dedup_key, channel, created_at DESC, id DESC);

-- The Alertmanager an episode came from, for the silence link in its escalations.
ALTER TABLE alerts ADD COLUMN external_url TEXT NOT NULL DEFAULT '';
