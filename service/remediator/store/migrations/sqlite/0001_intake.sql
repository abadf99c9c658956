-- The raw bodies as received.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    group_key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    status TEXT NOT NULL,
    body BLOB NOT NULL
);

-- One row per alert episode: a fingerprint and the startsAt of that firing.
CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    ends_at TEXT,
    generator_url TEXT NOT NULL,
    first_received TEXT NOT NULL,
    last_received TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
-- For `remediator alerts` (newest first).
CREATE INDEX alerts_by_last_received ON alerts (last_received DESC);

-- Every state change of an episode (firing, resolved), once, with the notification it first
-- came in; and the queue of those changes for the engine: pending while done_at is NULL,
-- claimed in id order. notification_id has no foreign key, as in the PostgreSQL schema: it is
-- written in the same transaction as its notification.
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('firing', 'resolved')),
    notification_id INTEGER NOT NULL,
    enqueued_at TEXT NOT NULL,
    done_at TEXT,
    UNIQUE (fingerprint, starts_at, kind)
);
CREATE INDEX alert_events_pending ON alert_events (id) WHERE done_at IS NULL;
