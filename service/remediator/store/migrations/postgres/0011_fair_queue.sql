-- Events are claimed fairly between notifications, not oldest first: `turn` is an event's
-- place among those its notification queued (0 for the first), and the claim takes the lowest
-- turn first, then the oldest. A flood of 10,000 alerts in one request queues turns 0 to 9,999;
-- an alert of another incident arriving after it is turn 0 of its own, claimed next, instead of
-- waiting behind the whole flood. Events of one alert are still claimed in their order.
ALTER TABLE alert_events ADD COLUMN turn integer NOT NULL DEFAULT 0;
CREATE INDEX alert_events_pending_by_turn ON alert_events (turn, id) WHERE done_at IS NULL;
