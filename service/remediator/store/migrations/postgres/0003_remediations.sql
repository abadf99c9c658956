-- The dispatcher's claim on a queued event: a lease it renews while it works, so that a crashed
-- worker's event is taken over once the lease has passed.
ALTER TABLE alert_events
    ADD COLUMN claimed_by text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0;

-- One row per alert event handled: the decision, the guard that blocked it or the run, and
-- how it ended. The audit trail of remediation, with the policy set's git revision.
CREATE TABLE remediations (
    id text PRIMARY KEY,
    event_id bigint NOT NULL,
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    alertname text NOT NULL,
    kind text NOT NULL,
    policy text,
    policy_revision text,
    outcome text NOT NULL,
    guard text,
    reason text NOT NULL,
    run_id text,
    target text,
    plan json NOT NULL,
    started_at timestamptz NOT NULL,
    verify_until timestamptz,
    finished_at timestamptz
);
CREATE INDEX remediations_by_alert ON remediations (fingerprint, starts_at);
CREATE INDEX remediations_by_started_at ON remediations (started_at DESC);
CREATE INDEX remediations_verifying ON remediations (verify_until) WHERE outcome = 'verifying';

-- Every step of a remediation as it ran: its result, the data it read, how many attempts.
CREATE TABLE remediation_steps (
    remediation_id text NOT NULL,
    phase text NOT NULL,
    position integer NOT NULL,
    step_id text,
    action text NOT NULL,
    outcome text NOT NULL,
    message text NOT NULL,
    data json NOT NULL,
    attempts integer NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    PRIMARY KEY (remediation_id, phase, position)
);
