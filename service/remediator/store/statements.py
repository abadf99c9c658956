"""The store's rules as SQL both dialects run as written, so that each is written once.

Placeholders are PostgreSQL's `$1`, `$2`...; the SQLite backend binds them as `?1`, `?2`.
Values are always bound: these statements are constants.
"""

from __future__ import annotations

from remediator.store import rows

# The claim's condition on a candidate event `e`: it is the first of its alert still to do. A
# scalar subquery, one index probe per candidate: written as NOT EXISTS (an earlier one to do),
# PostgreSQL planned an anti-join over every pending event while the table had no statistics
# yet, 120-200 ms a claim with 1,000 events pending, against 1-5 ms for this.
FIRST_PENDING_OF_ITS_ALERT = (
    "e.id = (SELECT min(p.id) FROM alert_events p"
    " WHERE p.fingerprint = e.fingerprint AND p.done_at IS NULL)"
)


def claim_events(lock: str) -> str:
    """Lease to worker $1 until $2 the pending events nobody holds at $3 (or whose lease
    passed), at most $4, none while an earlier one of its alert is to do: the lowest turn in
    its notification first, then the oldest (fair between notifications: migration 0011).

    `lock` is how claimers are kept apart: PostgreSQL's `FOR UPDATE SKIP LOCKED`, or nothing
    where the claim runs under the database's write lock (SQLite). The outer `done_at IS NULL`
    keeps PostgreSQL on the pending index."""
    return (
        "UPDATE alert_events SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
        " WHERE done_at IS NULL AND id IN (SELECT id FROM alert_events e"
        " WHERE done_at IS NULL AND (lease_until IS NULL OR lease_until < $3)"
        f" AND {FIRST_PENDING_OF_ITS_ALERT} ORDER BY turn, id LIMIT $4 {lock})"
        f" RETURNING {rows.EVENT_COLUMNS}"
    )


def claim_outbox(lock: str) -> str:
    """Lease to worker $1 until $2 the messages due at $3 that nobody holds, at most $4, oldest
    first; `lock` as for `claim_events`."""
    return (
        "UPDATE outbox SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
        " WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
        " AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)"
        f" ORDER BY created_at, id LIMIT $4 {lock}) RETURNING {rows.OUTBOX_COLUMNS}"
    )


# A resolution under an older startsAt also ends the later episodes of its fingerprint still
# firing that began before its endsAt: an Alertmanager peer that merged a stale firing into a
# later episode keeps the earlier startsAt, and sends that episode's resolution under it (its
# cluster peers, told it was sent, never send theirs). Each such episode gets a resolution of its
# own, from the earliest resolution covering it (its `origin`), unless the payload carries one
# itself. One whose endsAt is at or before the later episode's startsAt leaves it alone.
#
# Over `incoming (fingerprint, starts_at, status, ends_at)`, the payload's distinct states,
# which the statement using this defines as a CTE before it. The alerts primary key finds the
# episodes (CROSS JOIN keeps the payload the outer loop in SQLite; PostgreSQL plans it freely).
OVERTAKEN = """
overtaken AS (
    SELECT a.fingerprint, a.starts_at, min(i.starts_at) AS origin
    FROM incoming AS i CROSS JOIN alerts AS a
    WHERE a.fingerprint = i.fingerprint AND a.starts_at > i.starts_at AND a.starts_at < i.ends_at
      AND i.status = 'resolved' AND a.status = 'firing'
      AND NOT EXISTS (SELECT 1 FROM incoming AS own WHERE own.status = 'resolved'
                      AND own.fingerprint = a.fingerprint AND own.starts_at = a.starts_at)
    GROUP BY a.fingerprint, a.starts_at
)"""

# A state delivered again bumps the episode's deliveries and last-received time; a late firing
# copy never reopens a resolved episode, and a resolved episode keeps the end its first
# resolution gave it. For `INSERT INTO alerts AS a (...)`.
ALERT_HEARD_AGAIN = """
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
    status = CASE WHEN a.status = 'resolved' THEN 'resolved' ELSE excluded.status END,
    annotations = excluded.annotations,
    ends_at = CASE WHEN a.status = 'resolved' THEN COALESCE(a.ends_at, excluded.ends_at)
                   ELSE COALESCE(excluded.ends_at, a.ends_at) END,
    last_received = excluded.last_received,
    deliveries = a.deliveries + 1,
    external_url = excluded.external_url
"""

# Each alert state is queued once, however often it is delivered.
EVENT_QUEUED_ONCE = "ON CONFLICT (fingerprint, starts_at, kind) DO NOTHING"

# A remediation saved again keeps what it was started from (its event, alert and start).
SAVE_REMEDIATION = (
    "INSERT INTO remediations (id, event_id, fingerprint, starts_at, alertname, kind, policy,"
    " policy_revision, outcome, guard, reason, run_id, target, plan, started_at, verify_until,"
    " finished_at, incident) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
    " $14, $15, $16, $17, $18) ON CONFLICT (id) DO UPDATE SET policy = excluded.policy,"
    " policy_revision = excluded.policy_revision, outcome = excluded.outcome,"
    " guard = excluded.guard, reason = excluded.reason, run_id = excluded.run_id,"
    " target = excluded.target, plan = excluded.plan, incident = excluded.incident,"
    " verify_until = excluded.verify_until, finished_at = excluded.finished_at"
)
# Whether an alert episode held in the shared incident $1 is still firing, other than the
# episode ($2, $3) whose resolution asks: one probe of the incident's index, then the alerts'
# primary key per remediation until one is found.
SHARED_INCIDENT_FIRING = (
    "SELECT 1 FROM remediations r JOIN alerts a"
    " ON a.fingerprint = r.fingerprint AND a.starts_at = r.starts_at"
    " WHERE r.incident = $1 AND a.status = 'firing'"
    " AND NOT (r.fingerprint = $2 AND r.starts_at = $3) LIMIT 1"
)
# The alert episodes still firing, the latest begun first, at most $1, each with its latest
# remediation: the firing ones through the partial index `alerts_firing` (migration 0015), the
# remediation by a probe of `remediations_by_alert` per episode.
FIRING_ALERTS = (
    f"WITH firing AS (SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE status = 'firing'"
    " ORDER BY starts_at DESC, fingerprint LIMIT $1)"
    " SELECT f.*, r.* FROM firing f LEFT JOIN"
    f" (SELECT {rows.REMEDIATION_COLUMNS} FROM remediations) r ON r.id = (SELECT x.id FROM"
    " remediations x WHERE x.fingerprint = f.fingerprint AND x.starts_at = f.starts_at"
    " ORDER BY x.started_at DESC, x.id DESC LIMIT 1)"
    " ORDER BY f.starts_at DESC, f.fingerprint"
)


def ledger(of_one_policy: bool) -> str:
    """The ledger: each firing remediation of a policy started at or after $1, oldest first,
    with its alert episode's end and whether a page (a trigger to a person's channel, not the
    outbox's own) was queued for it; `of_one_policy`, only policy $2's (its index: what a run
    reads to know whether its policy is to be demoted)."""
    policy = "r.policy = $2" if of_one_policy else "r.policy IS NOT NULL"
    return (
        "SELECT r.id, r.policy, r.target, r.fingerprint, r.starts_at, r.outcome, r.run_id,"
        " CAST(r.plan AS TEXT), r.started_at, r.finished_at, a.status, a.ends_at,"
        " EXISTS (SELECT 1 FROM outbox o WHERE o.remediation_id = r.id"
        " AND o.action = 'trigger' AND o.channel NOT IN ('ladder', 'hold'))"
        " FROM remediations r"
        " LEFT JOIN alerts a ON a.fingerprint = r.fingerprint AND a.starts_at = r.starts_at"
        f" WHERE r.kind = 'firing' AND {policy} AND r.started_at >= $1"
        " ORDER BY r.started_at, r.id"
    )


LEDGER = ledger(of_one_policy=False)
LEDGER_OF_POLICY = ledger(of_one_policy=True)
# The service's backlog ($1: now), for /metrics: each through a partial index.
BACKLOG_EVENTS = "SELECT count(*), min(enqueued_at) FROM alert_events WHERE done_at IS NULL"
BACKLOG_OUTBOX = (
    "SELECT channel, count(*), min(CASE WHEN attempts > 0 THEN created_at"
    " ELSE next_attempt_at END) FROM outbox"
    " WHERE sent_at IS NULL AND failed_at IS NULL AND channel NOT IN ('ladder', 'hold')"
    " AND (attempts > 0 OR next_attempt_at <= $1) GROUP BY channel ORDER BY channel"
)
BACKLOG_RUNS = (
    "SELECT outcome, count(*) FROM remediations"
    " WHERE outcome IN ('waiting', 'running', 'verifying', 'awaiting_approval')"
    " GROUP BY outcome ORDER BY outcome"
)
# An outbox entry whose id is already queued is left as it is. {rows}: VALUES or a SELECT.
ENQUEUE = (
    "INSERT INTO outbox (id, channel, action, dedup_key, remediation_id, message,"
    " created_at, next_attempt_at) {rows} ON CONFLICT (id) DO NOTHING"
)

# Retention: an alert episode and everything about it go together, and never while one of its
# events is still pending; an incident goes when its last message is old and none is to send.
OLD_EPISODES = (
    "SELECT fingerprint, starts_at FROM alerts a WHERE a.last_received < $1"
    " AND NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.fingerprint = a.fingerprint"
    " AND e.starts_at = a.starts_at AND e.done_at IS NULL)"
)
OLD_INCIDENTS = (
    "SELECT dedup_key FROM outbox GROUP BY dedup_key HAVING max(created_at) < $1"
    " AND min(CASE WHEN sent_at IS NOT NULL OR failed_at IS NOT NULL THEN 1 ELSE 0 END) = 1"
)
OLD_NOTIFICATIONS = (
    "DELETE FROM notifications WHERE received_at < $1 AND NOT EXISTS"
    " (SELECT 1 FROM alert_events e WHERE e.notification_id = notifications.id)"
)
# The rest, by the retention period's cutoff ($1); the guard runs by their own.
PRUNE_REST = (
    ("notifications", OLD_NOTIFICATIONS),
    ("outbox", f"DELETE FROM outbox WHERE dedup_key IN ({OLD_INCIDENTS})"),
    ("audit_log", "DELETE FROM audit_log WHERE at < $1"),
    # An alertname's first P1 page past a budget: a window at most an hour long ago.
    ("budget_firsts", "DELETE FROM budget_firsts WHERE since < $1"),
    # Answers to no request kept (its episode pruned before, or an id no request had).
    (
        "approval_answers",
        "DELETE FROM approval_answers WHERE at < $1 AND NOT EXISTS"
        " (SELECT 1 FROM approvals a WHERE a.id = approval_answers.approval_id)",
    ),
)
PRUNE_RUNS = "DELETE FROM runs WHERE admitted_at < $1"
# The requests seen, kept a replay window: by their own cutoff.
PRUNE_SEEN = "DELETE FROM seen_requests WHERE at < $1"

# Channel budgets (notify/budget.py): a channel's slots ($1) from $2 to $3 - 1, created once
# with a use long past; one taken at $4 when last used at or before $5 (a window ago), by one
# claimer (`lock` as for `claim_events`); when none is free, the first to free.
ADD_SLOT = (
    "INSERT INTO channel_slots (channel, slot, used_at) VALUES ($1, $2, $3)"
    " ON CONFLICT (channel, slot) DO NOTHING"
)


def take_slot(lock: str) -> str:
    return (
        "UPDATE channel_slots SET used_at = $4 WHERE channel = $1 AND slot = (SELECT slot"
        " FROM channel_slots WHERE channel = $1 AND slot >= $2 AND slot < $3 AND used_at <= $5"
        f" ORDER BY slot LIMIT 1 {lock}) RETURNING slot"
    )


FIRST_SLOT_FREE = (
    "SELECT min(used_at) FROM channel_slots WHERE channel = $1 AND slot >= $2 AND slot < $3"
)
# The alertname's ($2) first page past the channel's ($1) budget since $4: recorded at $3.
FIRST_PAST_BUDGET = (
    "INSERT INTO budget_firsts AS b (channel, alertname, since) VALUES ($1, $2, $3)"
    " ON CONFLICT (channel, alertname) DO UPDATE SET since = excluded.since"
    " WHERE b.since <= $4 RETURNING 1"
)
FIRST_PAST_BUDGET_AT = "SELECT since FROM budget_firsts WHERE channel = $1 AND alertname = $2"


def fold(ids: str) -> str:
    """The messages still to send of the ids ($1, `ids` how the dialect reads a list) folded
    at $2, saying so ($3): done, unsent."""
    return (
        "UPDATE outbox SET folded_at = $2, failed_at = $2, last_error = $3, claimed_by = NULL,"
        f" lease_until = NULL WHERE id IN ({ids}) AND sent_at IS NULL AND failed_at IS NULL"
        " RETURNING id"
    )


def folded_columns(field: str) -> str:
    """A folded message's columns (`rows.folded_message`); `field` reads a key of the message
    (`{}` its name), as each dialect reads JSON."""
    return (
        f"id, channel, action, dedup_key, {field.format('alertname')}, {field.format('level')},"
        " created_at, folded_at, folded_into"
    )


def adopt_folded(field: str) -> str:
    """The channel's ($1) folded messages not yet summarised, and the summary's ($2) own,
    taken in by it, saying so ($3)."""
    return (
        "UPDATE outbox SET folded_into = $2, last_error = $3 WHERE channel = $1"
        " AND folded_at IS NOT NULL AND (folded_into IS NULL OR folded_into = $2)"
        f" RETURNING {folded_columns(field)}"
    )


FOLDS = (
    "SELECT * FROM (SELECT NULL AS summary, channel, count(*) AS messages, NULL AS sent_at"
    " FROM outbox WHERE folded_at IS NOT NULL AND folded_into IS NULL GROUP BY channel"
    " UNION ALL SELECT * FROM (SELECT s.id, s.channel, count(*), s.sent_at FROM outbox s"
    " JOIN outbox f ON f.folded_into = s.id GROUP BY s.id, s.channel, s.sent_at, s.created_at"
    " ORDER BY s.created_at DESC, s.id DESC LIMIT $1) AS summarised) AS folds"
)

# At `resume`: each firing event whose alert episode is still firing and whose latest
# remediation was blocked by the kill switch is queued again, once (the next pause and resume
# is another once). Its earlier remediations stay as they were: the history says both.
DECIDE_AGAIN = (
    "UPDATE alert_events SET done_at = NULL, claimed_by = NULL, lease_until = NULL,"
    " attempts = 0, decide_again_at = $1"
    " WHERE kind = 'firing' AND done_at IS NOT NULL AND id IN ("
    " SELECT r.event_id FROM remediations r JOIN alerts a"
    " ON a.fingerprint = r.fingerprint AND a.starts_at = r.starts_at"
    " WHERE r.guard = 'kill_switch' AND a.status = 'firing' AND NOT EXISTS ("
    " SELECT 1 FROM remediations later WHERE later.fingerprint = r.fingerprint"
    " AND later.starts_at = r.starts_at AND (later.started_at > r.started_at"
    " OR (later.started_at = r.started_at AND later.id > r.id))))"
    " RETURNING id"
)

# Approvals (engine/approval.py). A request is written once, pending; its answers are appended.
REQUEST_APPROVAL = (
    "INSERT INTO approvals (id, remediation_id, event_id, fingerprint, starts_at, alertname,"
    " policy, position, step, action, target, params, digest, approvers, min_approvals,"
    " on_timeout, requested_at, expires_at, state, shown, decided_at) VALUES ($1, $2, $3, $4,"
    " $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
)
RECORD_ANSWER = (
    f"INSERT INTO approval_answers ({rows.ANSWER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
)
APPROVAL = f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals WHERE id = $1"
ANSWERS = (
    f"SELECT {rows.ANSWER_COLUMNS} FROM approval_answers WHERE approval_id = $1 ORDER BY at, id"
)


def answers_of(ids: str) -> str:
    """The answers to the requests of the ids ($1, `ids` how the dialect reads a list), each
    request's oldest first."""
    return (
        f"SELECT {rows.ANSWER_COLUMNS} FROM approval_answers WHERE approval_id IN ({ids})"
        " ORDER BY approval_id, at, id"
    )


# A pending request ($1) closed in state $2 at $3; the event to queue again, if it was pending.
CLOSE_APPROVAL = (
    "UPDATE approvals SET state = $2, decided_at = $3 WHERE id = $1 AND state = 'pending'"
    " RETURNING event_id"
)
# A closed request's firing event ($1) is queued again, for its run to go on (approved) or end
# (rejected, cancelled, expired): whoever holds it loses the claim (its completion no longer
# applies, so the queue keeps it), and its attempts start again.
QUEUE_ANSWERED = (
    "UPDATE alert_events SET done_at = NULL, claimed_by = NULL, lease_until = NULL, attempts = 0"
    " WHERE id = $1"
)
# A demotion ($1..$6, `rows.DEMOTION_COLUMNS`) recorded unless one is in force: a policy
# promoted before is demoted again, its row replaced.
DEMOTE = (
    f"INSERT INTO demotions AS d ({rows.DEMOTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (policy) DO UPDATE SET revision = excluded.revision,"
    " reason = excluded.reason, demoted_at = excluded.demoted_at,"
    " promoted_at = excluded.promoted_at, promoted_by = excluded.promoted_by"
    " WHERE d.promoted_at IS NOT NULL RETURNING 1"
)
PROMOTE = (
    "UPDATE demotions SET promoted_at = $2, promoted_by = $3"
    " WHERE policy = $1 AND promoted_at IS NULL RETURNING 1"
)
# A request's key ($1) seen at $2, the first time since $3 (a replay window ago): recorded, by
# one asker; seen since, left as it was (its first sighting stands).
FIRST_SEEN = (
    "INSERT INTO seen_requests AS s (key, at) VALUES ($1, $2)"
    " ON CONFLICT (key) DO UPDATE SET at = excluded.at WHERE s.at <= $3 RETURNING 1"
)
FORGET_SEEN = "DELETE FROM seen_requests WHERE at <= $1"
