CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    group_key text NOT NULL,
    receiver text NOT NULL,
    status text NOT NULL,
    body bytea NOT NULL
);

-- One row per alert episode: a fingerprint and the startsAt of that firing.
CREATE TABLE alerts (
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    alertname text NOT NULL,
    status text NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels jsonb NOT NULL,
    annotations jsonb NOT NULL,
    ends_at timestamptz,
    generator_url text NOT NULL,
    first_received timestamptz NOT NULL,
    last_received timestamptz NOT NULL,
    deliveries integer NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX alerts_by_last_received ON alerts (last_received DESC);

-- Every state change of an episode, with the notification it first came in.
CREATE TABLE alert_states (
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('firing', 'resolved')),
    notification_id bigint NOT NULL REFERENCES notifications (id),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (fingerprint, starts_at, status)
);

CREATE TABLE alert_events (
    id bigserial PRIMARY KEY,
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('firing', 'resolved')),
    notification_id bigint NOT NULL REFERENCES notifications (id),
    enqueued_at timestamptz NOT NULL,
    done_at timestamptz
);
CREATE INDEX alert_events_pending ON alert_events (id) WHERE done_at IS NULL;
