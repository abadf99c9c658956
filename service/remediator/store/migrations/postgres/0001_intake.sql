-- The raw bodies as received.
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    group_key text NOT NULL,
    receiver text NOT NULL,
    status text NOT NULL,
    body bytea NOT NULL
);

-- One row per alert episode: a fingerprint and the startsAt of that firing. Labels and
-- annotations are `json` (validated text, kept as sent) rather than `jsonb`: building jsonb
-- for every alert of every notification was a sixth of the intake's database time.
CREATE TABLE alerts (
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    alertname text NOT NULL,
    status text NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels json NOT NULL,
    annotations json NOT NULL,
    ends_at timestamptz,
    generator_url text NOT NULL,
    first_received timestamptz NOT NULL,
    last_received timestamptz NOT NULL,
    deliveries integer NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
-- For `remediator alerts` (newest first).
CREATE INDEX alerts_by_last_received ON alerts (last_received DESC);

-- Every state change of an episode (firing, resolved), once, with the notification it first
-- came in; and the queue of those changes for the engine: pending while done_at is NULL,
-- claimed in id order. notification_id has no foreign key: it is written in the same
-- statement as its notification, and the check cost one trigger per row.
CREATE TABLE alert_events (
    id bigserial NOT NULL,
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('firing', 'resolved')),
    notification_id bigint NOT NULL,
    enqueued_at timestamptz NOT NULL,
    done_at timestamptz,
    PRIMARY KEY (fingerprint, starts_at, kind)
);
CREATE INDEX alert_events_pending ON alert_events (id) WHERE done_at IS NULL;
