-- Approval of a risky change: a run stops before it until enough approvers approve. A request
-- is bound to a digest of what it would change (the policy, step, action, target and its
-- parameters as rendered); `shown` is what the approvers are shown.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    remediation_id TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    policy TEXT NOT NULL,
    position INTEGER NOT NULL,
    step TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    params TEXT NOT NULL,
    digest TEXT NOT NULL,
    approvers TEXT NOT NULL,
    min_approvals INTEGER NOT NULL,
    on_timeout TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'void')),
    shown TEXT NOT NULL,
    decided_at TEXT
);
-- The expiry sweep reads the few pending ones by their expiry, not every request kept.
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE state = 'pending';
CREATE INDEX approvals_by_event ON approvals (event_id);
CREATE INDEX approvals_by_remediation ON approvals (remediation_id);
CREATE INDEX approvals_by_requested_at ON approvals (requested_at DESC);
-- Retention: an alert episode's requests go with it.
CREATE INDEX approvals_by_alert ON approvals (fingerprint, starts_at);

-- Every answer given, as given: append-only, the audit of who approved what. One not taken
-- (not an approver, already answered, too late) is kept with verdict 'refused' and the reason.
CREATE TABLE approval_answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT NOT NULL,
    who TEXT NOT NULL,
    via TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'reject', 'cancel', 'refused')),
    note TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX approval_answers_by_approval ON approval_answers (approval_id, at);
-- One person gives one approval of a request, whatever reaches the store.
CREATE UNIQUE INDEX approval_answers_one_approval ON approval_answers (approval_id, who)
    WHERE verdict = 'approve';

-- A policy whose runs keep failing to fix its alert asks first until promoted again: the row
-- is in force while promoted_at is NULL; demoted again, it is replaced.
CREATE TABLE demotions (
    policy TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    reason TEXT NOT NULL,
    demoted_at TEXT NOT NULL,
    promoted_at TEXT,
    promoted_by TEXT
);

-- Requests seen (a Slack request's signature), so that a replay is refused on every replica.
CREATE TABLE seen_requests (
    key TEXT PRIMARY KEY,
    at TEXT NOT NULL
);
CREATE INDEX seen_requests_by_at ON seen_requests (at);
