-- The dispatcher's claim on a queued event: a lease it renews while it works, so that a crashed
-- worker's event is taken over once the lease has passed.
ALTER TABLE alert_events ADD COLUMN claimed_by TEXT;
ALTER TABLE alert_events ADD COLUMN lease_until TEXT;
ALTER TABLE alert_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- One row per alert event handled: the decision, the guard that blocked it or the run, and
-- how it ended. The audit trail of remediation, with the policy set's git revision.
CREATE TABLE remediations (
    id TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    kind TEXT NOT NULL,
    policy TEXT,
    policy_revision TEXT,
    outcome TEXT NOT NULL,
    guard TEXT,
    reason TEXT NOT NULL,
    run_id TEXT,
    target TEXT,
    plan TEXT NOT NULL,
    started_at TEXT NOT NULL,
    verify_until TEXT,
    finished_at TEXT
);
CREATE INDEX remediations_by_alert ON remediations (fingerprint, starts_at);
CREATE INDEX remediations_by_started_at ON remediations (started_at DESC);

-- Every step of a remediation as it ran: its result, the data it read, how many attempts.
CREATE TABLE remediation_steps (
    remediation_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    position INTEGER NOT NULL,
    step_id TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (remediation_id, phase, position)
);
