"""The embedded store: one SQLite file, in WAL mode with synchronous=FULL.

Each transaction runs whole on one dedicated thread, so a notification of 100 alerts is one
hop off the event loop rather than one per statement, and writes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from remediator.alerts import AlertStatus, Notification
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary
from remediator.store.base import (
    NO_EARLIER_PENDING,
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

_UPSERT_ALERT = """
INSERT INTO alerts (fingerprint, starts_at, alertname, status, labels, annotations, ends_at,
                    generator_url, first_received, last_received, deliveries, external_url)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
    status = CASE WHEN alerts.status = 'resolved' THEN 'resolved' ELSE excluded.status END,
    annotations = excluded.annotations,
    ends_at = CASE WHEN alerts.status = 'resolved' THEN COALESCE(alerts.ends_at, excluded.ends_at)
                   ELSE COALESCE(excluded.ends_at, alerts.ends_at) END,
    last_received = excluded.last_received,
    deliveries = alerts.deliveries + 1,
    external_url = excluded.external_url
"""
_QUEUE_EVENT = (
    "INSERT INTO alert_events (fingerprint, starts_at, kind, notification_id, enqueued_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint, starts_at, kind) DO NOTHING"
)
# The later episodes of a fingerprint still firing that a resolution under an older startsAt
# ends (see PostgresStore's intake): every resolution of the payload, (fingerprint, startsAt,
# endsAt), looked up by the alerts primary key in one query (CROSS JOIN keeps the payload the
# outer loop). `{rows}` is one `(?, ?, ?)` a resolution: placeholders only, values are bound.
_OVERTAKEN = """
WITH r (fingerprint, starts_at, ends_at) AS (VALUES {rows})
SELECT a.fingerprint, a.starts_at, r.starts_at AS origin FROM r CROSS JOIN alerts AS a
WHERE a.fingerprint = r.fingerprint AND a.starts_at > r.starts_at AND a.starts_at < r.ends_at
  AND a.status = 'firing'
"""
_OVERTAKEN_BATCH = 500  # resolutions a query: 1,500 values, well under SQLite's bound of 32,766


_ALERT_COLUMNS = (
    "fingerprint, alertname, status, labels, annotations, starts_at, ends_at, first_received,"
    " last_received, deliveries, generator_url, external_url"
)
_OUTBOX_COLUMNS = (
    "id, channel, action, dedup_key, remediation_id, message, created_at, next_attempt_at,"
    " attempts, sent_at, failed_at, last_error"
)
_EVENT_COLUMNS = "id, fingerprint, starts_at, kind, notification_id, enqueued_at, attempts"
_REMEDIATION_COLUMNS = (
    "id, event_id, fingerprint, starts_at, alertname, kind, policy, policy_revision, outcome,"
    " guard, reason, run_id, target, plan, started_at, verify_until, finished_at"
)
_STEP_COLUMNS = (
    "remediation_id, phase, position, step_id, action, outcome, message, data, attempts,"
    " started_at, finished_at"
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


class SQLiteStore:
    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._connection = connection
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, path)
        except sqlite3.Error as exc:
            executor.shutdown()
            raise StoreUnavailable(f"cannot open SQLite database {path}: {exc}") from exc
        return cls(connection, executor)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("SQLite store is closed")
        loop = asyncio.get_running_loop()
        try:
            # Shielded: a cancelled request must not abandon a transaction half-way.
            return await asyncio.shield(
                loop.run_in_executor(self._executor, work, self._connection)
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {type(exc).__name__}: {exc}") from exc

    async def record_notification(
        self, notification: Notification, body: bytes, received_at: datetime
    ) -> IntakeResult:
        return await self._run(lambda db: _record(db, notification, body, received_at))

    async def recent_alerts(self, limit: int) -> list[AlertRecord]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts"
                " ORDER BY last_received DESC, fingerprint LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [_alert_record(row) for row in rows]

    async def pending_events(self, limit: int) -> list[AlertEvent]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT id, fingerprint, starts_at, kind, notification_id, enqueued_at"
                " FROM alert_events WHERE done_at IS NULL ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [_event((*row, 0)) for row in rows]

    async def record_admission(self, run: RunRecord) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO runs (id, policy, fingerprint, target, limit_keys, breaker_key,"
                " breaker_failures, breaker_window, breaker_cooldown, admitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.policy,
                    run.fingerprint,
                    run.target,
                    json.dumps(list(run.limit_keys)),
                    run.breaker_key,
                    run.breaker_failures,
                    run.breaker_window,
                    run.breaker_cooldown,
                    _iso(run.admitted_at),
                ),
            )
        )

    async def record_finish(self, run_id: str, succeeded: bool, at: datetime) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE runs SET finished_at = ?, succeeded = ? WHERE id = ?",
                (_iso(at), int(succeeded), run_id),
            )
        )

    async def runs_since(self, since: datetime) -> list[RunRecord]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT id, policy, fingerprint, target, limit_keys, breaker_key,"
                " breaker_failures, breaker_window, breaker_cooldown, admitted_at, finished_at,"
                " succeeded FROM runs WHERE admitted_at >= ? ORDER BY admitted_at, id",
                (_iso(since),),
            ).fetchall()
        )
        return [
            RunRecord(
                row[0],
                row[1],
                row[2],
                row[3],
                tuple(json.loads(row[4])),
                row[5],
                int(row[6]),
                float(row[7]),
                float(row[8]),
                _time(row[9]),
                _time(row[10]) if row[10] else None,
                None if row[11] is None else bool(row[11]),
            )
            for row in rows
        ]

    async def audit(self, kind: str, subject: str, detail: dict[str, object], at: datetime) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO audit_log (at, kind, subject, detail) VALUES (?, ?, ?, ?)",
                (_iso(at), kind, subject, json.dumps(detail)),
            )
        )

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT at, kind, subject, detail FROM audit_log ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [
            AuditEntry(_time(at), kind, subject, json.loads(detail))
            for at, kind, subject, detail in rows
        ]

    async def set_pause(self, pause: Pause | None) -> None:
        def write(db: sqlite3.Connection) -> None:
            if pause is None:
                db.execute("DELETE FROM pause")
            else:
                db.execute(
                    "INSERT INTO pause (id, reason, paused_by, paused_at) VALUES (1, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET reason = excluded.reason,"
                    " paused_by = excluded.paused_by, paused_at = excluded.paused_at",
                    (pause.reason, pause.paused_by, _iso(pause.paused_at)),
                )

        await self._run(write)

    async def pause(self) -> Pause | None:
        row = await self._run(
            lambda db: db.execute("SELECT reason, paused_by, paused_at FROM pause").fetchone()
        )
        return None if row is None else Pause(row[0], row[1], _time(row[2]))

    async def all_events(self, limit: int) -> list[AlertEvent]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM alert_events ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        )
        return [_event(row) for row in rows]

    async def claim_events(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[AlertEvent]:
        def claim(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"UPDATE alert_events SET claimed_by = ?, lease_until = ?,"
                    f" attempts = attempts + 1 WHERE id IN (SELECT id FROM alert_events e"
                    f" WHERE done_at IS NULL AND (lease_until IS NULL OR lease_until < ?)"
                    f" AND {NO_EARLIER_PENDING} ORDER BY id LIMIT ?) RETURNING {_EVENT_COLUMNS}",
                    (worker, _iso(lease_until), _iso(now), limit),
                ).fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return sorted(rows)

        return [_event(row) for row in await self._run(claim)]

    async def renew_events(
        self, event_ids: Collection[int], worker: str, lease_until: datetime
    ) -> set[int]:
        ids = json.dumps(list(event_ids))
        rows = await self._run(
            lambda db: db.execute(
                "UPDATE alert_events SET lease_until = ? WHERE id IN (SELECT value FROM"
                " json_each(?)) AND claimed_by = ? AND done_at IS NULL RETURNING id",
                (_iso(lease_until), ids, worker),
            ).fetchall()
        )
        return {row[0] for row in rows}

    async def complete_events(self, event_ids: Collection[int], worker: str, at: datetime) -> None:
        ids = json.dumps(list(event_ids))
        await self._run(
            lambda db: db.execute(
                "UPDATE alert_events SET done_at = ? WHERE id IN (SELECT value FROM"
                " json_each(?)) AND claimed_by = ? AND done_at IS NULL",
                (_iso(at), ids, worker),
            )
        )

    async def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None:
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE fingerprint = ? AND starts_at = ?",
                (fingerprint, _iso(starts_at)),
            ).fetchone()
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
            _iso(r.starts_at),
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
            _iso(r.started_at),
            _iso(r.verify_until) if r.verify_until else None,
            _iso(r.finished_at) if r.finished_at else None,
        )
        rows = _outbox_rows(messages)

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(_SAVE_REMEDIATION, row)
                db.executemany(_ENQUEUE, rows)

        await self._run(write)

    async def record_step(self, step: StepRecord) -> None:
        await self._run(
            lambda db: db.execute(
                f"INSERT OR REPLACE INTO remediation_steps ({_STEP_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    step.remediation_id,
                    step.phase,
                    step.position,
                    step.step_id,
                    step.action,
                    step.outcome,
                    step.message,
                    json.dumps(step.data, default=str),
                    step.attempts,
                    _iso(step.started_at),
                    _iso(step.finished_at),
                ),
            )
        )

    async def remediations_for(self, fingerprint: str, starts_at: datetime) -> list[Remediation]:
        return await self._remediations(
            "WHERE fingerprint = ? AND starts_at = ? ORDER BY started_at, id",
            (fingerprint, _iso(starts_at)),
        )

    async def overdue_verifications(self, now: datetime) -> list[Remediation]:
        return await self._remediations(
            "WHERE outcome = 'verifying' AND verify_until < ? ORDER BY verify_until", (_iso(now),)
        )

    async def verifying(self) -> list[Remediation]:
        return await self._remediations("WHERE outcome = 'verifying' ORDER BY verify_until", ())

    async def list_remediations(
        self, limit: int, alertname: str | None = None
    ) -> list[Remediation]:
        if alertname is None:
            return await self._remediations("ORDER BY started_at DESC, id LIMIT ?", (limit,))
        return await self._remediations(
            "WHERE alertname = ? ORDER BY started_at DESC, id LIMIT ?", (alertname, limit)
        )

    async def remediation(self, remediation_id: str) -> Remediation | None:
        found = await self._remediations("WHERE id = ?", (remediation_id,))
        return found[0] if found else None

    async def steps(self, remediation_id: str) -> list[StepRecord]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_STEP_COLUMNS} FROM remediation_steps WHERE remediation_id = ?"
                " ORDER BY started_at, phase, position",
                (remediation_id,),
            ).fetchall()
        )
        return [
            StepRecord(
                row[0],
                row[1],
                int(row[2]),
                row[3],
                row[4],
                row[5],
                row[6],
                json.loads(row[7]),
                int(row[8]),
                _time(row[9]),
                _time(row[10]),
            )
            for row in rows
        ]

    async def _remediations(self, where: str, parameters: tuple[Any, ...]) -> list[Remediation]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_REMEDIATION_COLUMNS} FROM remediations {where}",
                parameters,
            ).fetchall()
        )
        return [
            Remediation(
                row[0],
                int(row[1]),
                row[2],
                _time(row[3]),
                row[4],
                row[5],
                row[6],
                row[7],
                RunOutcome(row[8]),
                row[9],
                row[10],
                row[11],
                row[12],
                PlanSummary.from_json(json.loads(row[13])),
                _time(row[14]),
                _time(row[15]) if row[15] else None,
                _time(row[16]) if row[16] else None,
            )
            for row in rows
        ]

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        rows = _outbox_rows(entries)

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(_ENQUEUE, rows)

        await self._run(write)

    async def claim_outbox(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        def claim(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"UPDATE outbox SET claimed_by = ?, lease_until = ?, attempts = attempts + 1"
                    f" WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL"
                    f" AND failed_at IS NULL AND next_attempt_at <= ?"
                    f" AND (lease_until IS NULL OR lease_until < ?)"
                    f" ORDER BY created_at, id LIMIT ?) RETURNING {_OUTBOX_COLUMNS}",
                    (worker, _iso(lease_until), _iso(now), _iso(now), limit),
                ).fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return rows

        rows = await self._run(claim)
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
                "UPDATE outbox SET sent_at = ?, failed_at = ?,"
                " next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?,"
                " claimed_by = NULL, lease_until = NULL WHERE id = ?",
                (
                    _iso(sent_at) if sent_at else None,
                    _iso(failed_at) if failed_at else None,
                    _iso(retry_at) if retry_at else None,
                    error,
                    entry_id,
                ),
            )
        )

    async def outbox_put_back(
        self, entry_id: str, *, retry_at: datetime | None = None, error: str | None = None
    ) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE outbox SET attempts = max(attempts - 1, 0),"
                " next_attempt_at = COALESCE(?, next_attempt_at),"
                " last_error = COALESCE(?, last_error), claimed_by = NULL, lease_until = NULL"
                " WHERE id = ? AND sent_at IS NULL AND failed_at IS NULL",
                (_iso(retry_at) if retry_at else None, error, entry_id),
            )
        )

    async def outbox_for(self, dedup_key: str) -> list[OutboxEntry]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE dedup_key = ? ORDER BY created_at, id",
                (dedup_key,),
            ).fetchall()
        )
        return [_outbox(row) for row in rows]

    async def latest_outbox(self, dedup_key: str) -> list[OutboxEntry]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY"
                " channel ORDER BY created_at DESC, id DESC) AS newest FROM outbox"
                " WHERE dedup_key = ?) WHERE newest = 1 ORDER BY created_at, id",
                (dedup_key,),
            ).fetchall()
        )
        return [_outbox(row) for row in rows]

    async def watch_events(self, wake: Callable[[], None]) -> None:
        """One process: its intake wakes its dispatcher directly."""

    async def prune(self, before: datetime, runs_before: datetime) -> dict[str, int]:
        cutoff, runs_cutoff = _iso(before), _iso(runs_before)
        episodes = _OLD_EPISODES.format(cutoff="?")
        statements = [
            (
                "remediation_steps",
                "DELETE FROM remediation_steps WHERE remediation_id IN (SELECT id FROM"
                f" remediations WHERE (fingerprint, starts_at) IN ({episodes}))",
                (cutoff,),
            ),
            (
                "remediations",
                f"DELETE FROM remediations WHERE (fingerprint, starts_at) IN ({episodes})",
                (cutoff,),
            ),
            (
                "alert_events",
                f"DELETE FROM alert_events WHERE (fingerprint, starts_at) IN ({episodes})",
                (cutoff,),
            ),
            (
                "alerts",
                f"DELETE FROM alerts WHERE (fingerprint, starts_at) IN ({episodes})",
                (cutoff,),
            ),
            (
                "notifications",
                "DELETE FROM notifications WHERE received_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM alert_events e WHERE e.notification_id = notifications.id)",
                (cutoff,),
            ),
            (
                "outbox",
                f"DELETE FROM outbox WHERE dedup_key IN ({_OLD_INCIDENTS.format(cutoff='?')})",
                (cutoff,),
            ),
            ("audit_log", "DELETE FROM audit_log WHERE at < ?", (cutoff,)),
            ("runs", "DELETE FROM runs WHERE admitted_at < ?", (runs_cutoff,)),
        ]

        def delete(db: sqlite3.Connection) -> dict[str, int]:
            counts = {}
            db.execute("BEGIN IMMEDIATE")
            try:
                for table, statement, parameters in statements:
                    counts[table] = db.execute(statement, parameters).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return counts

        return await self._run(delete)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if not self._closed:
            await self._run(lambda db: db.close())
            self._closed = True
            self._executor.shutdown()


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout=5000")  # first: another process may be migrating
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    _migrate(connection)
    return connection


def _migrate(db: sqlite3.Connection) -> None:
    """Under the database's write lock, taken before reading what is applied: processes
    starting together (`remediator migrate` beside `serve`) apply each migration once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for migration in migrations("sqlite"):
            if migration.version not in applied:
                for statement in _statements(migration.sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                    (migration.version, migration.name),
                )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """A migration's statements one by one (executescript would commit our transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        raise ValueError(f"unterminated statement in a migration: {pending.strip()[:80]!r}")
    return statements


def _record(
    db: sqlite3.Connection, notification: Notification, body: bytes, received_at: datetime
) -> IntakeResult:
    """What PostgresStore's one statement does: each state queued once, and a resolution under
    an older startsAt also ending the later episodes it covers."""
    received = _iso(received_at)
    accepted = 0
    states = [
        (alert, _iso(alert.starts_at), _iso(alert.ends_at) if alert.ends_at else None)
        for alert in distinct_states(notification)
    ]
    resolutions = [
        (alert.fingerprint, starts_at, ends_at)
        for alert, starts_at, ends_at in states
        if alert.status is AlertStatus.RESOLVED and ends_at is not None
    ]
    db.execute("BEGIN IMMEDIATE")
    try:
        notification_id = db.execute(
            "INSERT INTO notifications (received_at, group_key, receiver, status, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (received, notification.group_key, notification.receiver, notification.status, body),
        ).lastrowid
        overtaken = _overtaken(db, resolutions) if resolutions else {}
        for alert, starts_at, ends_at in states:
            fingerprint, status = alert.fingerprint, alert.status
            episodes = [starts_at]
            if status is AlertStatus.RESOLVED:
                episodes += overtaken.get((fingerprint, starts_at), ())
            queued = 0
            for episode in episodes:
                queued += db.execute(
                    _QUEUE_EVENT, (fingerprint, episode, status, notification_id, received)
                ).rowcount
                db.execute(
                    _UPSERT_ALERT,
                    (
                        fingerprint,
                        episode,
                        alert.alertname,
                        status,
                        json_text(alert.labels),
                        json_text(alert.annotations),
                        ends_at,
                        alert.generator_url,
                        received,
                        received,
                        notification.external_url,
                    ),
                )
            accepted += queued > 0  # its own event, or one of an episode it ended
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return IntakeResult(accepted=accepted, duplicates=len(notification.alerts) - accepted)


def _overtaken(
    db: sqlite3.Connection, resolutions: list[tuple[str, str, str]]
) -> dict[tuple[str, str], list[str]]:
    """The later firing episodes each resolution (fingerprint, startsAt) of the payload ends,
    as they were before it: each by the earliest resolution covering it, none that has a
    resolution of its own in the payload."""
    resolved_here = {(fingerprint, starts_at) for fingerprint, starts_at, _ in resolutions}
    ends: dict[tuple[str, str], list[str]] = {}
    taken: set[tuple[str, str]] = set()
    found: list[tuple[str, str, str]] = []
    for first in range(0, len(resolutions), _OVERTAKEN_BATCH):
        batch = resolutions[first : first + _OVERTAKEN_BATCH]
        query = _OVERTAKEN.format(rows=", ".join(["(?, ?, ?)"] * len(batch)))
        found += db.execute(query, [value for resolution in batch for value in resolution])
    for fingerprint, starts_at, origin in sorted(found):
        episode = (fingerprint, starts_at)
        if episode not in taken and episode not in resolved_here:
            taken.add(episode)
            ends.setdefault((fingerprint, origin), []).append(starts_at)
    return ends


def _outbox(row: tuple[Any, ...]) -> OutboxEntry:
    return OutboxEntry(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        json.loads(row[5]),
        _time(row[6]),
        _time(row[7]),
        int(row[8]),
        _time(row[9]) if row[9] else None,
        _time(row[10]) if row[10] else None,
        row[11],
    )


def _event(row: tuple[Any, ...]) -> AlertEvent:
    return AlertEvent(
        row[0], row[1], _time(row[2]), AlertStatus(row[3]), row[4], _time(row[5]), int(row[6])
    )


def _alert_record(row: tuple[object, ...]) -> AlertRecord:
    (fingerprint, alertname, status, labels, annotations, starts_at, ends_at) = row[:7]
    first_received, last_received, deliveries, generator_url, external_url = row[7:]
    return AlertRecord(
        fingerprint=str(fingerprint),
        alertname=str(alertname),
        status=AlertStatus(str(status)),
        labels=json.loads(str(labels)),
        annotations=json.loads(str(annotations)),
        starts_at=_time(starts_at),
        ends_at=_time(ends_at) if ends_at else None,
        first_received=_time(first_received),
        last_received=_time(last_received),
        deliveries=int(str(deliveries)),
        generator_url=str(generator_url),
        external_url=str(external_url),
    )


def _iso(moment: datetime) -> str:
    """UTC in one fixed format, so equal instants are equal keys and text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


_SAVE_REMEDIATION = (
    f"INSERT OR REPLACE INTO remediations ({_REMEDIATION_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ENQUEUE = (
    "INSERT INTO outbox (id, channel, action, dedup_key, remediation_id, message,"
    " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock at once: no upgrade to fail half-way) to COMMIT, or
    ROLLBACK on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _outbox_rows(entries: Sequence[OutboxEntry]) -> list[tuple[Any, ...]]:
    return [
        (
            e.id,
            e.channel,
            e.action,
            e.dedup_key,
            e.remediation_id,
            json.dumps(e.message),
            _iso(e.created_at),
            _iso(e.next_attempt_at),
        )
        for e in entries
    ]
