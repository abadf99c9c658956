"""Rows into records and records into rows, the same for both backends.

Each table's columns are selected in one order (JSON columns as text), so a row is a plain
tuple either dialect returns: times come back as `datetime` from PostgreSQL and as ISO text from
SQLite, and `time()` takes both. Records become tuples of Python values; each backend binds
them its own way (SQLite writes a time as fixed-format UTC text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pydantic_core

from remediator.alerts import Alert, AlertStatus, Notification
from remediator.engine.ledger import LedgerEntry
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary
from remediator.store.records import (
    AlertEvent,
    AlertRecord,
    ApprovalAnswer,
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    Demotion,
    Fold,
    FoldedMessage,
    OutboxEntry,
    Pause,
    Remediation,
    RunRecord,
    StepRecord,
    Verdict,
)

Row = tuple[Any, ...]

ALERT_COLUMNS = (
    "fingerprint, alertname, status, CAST(labels AS TEXT) AS labels,"
    " CAST(annotations AS TEXT) AS annotations, starts_at, ends_at, first_received,"
    " last_received, deliveries, generator_url, external_url"
)
EVENT_COLUMNS = (
    "id, fingerprint, starts_at, kind, notification_id, enqueued_at, attempts, decide_again_at"
)
RUN_COLUMNS = (
    "id, policy, fingerprint, target, CAST(limit_keys AS TEXT) AS limit_keys, breaker_key,"
    " breaker_failures, breaker_window, breaker_cooldown, admitted_at, finished_at, succeeded,"
    " CAST(reach_keys AS TEXT) AS reach_keys"
)
AUDIT_COLUMNS = "at, kind, subject, CAST(detail AS TEXT) AS detail"
PAUSE_COLUMNS = "reason, paused_by, paused_at"
REMEDIATION_COLUMNS = (
    "id, event_id, fingerprint, starts_at, alertname, kind, policy, policy_revision, outcome,"
    " guard, reason, run_id, target, CAST(plan AS TEXT) AS plan, started_at, verify_until,"
    " finished_at"
)
STEP_COLUMNS = (
    "remediation_id, phase, position, step_id, action, outcome, message,"
    " CAST(data AS TEXT) AS data, attempts, started_at, finished_at"
)
OUTBOX_COLUMNS = (
    "id, channel, action, dedup_key, remediation_id, CAST(message AS TEXT) AS message,"
    " created_at, next_attempt_at, attempts, sent_at, failed_at, last_error"
)
APPROVAL_COLUMNS = (
    "id, remediation_id, event_id, fingerprint, starts_at, alertname, policy, position, step,"
    " action, target, CAST(params AS TEXT) AS params, digest,"
    " CAST(approvers AS TEXT) AS approvers, min_approvals, on_timeout, requested_at,"
    " expires_at, state, CAST(shown AS TEXT) AS shown, decided_at"
)
ANSWER_COLUMNS = "approval_id, who, via, verdict, note, at"
DEMOTION_COLUMNS = "policy, revision, reason, demoted_at, promoted_at, promoted_by"


def time(value: object) -> datetime:
    """A time column as PostgreSQL (a datetime) or SQLite (ISO text) returns it."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def maybe_time(value: object) -> datetime | None:
    return None if value is None else time(value)


def alert_record(row: Row) -> AlertRecord:
    (fingerprint, alertname, status, labels, annotations, starts_at, ends_at) = row[:7]
    first_received, last_received, deliveries, generator_url, external_url = row[7:]
    return AlertRecord(
        fingerprint=fingerprint,
        alertname=alertname,
        status=AlertStatus(status),
        labels=json.loads(labels),
        annotations=json.loads(annotations),
        starts_at=time(starts_at),
        ends_at=maybe_time(ends_at),
        first_received=time(first_received),
        last_received=time(last_received),
        deliveries=int(deliveries),
        generator_url=generator_url,
        external_url=external_url,
    )


def alert_event(row: Row) -> AlertEvent:
    id_, fingerprint, starts_at, kind, notification_id, enqueued_at, attempts, again = row
    return AlertEvent(
        id_,
        fingerprint,
        time(starts_at),
        AlertStatus(kind),
        notification_id,
        time(enqueued_at),
        int(attempts),
        maybe_time(again),
    )


def run_record(row: Row) -> RunRecord:
    run_id, policy, fingerprint, target, limit_keys, breaker_key = row[:6]
    failures, window, cooldown, admitted_at, finished_at, succeeded, reach_keys = row[6:]
    return RunRecord(
        run_id,
        policy,
        fingerprint,
        target,
        tuple(json.loads(limit_keys)),
        breaker_key,
        int(failures),
        float(window),
        float(cooldown),
        time(admitted_at),
        maybe_time(finished_at),
        None if succeeded is None else bool(succeeded),
        tuple(json.loads(reach_keys)),
    )


def run_row(run: RunRecord) -> Row:
    """The columns of `RUN_COLUMNS` a run is admitted with (not yet finished)."""
    return (
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
        json.dumps(list(run.reach_keys)),
    )


def audit_entry(row: Row) -> AuditEntry:
    at, kind, subject, detail = row
    return AuditEntry(time(at), kind, subject, json.loads(detail))


def pause(row: Row) -> Pause:
    reason, paused_by, paused_at = row
    return Pause(reason, paused_by, time(paused_at))


def remediation(row: Row) -> Remediation:
    remediation_id, event_id, fingerprint, starts_at, alertname, kind = row[:6]
    policy, revision, outcome, guard, reason, run_id, target, plan = row[6:14]
    started_at, verify_until, finished_at = row[14:]
    return Remediation(
        remediation_id,
        int(event_id),
        fingerprint,
        time(starts_at),
        alertname,
        kind,
        policy,
        revision,
        RunOutcome(outcome),
        guard,
        reason,
        run_id,
        target,
        PlanSummary.from_json(json.loads(plan)),
        time(started_at),
        maybe_time(verify_until),
        maybe_time(finished_at),
    )


def ledger_entry(row: Row) -> LedgerEntry:
    """A row of `statements.LEDGER`."""
    remediation_id, policy, target, fingerprint, starts_at, outcome, run_id, plan = row[:8]
    started_at, finished_at, status, ends_at, paged = row[8:]
    return LedgerEntry(
        id=remediation_id,
        policy=policy,
        target=target,
        fingerprint=fingerprint,
        starts_at=time(starts_at),
        outcome=RunOutcome(outcome),
        run_id=run_id,
        # Only the plan's steps: reading back the whole summary was most of the time the
        # console's Policies page spent on 3,500 entries.
        actions=tuple(json.loads(plan).get("steps", ())),
        started_at=time(started_at),
        finished_at=maybe_time(finished_at),
        resolved_at=maybe_time(ends_at) if status == "resolved" else None,
        paged=bool(paged),
    )


def remediation_row(r: Remediation) -> Row:
    """In the order of `REMEDIATION_COLUMNS`, then the shared incident (of the plan, a column
    to look it up by)."""
    return (
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
        r.plan.incident,
    )


def step(row: Row) -> StepRecord:
    remediation_id, phase, position, step_id, action, outcome, message = row[:7]
    data, attempts, started_at, finished_at = row[7:]
    return StepRecord(
        remediation_id,
        phase,
        int(position),
        step_id,
        action,
        outcome,
        message,
        json.loads(data),
        int(attempts),
        time(started_at),
        time(finished_at),
    )


def step_row(step: StepRecord) -> Row:
    """In the order of `STEP_COLUMNS`."""
    return (
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


def outbox_entry(row: Row) -> OutboxEntry:
    entry_id, channel, action, dedup_key, remediation_id, message = row[:6]
    created_at, next_attempt_at, attempts, sent_at, failed_at, last_error = row[6:]
    return OutboxEntry(
        entry_id,
        channel,
        action,
        dedup_key,
        remediation_id,
        json.loads(message),
        time(created_at),
        time(next_attempt_at),
        int(attempts),
        maybe_time(sent_at),
        maybe_time(failed_at),
        last_error,
    )


def outbox_rows(entries: Sequence[OutboxEntry]) -> list[Row]:
    """The columns an entry is queued with (`statements.ENQUEUE`)."""
    return [
        (
            e.id,
            e.channel,
            e.action,
            e.dedup_key,
            e.remediation_id,
            json.dumps(e.message),
            e.created_at,
            e.next_attempt_at,
        )
        for e in entries
    ]


def distinct_states(notification: Notification) -> list[Alert]:
    """The payload's alerts with repeats of the same state dropped.

    An alert state is its fingerprint, startsAt and status: what Alertmanager sends again on
    repeat_interval and from each HA peer. The last copy wins, as it is the newest. Sorted by
    state, so concurrent writers lock rows in one order (no deadlock) and an episode's firing
    is queued before its resolution.
    """
    latest: dict[tuple[str, datetime, AlertStatus], Alert] = {}
    for alert in notification.alerts:
        latest[(alert.fingerprint, alert.starts_at, alert.status)] = alert
    return [latest[state] for state in sorted(latest)]


def json_text(value: dict[str, str]) -> str:
    """Labels or annotations as compact JSON text, the same in every store.

    pydantic-core's encoder: several times faster than json.dumps, and called for every alert.
    """
    return pydantic_core.to_json(value).decode()


def folded_message(row: Row) -> FoldedMessage:
    entry_id, channel, action, dedup_key, alertname, level, created_at, folded_at, into = row
    return FoldedMessage(
        entry_id,
        channel,
        action,
        dedup_key,
        str(alertname),
        str(level),
        time(created_at),
        time(folded_at),
        into,
    )


def fold(row: Row) -> Fold:
    summary, channel, messages, sent_at = row
    return Fold(summary, channel, int(messages), maybe_time(sent_at))


def approval_request(row: Row, answers: Sequence[Row]) -> ApprovalRequest:
    """A row of `APPROVAL_COLUMNS`, with its answers' rows (`ANSWER_COLUMNS`) in order."""
    approval_id, remediation_id, event_id, fingerprint, starts_at, alertname, policy = row[:7]
    position, step, action, target, params, digest, approvers, min_approvals = row[7:15]
    on_timeout, requested_at, expires_at, state, shown, decided_at = row[15:]
    return ApprovalRequest(
        id=approval_id,
        remediation_id=remediation_id,
        event_id=int(event_id),
        fingerprint=fingerprint,
        starts_at=time(starts_at),
        alertname=alertname,
        policy=policy,
        position=int(position),
        step=step,
        action=action,
        target=target,
        params=json.loads(params),
        digest=digest,
        approvers=tuple(json.loads(approvers)),
        min_approvals=int(min_approvals),
        on_timeout=on_timeout,
        requested_at=time(requested_at),
        expires_at=time(expires_at),
        state=ApprovalState(state),
        shown=json.loads(shown),
        decided_at=maybe_time(decided_at),
        answers=tuple(approval_answer(answer) for answer in answers),
    )


def approval_row(request: ApprovalRequest) -> Row:
    """In the order of `APPROVAL_COLUMNS` (its answers are rows of their own). The parameters
    are written strictly: they are what the approval is bound to, read back as they were."""
    return (
        request.id,
        request.remediation_id,
        request.event_id,
        request.fingerprint,
        request.starts_at,
        request.alertname,
        request.policy,
        request.position,
        request.step,
        request.action,
        request.target,
        json.dumps(request.params),
        request.digest,
        json.dumps(list(request.approvers)),
        request.min_approvals,
        request.on_timeout,
        request.requested_at,
        request.expires_at,
        request.state,
        json.dumps(request.shown, default=str),
        request.decided_at,
    )


def approval_answer(row: Row) -> ApprovalAnswer:
    approval_id, who, via, verdict, note, at = row
    return ApprovalAnswer(approval_id, who, via, Verdict(verdict), note, time(at))


def answer_row(answer: ApprovalAnswer) -> Row:
    """In the order of `ANSWER_COLUMNS`."""
    return (answer.approval_id, answer.who, answer.via, answer.verdict, answer.note, answer.at)


def answers_by_request(found: Sequence[Row]) -> dict[str, list[Row]]:
    """Answer rows (`ANSWER_COLUMNS`, in order) by the request they answer."""
    by_request: dict[str, list[Row]] = {}
    for row in found:
        by_request.setdefault(row[0], []).append(row)
    return by_request


def demotion(row: Row) -> Demotion:
    policy, revision, reason, demoted_at, promoted_at, promoted_by = row
    return Demotion(
        policy, revision, reason, time(demoted_at), maybe_time(promoted_at), promoted_by
    )


def demotion_row(d: Demotion) -> Row:
    """In the order of `DEMOTION_COLUMNS`."""
    return (d.policy, d.revision, d.reason, d.demoted_at, d.promoted_at, d.promoted_by)
