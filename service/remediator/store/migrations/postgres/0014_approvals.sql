-- Approval of a risky change: a run stops before it until enough approvers approve. A request
-- is bound to a digest of what it would change (the policy, step, action, target and its
-- parameters as rendered); `shown` is what the approvers are shown.
CREATE TABLE approvals (
    id text PRIMARY KEY,
    remediation_id text NOT NULL,
    event_id bigint NOT NULL,
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    alertname text NOT NULL,
    policy text NOT NULL,
    position integer NOT NULL,
    step text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    params json NOT NULL,
    digest text NOT NULL,
    approvers json NOT NULL,
    min_approvals integer NOT NULL,
    on_timeout text NOT NULL,
    requested_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    state text NOT NULL
        CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'void')),
    shown json NOT NULL,
    decided_at timestamptz
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
    id bigserial PRIMARY KEY,
    approval_id text NOT NULL,
    who text NOT NULL,
    via text NOT NULL,
    verdict text NOT NULL CHECK (verdict IN ('approve', 'reject', 'cancel', 'refused')),
    note text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX approval_answers_by_approval ON approval_answers (approval_id, at);
-- One person gives one approval of a request, whatever reaches the store.
CREATE UNIQUE INDEX approval_answers_one_approval ON approval_answers (approval_id, who)
    WHERE verdict = 'approve';

-- A policy whose runs keep failing to fix its alert asks first until promoted again: the row
-- is in force while promoted_at is NULL; demoted again, it is replaced.
CREATE TABLE demotions (
    policy text PRIMARY KEY,
    revision text NOT NULL,
    reason text NOT NULL,
    demoted_at timestamptz NOT NULL,
    promoted_at timestamptz,
    promoted_by text
);

-- Requests seen (a Slack request's signature), so that a replay is refused on every replica.
CREATE TABLE seen_requests (
    key text PRIMARY KEY,
    at timestamptz NOT NULL
);
CREATE INDEX seen_requests_by_at ON seen_requests (at);
