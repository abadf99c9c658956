"""What both backends do with the same SQL, written once, one mixin a role.

Each backend's connection class implements `Database` (how a statement is sent and its rows
come back); its role mixins add what the dialects write differently: the intake, the claims,
a remediation saved with its messages, an answer to an approval request taken under the
request's lock (by the rule written here once, `take_answer`), and the retention's deletes.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from remediator.engine.ledger import LedgerEntry
from remediator.engine.outcome import RunOutcome
from remediator.store import rows, statements
from remediator.store.records import (
    AlertEvent,
    AlertRecord,
    ApprovalAnswer,
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    Backlog,
    ChannelBacklog,
    Demotion,
    FiringAlert,
    Fold,
    FoldedMessage,
    OutboxEntry,
    Pause,
    Remediation,
    RunMessage,
    RunQuery,
    RunRecord,
    StepRecord,
    Verdict,
)
from remediator.store.rows import Row


class Database:
    """One statement at a time, `$n` placeholders, rows as tuples (see `rows`)."""

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def _claim(self, sql: str, *args: Any) -> list[Row]:
        """An `UPDATE ... RETURNING` that leases rows to one worker: no two get the same."""
        raise NotImplementedError

    def _ids(self, ids: Collection[int]) -> object:
        """Ids as one parameter: what `= ANY($1)` or `IN (SELECT value FROM json_each($1))`
        takes."""
        raise NotImplementedError

    def _texts(self, texts: Collection[str]) -> object:
        """Texts as one parameter, as `_ids`."""
        raise NotImplementedError


# An id that starts with a prefix ($1, `starting_with`): `history --run 3f2a`.
STARTS_WITH = "LIKE $1 ESCAPE '\\'"


def starting_with(prefix: str) -> str:
    """The LIKE pattern of the ids starting with `prefix`, its own % and _ taken literally."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PortableAlertLog(Database):
    async def recent_alerts(self, limit: int) -> list[AlertRecord]:
        found = await self._fetch(
            f"SELECT {rows.ALERT_COLUMNS} FROM alerts"
            " ORDER BY last_received DESC, fingerprint LIMIT $1",
            limit,
        )
        return [rows.alert_record(row) for row in found]

    async def firing_alerts(self, limit: int) -> list[FiringAlert]:
        found = await self._fetch(statements.FIRING_ALERTS, limit)
        width = len(rows.ALERT_COLUMNS.split(", "))
        return [
            FiringAlert(
                rows.alert_record(row[:width]),
                rows.remediation(row[width:]) if row[width] is not None else None,
            )
            for row in found
        ]

    async def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None:
        found = await self._fetch(
            f"SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE fingerprint = $1 AND starts_at = $2",
            fingerprint,
            starts_at,
        )
        return rows.alert_record(found[0]) if found else None

    async def alerts_since(self, since: datetime) -> list[AlertRecord]:
        found = await self._fetch(
            f"SELECT {rows.ALERT_COLUMNS} FROM alerts WHERE starts_at >= $1 OR last_received >= $1"
            " ORDER BY starts_at, fingerprint",
            since,
        )
        return [rows.alert_record(row) for row in found]


class PortableEventQueue(Database):
    # Each dialect's: the claim (see `statements.FIRST_PENDING_OF_ITS_ALERT`), renewal and
    # completion of ($1 the ids, $2 the worker, $3 the lease's end or the time done).
    _CLAIM_EVENTS: str
    _RENEW_EVENTS: str
    _COMPLETE_EVENTS: str

    async def claim_events(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[AlertEvent]:
        found = await self._claim(self._CLAIM_EVENTS, worker, lease_until, now, limit)
        return [rows.alert_event(row) for row in sorted(found)]

    async def renew_events(
        self, event_ids: Collection[int], worker: str, lease_until: datetime
    ) -> set[int]:
        found = await self._fetch(self._RENEW_EVENTS, self._ids(event_ids), worker, lease_until)
        return {row[0] for row in found}

    async def complete_events(self, event_ids: Collection[int], worker: str, at: datetime) -> None:
        await self._execute(self._COMPLETE_EVENTS, self._ids(event_ids), worker, at)

    async def pending_events(self, limit: int) -> list[AlertEvent]:
        found = await self._fetch(
            "SELECT id, fingerprint, starts_at, kind, notification_id, enqueued_at"
            " FROM alert_events WHERE done_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
        return [rows.alert_event((*row, 0, None)) for row in found]

    async def all_events(self, limit: int) -> list[AlertEvent]:
        found = await self._fetch(
            f"SELECT {rows.EVENT_COLUMNS} FROM alert_events ORDER BY id LIMIT $1", limit
        )
        return [rows.alert_event(row) for row in found]


class PortableRunLedger(Database):
    async def record_admission(self, run: RunRecord) -> None:
        await self._execute(
            "INSERT INTO runs (id, policy, fingerprint, target, limit_keys, breaker_key,"
            " breaker_failures, breaker_window, breaker_cooldown, admitted_at, reach_keys)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *rows.run_row(run),
        )

    async def record_finish(self, run_id: str, succeeded: bool | None, at: datetime) -> None:
        await self._execute(
            "UPDATE runs SET finished_at = $2, succeeded = $3 WHERE id = $1", run_id, at, succeeded
        )

    async def runs_since(self, since: datetime) -> list[RunRecord]:
        found = await self._fetch(
            f"SELECT {rows.RUN_COLUMNS} FROM runs WHERE admitted_at >= $1 ORDER BY admitted_at, id",
            since,
        )
        return [rows.run_record(row) for row in found]

    async def record_step(self, step: StepRecord) -> None:
        await self._execute(
            "INSERT INTO remediation_steps (remediation_id, phase, position, step_id, action,"
            " outcome, message, data, attempts, started_at, finished_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (remediation_id, phase, position)"
            " DO UPDATE SET outcome = excluded.outcome, message = excluded.message,"
            " data = excluded.data, attempts = excluded.attempts,"
            " started_at = excluded.started_at, finished_at = excluded.finished_at",
            *rows.step_row(step),
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

    async def find_remediations(self, query: RunQuery) -> list[Remediation]:
        conditions: list[str] = []
        values: list[Any] = []
        for column, value, test in [
            ("alertname", query.alertname, "="),
            ("outcome", query.outcome, "="),
            ("policy", query.policy, "="),
            ("target", query.target, "="),
            ("started_at", query.since, ">="),
            ("started_at", query.until, "<"),
        ]:
            if value is not None:
                values.append(value)
                conditions.append(f"{column} {test} ${len(values)}")
        if query.after is not None:
            values += [query.after[0], query.after[1]]
            n = len(values)
            # `started_at <=` alone too: the index's bound, where the OR is only its filter.
            conditions.append(f"started_at <= ${n - 1} AND (started_at < ${n - 1} OR id > ${n})")
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        values.append(query.limit)
        return await self._remediations(
            f"{where}ORDER BY started_at DESC, id LIMIT ${len(values)}", *values
        )

    async def remediation(self, remediation_id: str) -> Remediation | None:
        found = await self._remediations("WHERE id = $1", remediation_id)
        return found[0] if found else None

    async def remediations_by_prefix(self, prefix: str, limit: int) -> list[Remediation]:
        return await self._remediations(
            f"WHERE id {STARTS_WITH} ORDER BY id LIMIT $2", starting_with(prefix), limit
        )

    async def last_fix(self, policy: str, target: str, since: datetime) -> Remediation | None:
        found = await self._remediations(
            "WHERE policy = $1 AND target = $2 AND outcome = 'succeeded' AND finished_at >= $3"
            " ORDER BY finished_at DESC LIMIT 1",
            policy,
            target,
            since,
        )
        return found[0] if found else None

    async def ledger_since(self, since: datetime, policy: str | None = None) -> list[LedgerEntry]:
        if policy is None:
            found = await self._fetch(statements.LEDGER, since)
        else:
            found = await self._fetch(statements.LEDGER_OF_POLICY, since, policy)
        return [rows.ledger_entry(row) for row in found]

    async def steps(self, remediation_id: str) -> list[StepRecord]:
        found = await self._fetch(
            f"SELECT {rows.STEP_COLUMNS} FROM remediation_steps WHERE remediation_id = $1"
            " ORDER BY started_at, phase, position",
            remediation_id,
        )
        return [rows.step(row) for row in found]

    async def shared_incident_firing(
        self, incident: str, fingerprint: str, starts_at: datetime
    ) -> bool:
        found = await self._fetch(
            statements.SHARED_INCIDENT_FIRING, incident, fingerprint, starts_at
        )
        return bool(found)

    async def _remediations(self, where: str, *parameters: Any) -> list[Remediation]:
        found = await self._fetch(
            f"SELECT {rows.REMEDIATION_COLUMNS} FROM remediations {where}", *parameters
        )
        return [rows.remediation(row) for row in found]


class PortableBacklog(Database):
    async def backlog(self, now: datetime) -> Backlog:
        [(events, oldest)] = await self._fetch(statements.BACKLOG_EVENTS)
        channels = await self._fetch(statements.BACKLOG_OUTBOX, now)
        runs = await self._fetch(statements.BACKLOG_RUNS)
        paused = await self._fetch("SELECT paused_at FROM pause")
        return Backlog(
            events=int(events),
            oldest_event=rows.maybe_time(oldest),
            channels=tuple(
                ChannelBacklog(channel, int(count), rows.time(due))
                for channel, count, due in channels
            ),
            in_flight=tuple((RunOutcome(outcome), int(count)) for outcome, count in runs),
            paused_at=rows.maybe_time(paused[0][0]) if paused else None,
        )


class PortableControlState(Database):
    async def decide_again_after_pause(self, at: datetime) -> int:
        return len(await self._claim(statements.DECIDE_AGAIN, at))

    async def set_pause(self, pause: Pause | None) -> None:
        if pause is None:
            await self._execute("DELETE FROM pause")
            return
        await self._execute(
            "INSERT INTO pause (id, reason, paused_by, paused_at) VALUES (1, $1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET reason = excluded.reason,"
            " paused_by = excluded.paused_by, paused_at = excluded.paused_at",
            pause.reason,
            pause.paused_by,
            pause.paused_at,
        )

    async def pause(self) -> Pause | None:
        found = await self._fetch(f"SELECT {rows.PAUSE_COLUMNS} FROM pause")
        return rows.pause(found[0]) if found else None

    async def audit(self, kind: str, subject: str, detail: dict[str, object], at: datetime) -> None:
        await self._execute(
            "INSERT INTO audit_log (at, kind, subject, detail) VALUES ($1, $2, $3, $4)",
            at,
            kind,
            subject,
            json.dumps(detail),
        )

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        found = await self._fetch(
            f"SELECT {rows.AUDIT_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT $1", limit
        )
        return [rows.audit_entry(row) for row in found]


class PortableOutbox(Database):
    # Each dialect's: the claim, and the newest message of an incident per channel in one
    # look-up.
    _CLAIM_OUTBOX: str
    _LATEST_OUTBOX: str

    async def claim_outbox(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        found = await self._claim(self._CLAIM_OUTBOX, worker, lease_until, now, limit)
        claimed = [rows.outbox_entry(row) for row in found]
        return sorted(claimed, key=lambda e: (e.created_at, e.id))

    async def outbox_done(
        self,
        entry_id: str,
        *,
        sent_at: datetime | None = None,
        failed_at: datetime | None = None,
        retry_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        await self._execute(
            "UPDATE outbox SET sent_at = $2, failed_at = $3,"
            " next_attempt_at = COALESCE($4, next_attempt_at), last_error = $5,"
            " claimed_by = NULL, lease_until = NULL WHERE id = $1",
            entry_id,
            sent_at,
            failed_at,
            retry_at,
            error,
        )

    async def outbox_put_back(
        self, entry_id: str, *, retry_at: datetime | None = None, error: str | None = None
    ) -> None:
        await self._execute(
            "UPDATE outbox SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
            " next_attempt_at = COALESCE($2, next_attempt_at),"
            " last_error = COALESCE($3, last_error), claimed_by = NULL, lease_until = NULL"
            " WHERE id = $1 AND sent_at IS NULL AND failed_at IS NULL",
            entry_id,
            retry_at,
            error,
        )

    async def run_messages(self, remediation_id: str) -> list[RunMessage]:
        found = await self._fetch(
            f"SELECT {rows.OUTBOX_COLUMNS}, folded_at FROM outbox WHERE remediation_id = $1"
            " ORDER BY created_at, id",
            remediation_id,
        )
        return [RunMessage(rows.outbox_entry(row[:-1]), rows.maybe_time(row[-1])) for row in found]

    async def outbox_for(self, dedup_key: str) -> list[OutboxEntry]:
        found = await self._fetch(
            f"SELECT {rows.OUTBOX_COLUMNS} FROM outbox WHERE dedup_key = $1"
            " ORDER BY created_at, id",
            dedup_key,
        )
        return [rows.outbox_entry(row) for row in found]

    async def latest_outbox(self, dedup_key: str) -> list[OutboxEntry]:
        found = await self._fetch(self._LATEST_OUTBOX, dedup_key)
        return [rows.outbox_entry(row) for row in found]


# A slot's first use, long past: free at once.
_NEVER_USED = datetime(2000, 1, 1, tzinfo=UTC)


class PortableBudgets(Database):
    # Each dialect's: the slot's claim, how a key of a message's JSON is read (`{}`), and the
    # fold of a list of ids (`statements.fold`).
    _TAKE_SLOT: str
    _FIELD: str
    _FOLD: str

    _slots_made: set[tuple[str, int]]

    async def take_slot(
        self, channel: str, slots: range, now: datetime, per: timedelta
    ) -> datetime | None:
        await self._make_slots(channel, slots)
        taken = await self._claim(self._TAKE_SLOT, channel, slots.start, slots.stop, now, now - per)
        if taken:
            return None
        found = await self._fetch(statements.FIRST_SLOT_FREE, channel, slots.start, slots.stop)
        return max(rows.time(found[0][0]) + per, now)

    async def _make_slots(self, channel: str, slots: range) -> None:
        """Each slot once, the first time this process asks for it."""
        made = self.__dict__.setdefault("_slots_made", set())
        for slot in slots:
            if (channel, slot) not in made:
                await self._execute(statements.ADD_SLOT, channel, slot, _NEVER_USED)
                made.add((channel, slot))

    async def first_past_budget(
        self, channel: str, alertname: str, now: datetime, per: timedelta
    ) -> datetime | None:
        if await self._claim(statements.FIRST_PAST_BUDGET, channel, alertname, now, now - per):
            return None
        found = await self._fetch(statements.FIRST_PAST_BUDGET_AT, channel, alertname)
        return rows.time(found[0][0]) if found else now

    async def fold(self, entry_ids: Collection[str], at: datetime, note: str) -> set[str]:
        found = await self._claim(self._FOLD, self._texts(entry_ids), at, note)
        return {row[0] for row in found}

    async def adopt_folded(self, channel: str, summary_id: str, note: str) -> list[FoldedMessage]:
        found = await self._claim(statements.adopt_folded(self._FIELD), channel, summary_id, note)
        return sorted((rows.folded_message(row) for row in found), key=_created)

    async def folds(self, limit: int) -> list[Fold]:
        return [rows.fold(row) for row in await self._fetch(statements.FOLDS, limit)]

    async def folded_into(
        self, summary_id: str, limit: int = 10_000, offset: int = 0
    ) -> list[FoldedMessage]:
        found = await self._fetch(
            f"SELECT {statements.folded_columns(self._FIELD)} FROM outbox"
            " WHERE folded_into = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
            summary_id,
            limit,
            offset,
        )
        return [rows.folded_message(row) for row in found]


def _created(message: FoldedMessage) -> tuple[datetime, str]:
    return message.created_at, message.id


class PortableApprovals(Database):
    # Each dialect's: the answers to a list of requests (`statements.answers_of`).
    _ANSWERS_OF: str

    async def record_answer(self, answer: ApprovalAnswer) -> None:
        await self._execute(statements.RECORD_ANSWER, *rows.answer_row(answer))

    async def approval(self, approval_id: str) -> ApprovalRequest | None:
        found = await self._approvals("WHERE id = $1", approval_id)
        return found[0] if found else None

    async def approvals_by_prefix(self, prefix: str, limit: int) -> list[ApprovalRequest]:
        return await self._approvals(
            f"WHERE id {STARTS_WITH} ORDER BY id LIMIT $2", starting_with(prefix), limit
        )

    async def approvals(self, state: ApprovalState | None, limit: int) -> list[ApprovalRequest]:
        if state is None:
            return await self._approvals("ORDER BY requested_at DESC, id DESC LIMIT $1", limit)
        return await self._approvals(
            "WHERE state = $1 ORDER BY requested_at DESC, id DESC LIMIT $2", state, limit
        )

    async def approvals_for_event(self, event_id: int) -> list[ApprovalRequest]:
        return await self._approvals("WHERE event_id = $1 ORDER BY requested_at, id", event_id)

    async def approvals_of_run(self, remediation_id: str) -> list[ApprovalRequest]:
        return await self._approvals(
            "WHERE remediation_id = $1 ORDER BY requested_at, id", remediation_id
        )

    async def due_approvals(self, now: datetime, limit: int) -> list[ApprovalRequest]:
        return await self._approvals(
            "WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2",
            now,
            limit,
        )

    async def demotion(self, policy: str) -> Demotion | None:
        found = await self._fetch(
            f"SELECT {rows.DEMOTION_COLUMNS} FROM demotions WHERE policy = $1", policy
        )
        return rows.demotion(found[0]) if found else None

    async def demotions(self) -> list[Demotion]:
        found = await self._fetch(f"SELECT {rows.DEMOTION_COLUMNS} FROM demotions ORDER BY policy")
        return [rows.demotion(row) for row in found]

    async def demote(self, demotion: Demotion) -> bool:
        return bool(await self._claim(statements.DEMOTE, *rows.demotion_row(demotion)))

    async def promote(self, policy: str, by: str, at: datetime) -> bool:
        return bool(await self._claim(statements.PROMOTE, policy, at, by))

    async def first_seen(self, key: str, at: datetime, keep: timedelta) -> bool:
        await self._execute(statements.FORGET_SEEN, at - keep)
        return bool(await self._claim(statements.FIRST_SEEN, key, at, at - keep))

    async def _approvals(self, where: str, *parameters: Any) -> list[ApprovalRequest]:
        """The requests, each with its answers: two reads, however many requests."""
        found = await self._fetch(
            f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals {where}", *parameters
        )
        if not found:
            return []
        answers = await self._fetch(self._ANSWERS_OF, self._texts([row[0] for row in found]))
        by_request = rows.answers_by_request(answers)
        return [rows.approval_request(row, by_request.get(row[0], [])) for row in found]


@dataclass(frozen=True)
class Taking:
    """What one answer does to a pending request, decided under the request's lock."""

    recorded: ApprovalAnswer  # as it is written: verdict `refused`, with the reason, if not taken
    counted: bool
    why: str  # why not, when it did not count
    closes: ApprovalState | None = None  # the state the request is left in, if it closes

    @property
    def queues_event(self) -> bool:
        """Closed: the request's firing event is queued again, for its run to go on or end."""
        return queues_event(self.closes)


def queues_event(closes: ApprovalState | None) -> bool:
    """A request closed by an answer or its ttl queues its run's event again: the runner goes
    on or ends the run. A void one does not: the runner voided it, and has the event."""
    return closes is not None and closes is not ApprovalState.VOID


_CLOSES = {Verdict.REJECT: ApprovalState.REJECTED, Verdict.CANCEL: ApprovalState.CANCELLED}


def take_answer(request: ApprovalRequest, answer: ApprovalAnswer, min_approvals: int) -> Taking:
    """The rule of `Approvals.answer_approval`, over the request as read under its lock: taken
    while pending and before its expiry; one approval a person; approved at `min_approvals`
    distinct approvers; a rejection or cancellation closes it."""
    answer = replace(answer, approval_id=request.id)

    def refused(why: str) -> Taking:
        return Taking(replace(answer, verdict=Verdict.REFUSED, note=why), False, why)

    if not request.state.open:
        return refused(f"already {request.state}")
    if answer.at >= request.expires_at:
        return refused(f"expired at {request.expires_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    if answer.verdict is Verdict.APPROVE:
        if answer.who in request.approved_by:
            return refused(f"already approved by {answer.who}: one person gives one approval")
        approvers = {*request.approved_by, answer.who}
        closes = ApprovalState.APPROVED if len(approvers) >= min_approvals else None
        return Taking(answer, True, "", closes)
    if answer.verdict in _CLOSES:
        return Taking(answer, True, "", _CLOSES[answer.verdict])
    return refused(answer.note or "refused")
