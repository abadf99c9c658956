"""The production store: PostgreSQL through an asyncpg pool, shared by every replica.

A notification is one statement, so one transaction and one round trip, whatever the number of
alerts: the alerts travel as arrays and `unnest` turns them into rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import structlog

from remediator.alerts import AlertStatus, Notification
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary
from remediator.store.base import (
    NO_EARLIER_PENDING as _NO_EARLIER_PENDING,
)
from remediator.store.base import (
    AlertEvent,
    AlertRecord,
    AuditEntry,
    IntakeResult,
    OutboxEntry,
    Pause,
    Remediation,
    RunRecord,
    StepRecord,
    StoreUnavailable,
    distinct_states,
    json_text,
)
from remediator.store.migrations import migrations

T = TypeVar("T")
log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

# Any number, the same in every replica: migrations run under this advisory lock.
_MIGRATION_LOCK = 0x72656D6564

# An alert state is (fingerprint, startsAt, status); `origin` is the incoming state a row comes
# from. A resolution under an older startsAt also ends the later episodes of its fingerprint
# still firing that began before its endsAt: an Alertmanager peer that merged a stale firing
# into a later episode keeps the earlier startsAt, and sends that episode's resolution under it
# (its cluster peers, told it was sent, never send theirs). Each such episode gets a resolution
# of its own (the alerts primary key finds them), unless the payload carries one itself.
# `accepted` counts incoming states that queued an event, their own or an overtaken episode's.
_RECORD_NOTIFICATION = """
WITH notification AS (
    INSERT INTO notifications (received_at, group_key, receiver, status, body)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING id
), incoming AS (
    SELECT * FROM unnest($6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::json[],
                         $11::json[], $12::timestamptz[], $13::text[])
        AS i (fingerprint, starts_at, status, alertname, labels, annotations, ends_at,
              generator_url)
), overtaken AS (
    SELECT DISTINCT ON (a.fingerprint, a.starts_at) a.fingerprint, a.starts_at, i.status,
           i.alertname, i.labels, i.annotations, i.ends_at, i.generator_url,
           i.starts_at AS origin
    FROM incoming i JOIN alerts a ON a.fingerprint = i.fingerprint
        AND a.starts_at > i.starts_at AND a.starts_at < i.ends_at
    WHERE i.status = 'resolved' AND a.status = 'firing'
      AND (a.fingerprint, a.starts_at) NOT IN  -- a hashed subplan: no NULL in either
          (SELECT fingerprint, starts_at FROM incoming WHERE status = 'resolved')
    ORDER BY a.fingerprint, a.starts_at, i.starts_at
), states AS (
    SELECT *, starts_at AS origin FROM incoming UNION ALL SELECT * FROM overtaken
), queued AS (
    INSERT INTO alert_events (fingerprint, starts_at, kind, notification_id, enqueued_at)
    SELECT fingerprint, starts_at, status, (SELECT id FROM notification), $1 FROM states
    ORDER BY fingerprint, starts_at, status
    ON CONFLICT (fingerprint, starts_at, kind) DO NOTHING
    RETURNING fingerprint, starts_at, kind
), upserted AS (
    INSERT INTO alerts AS a (fingerprint, starts_at, alertname, status, labels, annotations,
                             ends_at, generator_url, first_received, last_received, deliveries,
                             external_url)
    SELECT DISTINCT ON (fingerprint, starts_at) fingerprint, starts_at, alertname, status,
           labels, annotations, ends_at, generator_url, $1, $1, 1, $14
    FROM states
    ORDER BY fingerprint, starts_at, status DESC
    ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
        status = CASE WHEN a.status = 'resolved' THEN 'resolved' ELSE excluded.status END,
        annotations = excluded.annotations,
        ends_at = CASE WHEN a.status = 'resolved' THEN COALESCE(a.ends_at, excluded.ends_at)
                       ELSE COALESCE(excluded.ends_at, a.ends_at) END,
        last_received = excluded.last_received,
        deliveries = a.deliveries + 1,
        external_url = excluded.external_url
    RETURNING 1
)
SELECT CASE WHEN NOT EXISTS (SELECT FROM overtaken) THEN (SELECT count(*) FROM queued)
    ELSE (SELECT count(DISTINCT (s.fingerprint, s.origin, s.status)) FROM queued q JOIN states s
          ON s.fingerprint = q.fingerprint AND s.starts_at = q.starts_at AND s.status = q.kind)
END
"""


_ALERT_COLUMNS = (
    "fingerprint, alertname, status, labels::text AS labels, annotations::text AS annotations,"
    " starts_at, ends_at, first_received, last_received, deliveries, generator_url, external_url"
)
_OUTBOX_SELECT = (
    "id, channel, action, dedup_key, remediation_id, message::text AS message, created_at,"
    " next_attempt_at, attempts, sent_at, failed_at, last_error"
)
_EVENT_COLUMNS = "id, fingerprint, starts_at, kind, notification_id, enqueued_at, attempts"
_REMEDIATION_COLUMNS = (
    "id, event_id, fingerprint, starts_at, alertname, kind, policy, policy_revision, outcome,"
    " guard, reason, run_id, target, plan, started_at, verify_until, finished_at"
)
_PLAIN_REMEDIATION_FIELDS = [
    name.strip() for name in _REMEDIATION_COLUMNS.split(",") if name.strip() != "plan"
]
_STEP_COLUMNS = (
    "remediation_id, phase, position, step_id, action, outcome, message, data, attempts,"
    " started_at, finished_at"
)

# The queue's statements find events by id through the pending index only: its predicate,
# `done_at IS NULL`, must appear in every one of them, or each claim and completion scans the
# whole table (done events are kept for the retention period).
_CLAIM_EVENTS = (
    "UPDATE alert_events SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
    " WHERE done_at IS NULL AND id IN (SELECT id FROM alert_events e"
    " WHERE done_at IS NULL AND (lease_until IS NULL OR lease_until < $3)"
    f" AND {_NO_EARLIER_PENDING}"
    " ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)"
    f" RETURNING {_EVENT_COLUMNS}"
)
# The messages go in as columns of arrays: one statement, so one round trip and one
# transaction, with the remediation whose turn they tell of (none: empty arrays).
_OUTBOX_ROWS = (
    "SELECT i, c, a, d, r, m::json, ca, na FROM unnest({}::text[], {}::text[], {}::text[],"
    " {}::text[], {}::text[], {}::text[], {}::timestamptz[], {}::timestamptz[])"
    " AS u(i, c, a, d, r, m, ca, na)"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (id, channel, action, dedup_key, remediation_id, message,"
    " created_at, next_attempt_at) {} ON CONFLICT (id) DO NOTHING"
)
_SAVE_REMEDIATION = (
    f"WITH saved AS (INSERT INTO remediations ({_REMEDIATION_COLUMNS}) VALUES ($1, $2, $3, $4,"
    " $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::json, $15, $16, $17)"
    " ON CONFLICT (id) DO UPDATE SET policy = excluded.policy,"
    " policy_revision = excluded.policy_revision, outcome = excluded.outcome,"
    " guard = excluded.guard, reason = excluded.reason, run_id = excluded.run_id,"
    " target = excluded.target, plan = excluded.plan,"
    " verify_until = excluded.verify_until, finished_at = excluded.finished_at) "
    + _INSERT_OUTBOX.format(_OUTBOX_ROWS.format(*(f"${n}" for n in range(18, 26))))
)
_ENQUEUE = _INSERT_OUTBOX.format(_OUTBOX_ROWS.format(*(f"${n}" for n in range(1, 9))))
_RENEW_EVENTS = (
    "UPDATE alert_events SET lease_until = $3"
    " WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND done_at IS NULL RETURNING id"
)
_COMPLETE_EVENTS = (
    "UPDATE alert_events SET done_at = $3"
    " WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND done_at IS NULL"
)


# Retention: an alert episode and everything about it go together, and never while one of its
# events is still pending. Values are bound; the statements are constants.
_OLD_EPISODES = (
    "SELECT fingerprint, starts_at FROM alerts a WHERE a.last_received < {cutoff}"
    " AND NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.fingerprint = a.fingerprint"
    " AND e.starts_at = a.starts_at AND e.done_at IS NULL)"
)
_OLD_INCIDENTS = (
    "SELECT dedup_key FROM outbox GROUP BY dedup_key HAVING max(created_at) < {cutoff}"
    " AND min(CASE WHEN sent_at IS NOT NULL OR failed_at IS NOT NULL THEN 1 ELSE 0 END) = 1"
)
_PRUNE_EPISODES = f"""
WITH gone AS (
    DELETE FROM alerts WHERE (fingerprint, starts_at) IN ({_OLD_EPISODES.format(cutoff="$1")})
    RETURNING fingerprint, starts_at
), events AS (
    DELETE FROM alert_events e USING gone g
    WHERE e.fingerprint = g.fingerprint AND e.starts_at = g.starts_at RETURNING 1
), remediations AS (
    DELETE FROM remediations r USING gone g
    WHERE r.fingerprint = g.fingerprint AND r.starts_at = g.starts_at RETURNING r.id
), steps AS (
    DELETE FROM remediation_steps s USING remediations r WHERE s.remediation_id = r.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS alerts, (SELECT count(*) FROM events) AS alert_events,
       (SELECT count(*) FROM remediations) AS remediations,
       (SELECT count(*) FROM steps) AS remediation_steps
"""
_PRUNE_REST = [
    (
        "notifications",
        "DELETE FROM notifications n WHERE n.received_at < $1 AND NOT EXISTS"
        " (SELECT 1 FROM alert_events e WHERE e.notification_id = n.id)",
    ),
    ("outbox", f"DELETE FROM outbox WHERE dedup_key IN ({_OLD_INCIDENTS.format(cutoff='$1')})"),
    ("audit_log", "DELETE FROM audit_log WHERE at < $1"),
]
# The name the postgres.* actions never signal: a runbook's clean-up of idle sessions on a
# server that also holds the store leaves the store's own sessions alone.
_SESSION = {"application_name": "remediator"}
_EVENTS_CHANNEL = "remediator_events"
# Wake-ups are sent after the intake's commit, in a transaction of their own, at most this
# often: PostgreSQL serialises the commits of every notifying transaction on one lock, so a
# NOTIFY inside each intake transaction would queue every acknowledgement behind the others.
_WAKE_EVERY = 0.05


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Lock()  # one listener, however many dispatchers ask at once
        self._waking: asyncio.Task[None] | None = None
        self._wake_again = False

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=5,
                timeout=5,
                reset=_keep_session,
                server_settings=_SESSION,
            )
            await _migrate(pool)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL store: {exc}") from exc
        return cls(pool, dsn)

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        async def in_connection() -> T:
            async with self._pool.acquire(timeout=5) as connection:
                return await work(connection)

        try:
            # Shielded: a cancelled request must not abandon a transaction half-way.
            return await asyncio.shield(in_connection())
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def record_notification(
        self, notification: Notification, body: bytes, received_at: datetime
    ) -> IntakeResult:
        alerts = distinct_states(notification)
        # One statement is one transaction: the body, the alerts and the new events commit
        # together, in one round trip.
        accepted: int = await self._run(
            lambda db: db.fetchval(
                _RECORD_NOTIFICATION,
                received_at,
                notification.group_key,
                notification.receiver,
                notification.status.value,
                body,
                [alert.fingerprint for alert in alerts],
                [alert.starts_at for alert in alerts],
                [alert.status.value for alert in alerts],
                [alert.alertname for alert in alerts],
                [json_text(alert.labels) for alert in alerts],
                [json_text(alert.annotations) for alert in alerts],
                [alert.ends_at for alert in alerts],
                [alert.generator_url for alert in alerts],
                notification.external_url,
            )
        )
        if accepted:
            self._wake_replicas()
        return IntakeResult(accepted=accepted, duplicates=len(notification.alerts) - accepted)

    def _wake_replicas(self) -> None:
        """Tell every replica listening that events were queued: one NOTIFY for the events
        committed meanwhile, however many, in its own transaction. The payload is the schema,
        so deployments sharing a database wake only their own replicas."""
        if self._waking is not None and not self._waking.done():
            self._wake_again = True
            return
        self._waking = asyncio.create_task(self._send_wakes())

    async def _send_wakes(self) -> None:
        self._wake_again = True
        while self._wake_again:
            self._wake_again = False
            try:
                await self._run(
                    lambda db: db.execute("SELECT pg_notify($1, current_schema())", _EVENTS_CHANNEL)
                )
            except StoreUnavailable as exc:  # the others' poll finds the work
                log.warning("replicas not woken", error=str(exc))
                return
            await asyncio.sleep(_WAKE_EVERY)

    async def recent_alerts(self, limit: int) -> list[AlertRecord]:
        rows = await self._run(
            lambda db: db.fetch(
                f"SELECT {_ALERT_COLUMNS} FROM alerts"
                " ORDER BY last_received DESC, fingerprint LIMIT $1",
                limit,
            )
        )
        return [_alert_record(row) for row in rows]

    async def pending_events(self, limit: int) -> list[AlertEvent]:
        rows = await self._run(
            lambda db: db.fetch(
                "SELECT id, fingerprint, starts_at, kind, notification_id, enqueued_at"
                " FROM alert_events WHERE done_at IS NULL ORDER BY id LIMIT $1",
                limit,
            )
        )
        return [_event(row, attempts=0) for row in rows]

    async def record_admission(self, run: RunRecord) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO runs (id, policy, fingerprint, target, limit_keys, breaker_key,"
                " breaker_failures, breaker_window, breaker_cooldown, admitted_at)"
                " VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8, $9, $10)",
                run.id,
                run.policy,
                run.fingerprint,
                run.target,
                json.dumps(list(run.limit_keys)),
                run.breaker_key,
                run.breaker_failures,
                run.breaker_window,
                run.breaker_cooldown,
                run.admitted_at,
            )
        )

    async def record_finish(self, run_id: str, succeeded: bool, at: datetime) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE runs SET finished_at = $2, succeeded = $3 WHERE id = $1",
                run_id,
                at,
                succeeded,
            )
        )

    async def runs_since(self, since: datetime) -> list[RunRecord]:
        rows = await self._run(
            lambda db: db.fetch(
                "SELECT id, policy, fingerprint, target, limit_keys::text, breaker_key,"
                " breaker_failures, breaker_window, breaker_cooldown, admitted_at, finished_at,"
                " succeeded FROM runs WHERE admitted_at >= $1 ORDER BY admitted_at, id",
                since,
            )
        )
        return [
            RunRecord(
                row["id"],
                row["policy"],
                row["fingerprint"],
                row["target"],
                tuple(json.loads(row["limit_keys"])),
                row["breaker_key"],
                row["breaker_failures"],
                row["breaker_window"],
                row["breaker_cooldown"],
                row["admitted_at"],
                row["finished_at"],
                row["succeeded"],
            )
            for row in rows
        ]

    async def audit(self, kind: str, subject: str, detail: dict[str, object], at: datetime) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO audit_log (at, kind, subject, detail) VALUES ($1, $2, $3, $4::json)",
                at,
                kind,
                subject,
                json.dumps(detail),
            )
        )

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        rows = await self._run(
            lambda db: db.fetch(
                "SELECT at, kind, subject, detail::text FROM audit_log ORDER BY id DESC LIMIT $1",
                limit,
            )
        )
        return [
            AuditEntry(row["at"], row["kind"], row["subject"], json.loads(row["detail"]))
            for row in rows
        ]

    async def set_pause(self, pause: Pause | None) -> None:
        if pause is None:
            await self._run(lambda db: db.execute("DELETE FROM pause"))
            return
        await self._run(
            lambda db: db.execute(
                "INSERT INTO pause (id, reason, paused_by, paused_at) VALUES (1, $1, $2, $3)"
                " ON CONFLICT (id) DO UPDATE SET reason = excluded.reason,"
                " paused_by = excluded.paused_by, paused_at = excluded.paused_at",
                pause.reason,
                pause.paused_by,
                pause.paused_at,
            )
        )

    async def pause(self) -> Pause | None:
        row = await self._run(
            lambda db: db.fetchrow("SELECT reason, paused_by, paused_at FROM pause")
        )
        return None if row is None else Pause(row["reason"], row["paused_by"], row["paused_at"])

    async def all_events(self, limit: int) -> list[AlertEvent]:
        rows = await self._run(
            lambda db: db.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM alert_events ORDER BY id LIMIT $1", limit
            )
        )
        return [_event(row) for row in rows]

    async def claim_events(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[AlertEvent]:
        rows = await self._run(
            lambda db: db.fetch(
                _CLAIM_EVENTS,
                worker,
                lease_until,
                now,
                limit,
            )
        )
        return sorted((_event(row) for row in rows), key=lambda event: event.id)

    async def renew_events(
        self, event_ids: Collection[int], worker: str, lease_until: datetime
    ) -> set[int]:
        rows = await self._run(
            lambda db: db.fetch(_RENEW_EVENTS, list(event_ids), worker, lease_until)
        )
        return {row["id"] for row in rows}

    async def complete_events(self, event_ids: Collection[int], worker: str, at: datetime) -> None:
        await self._run(lambda db: db.execute(_COMPLETE_EVENTS, list(event_ids), worker, at))

    async def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None:
        row = await self._run(
            lambda db: db.fetchrow(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE fingerprint = $1 AND starts_at = $2",
                fingerprint,
                starts_at,
            )
        )
        return None if row is None else _alert_record(row)

    async def save_remediation(
        self, remediation: Remediation, messages: Sequence[OutboxEntry] = ()
    ) -> None:
        r = remediation
        row = (
            r.id,
            r.event_id,
            r.fingerprint,
            r.starts_at,
            r.alertname,
            r.kind,
            r.policy,
            r.policy_revision,
            r.outcome,
            r.guard,
            r.reason,
            r.run_id,
            r.target,
            json.dumps(r.plan.as_json()),
            r.started_at,
            r.verify_until,
            r.finished_at,
        )
        columns = _outbox_columns(messages)
        await self._run(lambda db: db.execute(_SAVE_REMEDIATION, *row, *columns))

    async def record_step(self, step: StepRecord) -> None:
        await self._run(
            lambda db: db.execute(
                f"INSERT INTO remediation_steps ({_STEP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6,"
                " $7, $8::json, $9, $10, $11) ON CONFLICT (remediation_id, phase, position)"
                " DO UPDATE SET outcome = excluded.outcome, message = excluded.message,"
                " data = excluded.data, attempts = excluded.attempts,"
                " started_at = excluded.started_at, finished_at = excluded.finished_at",
                step.remediation_id,
                step.phase,
                step.position,
                step.step_id,
                step.action,
                step.outcome,
                step.message,
                json.dumps(step.data, default=str),
                step.attempts,
                step.started_at,
                step.finished_at,
            )
        )

    async def remediations_for(self, fingerprint: str, starts_at: datetime) -> list[Remediation]:
        return await self._remediations(
            "WHERE fingerprint = $1 AND starts_at = $2 ORDER BY started_at, id",
            fingerprint,
            starts_at,
        )

    async def overdue_verifications(self, now: datetime) -> list[Remediation]:
        return await self._remediations(
            "WHERE outcome = 'verifying' AND verify_until < $1 ORDER BY verify_until", now
        )

    async def verifying(self) -> list[Remediation]:
        return await self._remediations("WHERE outcome = 'verifying' ORDER BY verify_until")

    async def list_remediations(
        self, limit: int, alertname: str | None = None
    ) -> list[Remediation]:
        if alertname is None:
            return await self._remediations("ORDER BY started_at DESC, id LIMIT $1", limit)
        return await self._remediations(
            "WHERE alertname = $1 ORDER BY started_at DESC, id LIMIT $2", alertname, limit
        )

    async def remediation(self, remediation_id: str) -> Remediation | None:
        found = await self._remediations("WHERE id = $1", remediation_id)
        return found[0] if found else None

    async def steps(self, remediation_id: str) -> list[StepRecord]:
        rows = await self._run(
            lambda db: db.fetch(
                f"SELECT {_STEP_COLUMNS.replace('data', 'data::text')} FROM remediation_steps"
                " WHERE remediation_id = $1 ORDER BY started_at, phase, position",
                remediation_id,
            )
        )
        return [
            StepRecord(
                row["remediation_id"],
                row["phase"],
                row["position"],
                row["step_id"],
                row["action"],
                row["outcome"],
                row["message"],
                json.loads(row["data"]),
                row["attempts"],
                row["started_at"],
                row["finished_at"],
            )
            for row in rows
        ]

    async def _remediations(self, where: str, *parameters: Any) -> list[Remediation]:
        columns = _REMEDIATION_COLUMNS.replace("plan", "plan::text")
        rows = await self._run(
            lambda db: db.fetch(f"SELECT {columns} FROM remediations {where}", *parameters)
        )
        return [
            Remediation(
                **{name: row[name] for name in _PLAIN_REMEDIATION_FIELDS if name != "outcome"},
                outcome=RunOutcome(row["outcome"]),
                plan=PlanSummary.from_json(json.loads(row["plan"])),
            )
            for row in rows
        ]

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        columns = _outbox_columns(entries)
        await self._run(lambda db: db.execute(_ENQUEUE, *columns))

    async def claim_outbox(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        rows = await self._run(
            lambda db: db.fetch(
                "UPDATE outbox SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
                " AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)"
                " ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_OUTBOX_SELECT}",
                worker,
                lease_until,
                now,
                limit,
            )
        )
        return sorted((_outbox(row) for row in rows), key=lambda e: (e.created_at, e.id))

    async def outbox_done(
        self,
        entry_id: str,
        *,
        sent_at: datetime | None = None,
        failed_at: datetime | None = None,
        retry_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE outbox SET sent_at = $2, failed_at = $3,"
                " next_attempt_at = COALESCE($4, next_attempt_at), last_error = $5,"
                " claimed_by = NULL, lease_until = NULL WHERE id = $1",
                entry_id,
                sent_at,
                failed_at,
                retry_at,
                error,
            )
        )

    async def outbox_put_back(
        self, entry_id: str, *, retry_at: datetime | None = None, error: str | None = None
    ) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE outbox SET attempts = greatest(attempts - 1, 0),"
                " next_attempt_at = COALESCE($2, next_attempt_at),"
                " last_error = COALESCE($3, last_error), claimed_by = NULL, lease_until = NULL"
                " WHERE id = $1 AND sent_at IS NULL AND failed_at IS NULL",
                entry_id,
                retry_at,
                error,
            )
        )

    async def outbox_for(self, dedup_key: str) -> list[OutboxEntry]:
        rows = await self._run(
            lambda db: db.fetch(
                f"SELECT {_OUTBOX_SELECT} FROM outbox WHERE dedup_key = $1 ORDER BY created_at, id",
                dedup_key,
            )
        )
        return [_outbox(row) for row in rows]

    async def latest_outbox(self, dedup_key: str) -> list[OutboxEntry]:
        rows = await self._run(
            lambda db: db.fetch(
                f"SELECT * FROM (SELECT DISTINCT ON (channel) {_OUTBOX_SELECT} FROM outbox"
                " WHERE dedup_key = $1 ORDER BY channel, created_at DESC, id DESC) AS newest"
                " ORDER BY created_at, id",
                dedup_key,
            )
        )
        return [_outbox(row) for row in rows]

    async def watch_events(self, wake: Callable[[], None]) -> None:
        async with self._listening:
            await self._listen(wake)

    async def _listen(self, wake: Callable[[], None]) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return

        def on_notify(_: object, __: int, ___: str, schema: object) -> None:
            if schema == own_schema:
                wake()

        try:
            listener = await asyncpg.connect(self._dsn, timeout=5, server_settings=_SESSION)
            own_schema = await listener.fetchval("SELECT current_schema()")
            await listener.add_listener(_EVENTS_CHANNEL, on_notify)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("not listening for new events; polling instead", error=str(exc))
            return
        self._listener = listener
        log.info("listening for new events", channel=_EVENTS_CHANNEL)

    async def prune(self, before: datetime, runs_before: datetime) -> dict[str, int]:
        async def delete(db: Connection) -> dict[str, int]:
            async with db.transaction():
                row = await db.fetchrow(_PRUNE_EPISODES, before)
                counts: dict[str, int] = dict(row) if row is not None else {}
                for table, statement in _PRUNE_REST:
                    counts[table] = _deleted(await db.execute(statement, before))
                runs = await db.execute("DELETE FROM runs WHERE admitted_at < $1", runs_before)
                counts["runs"] = _deleted(runs)
                return counts

        return await self._run(delete)

    async def ping(self) -> None:
        await self._run(lambda db: db.fetchval("SELECT 1"))

    async def close(self) -> None:
        if self._waking is not None:
            await self._waking
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._pool.close()


def _outbox(row: asyncpg.Record) -> OutboxEntry:
    return OutboxEntry(
        row["id"],
        row["channel"],
        row["action"],
        row["dedup_key"],
        row["remediation_id"],
        json.loads(row["message"]),
        row["created_at"],
        row["next_attempt_at"],
        row["attempts"],
        row["sent_at"],
        row["failed_at"],
        row["last_error"],
    )


def _event(row: asyncpg.Record, attempts: int | None = None) -> AlertEvent:
    return AlertEvent(
        id=row["id"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        kind=AlertStatus(row["kind"]),
        notification_id=row["notification_id"],
        enqueued_at=row["enqueued_at"],
        attempts=row["attempts"] if attempts is None else attempts,
    )


def _deleted(status: str) -> int:
    """asyncpg's command status, `DELETE 3`, as the number."""
    return int(status.rpartition(" ")[2] or 0)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release, which skips asyncpg's default RESET ALL, UNLISTEN * etc.

    That default is one more round trip for every request, and there is nothing to reset: the
    store's statements set no session state (no SET, LISTEN, cursors or session advisory
    locks). asyncpg still rolls back a transaction left open before calling this.
    """


async def _migrate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as db, db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
        )
        applied = {
            row["version"] for row in await db.fetch("SELECT version FROM schema_migrations")
        }
        for migration in migrations("postgres"):
            if migration.version not in applied:
                await db.execute(migration.sql)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, now())",
                    migration.version,
                    migration.name,
                )


def _alert_record(row: Any) -> AlertRecord:
    return AlertRecord(
        fingerprint=row["fingerprint"],
        alertname=row["alertname"],
        status=AlertStatus(row["status"]),
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        first_received=row["first_received"],
        last_received=row["last_received"],
        deliveries=row["deliveries"],
        generator_url=row["generator_url"],
        external_url=row["external_url"],
    )


def _outbox_columns(entries: Sequence[OutboxEntry]) -> tuple[list[Any], ...]:
    """The entries as one array per column, for `_OUTBOX_ROWS`."""
    return (
        [e.id for e in entries],
        [e.channel for e in entries],
        [e.action for e in entries],
        [e.dedup_key for e in entries],
        [e.remediation_id for e in entries],
        [json.dumps(e.message) for e in entries],
        [e.created_at for e in entries],
        [e.next_attempt_at for e in entries],
    )
