-- Messages to people, written before they are sent: a message queued before a crash is sent
-- after it, and one marked sent is never sent again. Claimed under a lease, like events.
CREATE TABLE outbox (
    id text PRIMARY KEY,
    channel text NOT NULL,
    action text NOT NULL,
    dedup_key text NOT NULL,
    remediation_id text,
    message json NOT NULL,
    created_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    claimed_by text,
    lease_until timestamptz,
    sent_at timestamptz,
    failed_at timestamptz,
    last_error text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_by_dedup_key ON outbox (dedup_key);
