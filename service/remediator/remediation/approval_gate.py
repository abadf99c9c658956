"""A change that needs approval: the run stops before it and asks, and goes on once approved.

At the step, its `when` is read first: a change that would be skipped asks nobody. An approval
given for this very change (bound to its digest: policy, step, action, target, parameters)
lets it through. Otherwise the run asks. The request shows the change as its dry-run describes
it, the diagnostics read so far and the guards' state. The run lets its slot and its target's
lease go (`Runner.fire` releases them on the way out) and keeps its rate-limit spend: one run,
one spend. It ends this turn `awaiting_approval`, and its approvers hear through the
incident's channels.

A request that leaves `pending` (approved, rejected, cancelled, expired) queues its event again.
The runner then goes on (`Runner.fire`, resuming the run), or ends the run `rejected` or
`expired` (`close`). Nothing waits in a process meanwhile, so a replica that dies while a run
waits loses nothing: the event is claimed once, on whichever replica is alive.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from remediator.actions.base import StepContext
from remediator.alerts import Alert
from remediator.engine.approval import bound_to
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Plan, PlannedStep, approvers_asked
from remediator.guards.guards import Admitted, Guards
from remediator.notify.base import ApprovalAsk
from remediator.notify.escalator import IncidentStore
from remediator.policy.parameters import DIAGNOSTIC
from remediator.remediation.approvals import SHORT_ID
from remediator.remediation.record import Known, Recorder, breaker_of
from remediator.remediation.steps import StepAt, Steps, Trail, rendered
from remediator.store import (
    ApprovalAnswer,
    ApprovalRequest,
    Approvals,
    ApprovalState,
    ControlState,
    Remediation,
    Verdict,
)

log = structlog.get_logger(__name__)

EXPIRING = 100  # requests expired in one look
VOID = "void: "  # the note on an approval that no longer fits its change

# How a run ends when its request closed without an approval.
_ENDS = {
    ApprovalState.REJECTED: RunOutcome.REJECTED,
    ApprovalState.CANCELLED: RunOutcome.REJECTED,
    ApprovalState.EXPIRED: RunOutcome.EXPIRED,
    ApprovalState.VOID: RunOutcome.STOPPED,
}


class ApprovalStore(IncidentStore, Approvals, ControlState, Protocol):
    """What asking for approval keeps: the requests, beside the run's record and messages."""


class ApprovalGate:
    def __init__(
        self,
        store: ApprovalStore,
        guards: Guards,
        steps: Steps,
        record: Recorder,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._guards = guards
        self._steps = steps
        self._record = record
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def ask_or_pass(
        self,
        at: StepAt,
        plan: Plan,
        step: PlannedStep,
        context: StepContext,
        results: Mapping[str, Mapping[str, Any]],
        alert: Alert,
        trail: Trail,
        admitted: Admitted,
    ) -> Remediation | None:
        """None when the change may be made now (approved for exactly this, or not to be made:
        its `when` is false); else the run, stopped here to ask."""
        if step.approval is None or self._steps.not_run(step, results, alert) is not None:
            return None
        digest = bound_to(plan, at.position, step)
        asked = [
            request
            for request in await self._store.approvals_for_event(at.remediation.event_id)
            if request.position == at.position and request.state is ApprovalState.APPROVED
        ]
        if any(request.digest == digest for request in asked):
            return None
        for request in asked:  # approved, but for a change that is not this one any more
            if not any(answer.note.startswith(VOID) for answer in request.answers):
                await self._void(request, "what it approved changed (a reload, a new alert state)")
        # What the change would do, as its dry-run describes it: what the approvers are shown.
        described, _ = await self._steps.execute(
            step, replace(context, dry_run=True), results, alert
        )
        return await self._ask(at, plan, step, described.message, trail, admitted, digest)

    async def _ask(
        self,
        at: StepAt,
        plan: Plan,
        step: PlannedStep,
        change: str,
        trail: Trail,
        admitted: Admitted,
        digest: str,
    ) -> Remediation:
        assert step.approval is not None
        rule, run = step.approval, at.remediation
        now = self._now()
        request = ApprovalRequest(
            id=str(uuid.uuid4()),
            remediation_id=run.id,
            event_id=run.event_id,
            fingerprint=run.fingerprint,
            starts_at=run.starts_at,
            alertname=run.alertname,
            policy=plan.policy,
            position=at.position,
            step=step.name,
            action=step.action,
            target=plan.target_key,
            params=rendered(step.params),
            digest=digest,
            approvers=rule.approvers,
            min_approvals=rule.min_approvals,
            on_timeout=rule.on_timeout.value,
            requested_at=now,
            expires_at=now + rule.ttl,
            shown={
                "change": change,
                "steps": [
                    {"step": s.step_id or s.action, "outcome": s.outcome, "message": s.message}
                    for s in trail.values()
                ],
                "diagnostics": {
                    s.step_id or s.action: s.data
                    for s in trail.values()
                    if s.action in DIAGNOSTIC and s.data
                },
                "guards": await self._guards.standing(plan, admitted.run_id),
                **({"why": f"{rule.why}; "} if rule.why else {}),
            },
        )
        ask = ApprovalAsk(
            request.id,
            request.step,
            request.action,
            change,
            request.approvers,
            request.min_approvals,
            request.expires_at.isoformat(),
            request.on_timeout,
        )
        alert_record = await self._store.alert(run.fingerprint, run.starts_at)
        known = Known(alert_record, list(trail.values()), ask)
        awaiting, messages = await self._record.asking(run, asking(request, change), known)
        await self._store.request_approval(request, awaiting, messages)
        log.info("remediation awaits approval", remediation=run.id, approval=request.id)
        return awaiting

    async def close(
        self, parked: Remediation, request: ApprovalRequest | None, why: str | None = None
    ) -> Remediation:
        """End a run that asked and may not go on: its request closed without an approval
        (`request`), or, approved, it may not act now (`why`: blocked, or no longer
        planned). Nothing more is changed, and its breaker counts it neither way: a half-open
        breaker's trial that tried nothing lets the next run be the trial."""
        if parked.run_id is not None:
            await self._guards.record_outcome(parked.run_id, breaker_of(parked), None)
        if why is not None:
            outcome = RunOutcome.BLOCKED if parked.guard else RunOutcome.REFUSED
            return await self._record.end(parked, outcome, why)
        state = request.state if request is not None else ApprovalState.VOID
        return await self._record.end(parked, _ENDS[state], closed_because(request))

    async def resolved(self, parked: Remediation) -> Remediation:
        """The alert resolved while the run waited: its request is void, and it ends stopped."""
        for request in await self._store.approvals_of_run(parked.id):
            await self._void(request, "the alert resolved while it waited")
        if parked.run_id is not None:
            await self._guards.record_outcome(parked.run_id, breaker_of(parked), None)
        why = "the alert resolved while the run waited for approval: nothing more changed"
        stopped = replace(parked, outcome=RunOutcome.STOPPED, reason=why, finished_at=self._now())
        await self._store.save_remediation(stopped)  # its page is resolved by the caller
        return stopped

    async def expire(self) -> int:
        """Close the requests past their ttl as their `on_timeout` says; each queues its event
        again, for the runner to end the run or go on. How many."""
        now = self._now()
        closed = 0
        for request in await self._store.due_approvals(now, EXPIRING):
            approve = request.on_timeout == "approve"
            state = ApprovalState.APPROVED if approve else ApprovalState.EXPIRED
            note = f"no answer within its ttl: {'approved' if approve else 'rejected'} on timeout"
            answer = ApprovalAnswer(request.id, "remediator", "timeout", _verdict(state), note, now)
            if await self._store.close_approval(request.id, state, now, answer):
                closed += 1
                log.warning("approval request expired", approval=request.id, state=state.value)
        return closed

    async def _void(self, request: ApprovalRequest, why: str) -> None:
        now = self._now()
        answer = ApprovalAnswer(request.id, "remediator", "runner", Verdict.REFUSED, why, now)
        if request.state is ApprovalState.PENDING:
            await self._store.close_approval(request.id, ApprovalState.VOID, now, answer)
        else:
            await self._store.record_answer(replace(answer, note=f"{VOID}{why}"))


def _verdict(state: ApprovalState) -> Verdict:
    return Verdict.APPROVE if state is ApprovalState.APPROVED else Verdict.REJECT


def asking(request: ApprovalRequest, change: str) -> str:
    """The reason of a run waiting for approval: what, who, until when, and how to answer."""
    short = request.id[:SHORT_ID]
    then = "approved" if request.on_timeout == "approve" else "rejected"
    return (
        f"{request.shown.get('why', '')}"
        f"{request.step} ({request.action}) on {request.target} needs approval: {change};"
        f" by {approvers_asked(request.approvers, request.min_approvals)}, before"
        f" {request.expires_at:%Y-%m-%d %H:%M} UTC (then {then}); answer with"
        f" `remediator approvals approve {short}` (or reject), POST /api/v1/approvals/"
        f"{request.id}, or the Slack buttons"
    )


def closed_because(request: ApprovalRequest | None) -> str:
    if request is None:
        return "its approval request is gone: nothing more changed"
    last = request.answers[-1] if request.answers else None
    by = f" by {last.who} ({last.via})" if last is not None else ""
    note = f": {last.note}" if last is not None and last.note else ""
    what = f"{request.step} ({request.action})"
    return f"approval of {what} {request.state.value}{by}{note}: nothing more changed"


def approved_because(request: ApprovalRequest) -> str:
    return f"approved by {', '.join(request.approved_by) or 'timeout'}: making {request.step}"
