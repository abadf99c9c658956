-- Remediation runs as the guards admitted them: what rate limits and breakers are re-seeded
-- from when their state is lost (a restart, an empty Redis).
CREATE TABLE runs (
    id text PRIMARY KEY,
    policy text NOT NULL,
    fingerprint text NOT NULL,
    target text NOT NULL,
    limit_keys json NOT NULL,
    breaker_key text NOT NULL,
    breaker_failures integer NOT NULL,
    breaker_window double precision NOT NULL,
    breaker_cooldown double precision NOT NULL,
    admitted_at timestamptz NOT NULL,
    finished_at timestamptz,
    succeeded boolean
);
CREATE INDEX runs_by_admitted_at ON runs (admitted_at);

-- What changed the guards' state, and who: breaker transitions, pause and resume.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    detail json NOT NULL
);

-- The kill switch: one row while paused. Durable, so a restart never resumes by itself.
CREATE TABLE pause (
    id integer PRIMARY KEY CHECK (id = 1),
    reason text NOT NULL,
    paused_by text NOT NULL,
    paused_at timestamptz NOT NULL
);
