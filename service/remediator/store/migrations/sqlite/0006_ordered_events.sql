-- Events of one alert are claimed in order: an event waits while an earlier one of the same
-- fingerprint is not done, whoever holds it. This index answers that check for each candidate.
CREATE INDEX alert_events_pending_by_fingerprint ON alert_events (fingerprint, id)
    WHERE done_at IS NULL;
