"""One alert event, from decision to the end of its run: decide, guard, act, await verification.

Every outcome is a Remediation row and every step a StepRecord, written as it happens, so a
crash leaves a run unfinished with its completed steps on record. The worker that takes the
event over starts a new run that skips what the interrupted one completed, and the actions read
before they write, so nothing completed is repeated blindly.

A run held only by the concurrency cap, or by another run on its target, waits its turn (up to
the guard rails' `wait_for_slot`) rather than being dropped; its page goes out at once when the
severity matrix says so, as for any run that begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from remediator.actions.base import WOULD_FAIL, Action, Outcome, StepContext
from remediator.actions.egress import REFUSED
from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide, escalation_by_severity
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import ApprovalRule, Decision, NoMatch, Plan, PlannedStep, Refused
from remediator.engine.summary import PlanSummary
from remediator.guards.guards import Admitted, Blocked, Guards, breaker_spec
from remediator.metrics import RunMetrics
from remediator.policy.durations import format_duration
from remediator.policy.parameters import CATALOGUE
from remediator.policy.policyset import PoliciesInForce
from remediator.remediation.approval_gate import ApprovalGate, ApprovalStore
from remediator.remediation.busy import Busy
from remediator.remediation.demotions import Demotions
from remediator.remediation.record import Decided, Known, Recorder, breaker_of, internal_error
from remediator.remediation.steps import (
    DEFAULT_RETRYING,
    HELD_BACK,
    STARTED,
    Retrying,
    StepAt,
    Steps,
    Trail,
)
from remediator.remediation.verification import Verification
from remediator.store import (
    AlertEvent,
    AlertRecord,
    ApprovalState,
    Remediation,
    StepRecord,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)

# Attempts at an event that a crash cut short.
_UNFINISHED = (RunOutcome.WAITING, RunOutcome.RUNNING, RunOutcome.INTERRUPTED)
# A run of the event an unexpected exception left going (a verifying one ran its steps).
_LEFT_GOING = (RunOutcome.WAITING, RunOutcome.RUNNING)
# A firing run whose mitigation the alert's resolution may undo.
_RAN = (
    RunOutcome.VERIFYING,
    RunOutcome.SUCCEEDED,
    RunOutcome.FAILED,
    RunOutcome.STOPPED,
    RunOutcome.DRY_RUN,
)
# Guards that only say "not now": a run they hold waits for its turn.
WAITING_FOR = frozenset({"concurrency", "target_lock"})
SLOT_POLL = 10.0  # seconds at most between asking again for a slot another replica may free
_RESOLVED_WHILE_WAITING = "the alert resolved while the run waited for its turn"


def _held_before_resume(remediation: Remediation, event: AlertEvent) -> bool:
    """The kill switch's block of an event queued again at its resume: not its handling."""
    again = event.decide_again_at
    return (
        again is not None and remediation.guard == "kill_switch" and remediation.started_at <= again
    )


class Runner:
    def __init__(
        self,
        store: ApprovalStore,
        guards: Guards,
        policies: PoliciesInForce,
        actions: Mapping[str, Action],
        *,
        clock: Callable[[], float] = time.time,
        retrying: Retrying = DEFAULT_RETRYING,
        check_interval: float = 15.0,
        metrics: RunMetrics | None = None,
        external_url: str | None = None,
    ) -> None:
        self._store = store
        self._guards = guards
        self._policies = policies
        self.record = Recorder(
            store, guards, policies, clock=clock, metrics=metrics, external_url=external_url
        )
        self.busy = Busy()
        self.steps = Steps(store, guards, actions, clock=clock, retrying=retrying, busy=self.busy)
        self.waiting: set[int] = set()  # events whose run waits for its turn (see `_admit`)
        self.verification = Verification(
            store, guards, policies, self.record, self.steps, clock=clock,
            check_interval=check_interval,
        )  # fmt: skip
        self.gate = ApprovalGate(store, guards, self.steps, self.record, clock=clock)
        self.demotions = Demotions(store, policies, clock=clock)

    def _now(self) -> datetime:
        return self.record.now()

    async def handle(self, event: AlertEvent) -> Remediation | None:
        """Take one claimed event as far as it goes now; the verification wait is left running.
        It works in one of the busy places (`Busy`), let go while it waits on an action or its
        turn."""
        async with self.busy.held():
            return await self._handle(event)

    async def _handle(self, event: AlertEvent) -> Remediation | None:
        record = await self._store.alert(event.fingerprint, event.starts_at)
        if record is None:
            log.error("event without its alert", event_id=event.id, fingerprint=event.fingerprint)
            return None
        earlier = await self._store.remediations_for(event.fingerprint, event.starts_at)
        parked = _parked(earlier, event)
        if parked is not None and event.kind is AlertStatus.FIRING:
            return await self._after_asking(event, record, parked)
        handled = [
            r
            for r in earlier
            if r.event_id == event.id
            and r.outcome not in _UNFINISHED
            and not _held_before_resume(r, event)
        ]
        if handled:
            # Its worker died after recording how the event went, before marking it done:
            # deciding again would act twice on one alert state.
            log.warning("event already handled; not again", event_id=event.id)
            await self.record.tell_if_untold(handled[-1])
            return handled[-1]
        attempts = await self._take_over(event, earlier)
        if event.kind is AlertStatus.RESOLVED:
            return await self._resolved(event, record, earlier)
        if record.status is AlertStatus.RESOLVED:
            why = "resolved before the run started"
            return await self.record.note(event, record, RunOutcome.SKIPPED, why)
        if any(r.outcome.active for r in earlier if r.event_id != event.id):
            log.info("a run for this alert is still going; not starting another", event_id=event.id)
            return None
        done = await self._completed_steps(attempts)
        # A change a dead worker made but did not live to record is found by the actions as
        # made "by this run": they compare with when the first attempt began.
        began = min((r.started_at for r in attempts), default=None)
        return await self.fire(event, record, done, began)

    async def errored(self, event: AlertEvent, error: Exception) -> Remediation | None:
        """Handling the event raised what nothing expected (a bug). Its run left going ends as
        an error, or an error is recorded for the event, escalated by the severity matrix
        whatever the policy's `escalate` says. Raises when the store cannot take it: the
        event is then not done, and is tried again once its claim lapses."""
        why = internal_error(error)
        earlier = await self._store.remediations_for(event.fingerprint, event.starts_at)
        going = [r for r in earlier if r.event_id == event.id and r.outcome in _LEFT_GOING]
        ended = None
        for remediation in going:  # (its guards' lease was let go on the way out)
            ended = await self.record.error(remediation, None, why)
        if ended is not None:
            return ended
        record = await self._store.alert(event.fingerprint, event.starts_at)
        if record is None:
            log.error("event without its alert", event_id=event.id, fingerprint=event.fingerprint)
            return None
        escalation = escalation_by_severity(record.labels, self._policies.current)
        decided = Decided(plan=PlanSummary.escalation_only(escalation))
        return await self.record.note(event, record, RunOutcome.ERROR, why, decided)

    async def housekeep(self) -> None:
        """End overdue verifications, check the due ones, close the approval requests past
        their ttl, and tell the guards' backend the run outcomes it missed while it was away."""
        await self.verification.check()
        await self.verification.expire()
        await self.gate.expire()
        await self._guards.settle()

    async def _after_asking(
        self, event: AlertEvent, record: AlertRecord, parked: Remediation
    ) -> Remediation:
        """The event of a run that asked for approval, queued again as its request closed: go
        on when approved (and the alert still fires), else end the run. A request still
        pending leaves it waiting (the event was delivered again, not answered)."""
        requests = await self._store.approvals_of_run(parked.id)
        request = requests[-1] if requests else None
        if request is not None and request.state is ApprovalState.PENDING:
            return parked
        if request is None or request.state is not ApprovalState.APPROVED:
            return await self.gate.close(parked, request)
        if record.status is AlertStatus.RESOLVED:
            return await self.gate.resolved(parked)
        done = await self._completed_steps([parked])
        return await self.fire(event, record, done, parked.started_at, resuming=parked)

    async def _take_over(
        self, event: AlertEvent, earlier: Sequence[Remediation]
    ) -> list[Remediation]:
        """Every earlier attempt at this event, the one a dead worker left going marked
        interrupted now: not only the last, as a worker killed twice leaves one of each."""
        attempts = [r for r in earlier if r.event_id == event.id and r.outcome in _UNFINISHED]
        for remediation in attempts:
            if remediation.outcome is not RunOutcome.INTERRUPTED:
                await self._store.save_remediation(
                    replace(remediation, outcome=RunOutcome.INTERRUPTED, finished_at=self._now())
                )
                log.warning("run interrupted; taking it over", remediation=remediation.id)
        return attempts

    async def fire(
        self,
        event: AlertEvent,
        record: AlertRecord,
        done: Mapping[tuple[str, int], StepRecord],
        began: datetime | None = None,
        *,
        resuming: Remediation | None = None,
    ) -> Remediation:
        """Decide and run; `resuming`, the run that asked for approval and has it, goes on
        from where it stopped, admitted again (its decision made anew: an approval binds to
        the change as it is decided now)."""
        alert = record.as_alert(event.kind)
        decision = decide(alert, self._policies.current, self._now())
        if resuming is not None:
            return await self._resume(resuming, record, decision, done, began)
        if isinstance(decision, NoMatch):
            decided = Decided(plan=PlanSummary.escalation_only(decision.escalation))
            why = "no policy matches: escalate only"
            return await self.record.note(event, record, RunOutcome.NO_MATCH, why, decided)
        if isinstance(decision, Refused):
            decided = Decided(
                decision.policy, plan=PlanSummary.escalation_only(decision.escalation)
            )
            return await self.record.note(
                event, record, RunOutcome.REFUSED, decision.reason, decided
            )
        fix = await self._lasting(decision)
        if fix is not None:
            return await self._recurred(event, record, decision, fix)
        started = await self._admit(event, record, decision)
        if isinstance(started, Remediation):
            return started  # blocked
        return await self._run(started, record, decision, done, began)

    async def _resume(
        self,
        parked: Remediation,
        record: AlertRecord,
        decision: Decision,
        done: Mapping[tuple[str, int], StepRecord],
        began: datetime | None,
    ) -> Remediation:
        """The approved run goes on, admitted again: the kill switch, its target's lease, its
        breaker and the cap are asked at the moment of acting (`Guards.readmit`)."""
        if not isinstance(decision, Plan):
            reason = decision.reason if isinstance(decision, Refused) else "no policy matches"
            why = f"approved, but the alert no longer plans this run: {reason}"
            return await self.gate.close(parked, None, why)
        plan = await self.demotions.applied(decision)
        assert parked.run_id is not None, "only a run asks for approval"
        admission = await self._guards.readmit(plan, parked.run_id)
        if isinstance(admission, Blocked):
            why = f"approved, but not now: {admission.reason}"
            return await self.gate.close(replace(parked, guard=admission.guard), None, why)
        remediation = await self.record.running(parked, parked.run_id)
        return await self._run((remediation, admission), record, plan, done, began)

    async def _run(
        self,
        started: tuple[Remediation, Admitted],
        record: AlertRecord,
        plan: Plan,
        done: Mapping[tuple[str, int], StepRecord],
        began: datetime | None,
    ) -> Remediation:
        """The admitted run's steps, each change asking first if its policy is demoted (known
        only now: a run the guards hold back changes nothing, and a storm of those reads no
        ledger); its slot and target's lease let go on the way out."""
        remediation, admitted = started
        try:
            plan = await self.demotions.applied(plan)
            return await self._run_steps(remediation, record, plan, admitted, done, began)
        except StoreUnavailable:
            raise  # the claim lapses; the next worker finds this run and takes it over
        except Exception as exc:  # a bug must not leave the alert's run `running` for ever
            log.exception("run failed unexpectedly", remediation=remediation.id)
            return await self.record.error(remediation, plan, internal_error(exc))
        finally:
            if admitted is not None:
                await self._guards.release(admitted)

    async def _lasting(self, plan: Plan) -> Remediation | None:
        """The policy's fix of this target verified within its `recurs_within`, if any: the
        alert firing again means that fix did not last."""
        if plan.recurs_within is None:
            return None
        since = self._now() - plan.recurs_within
        return await self._store.last_fix(plan.policy, plan.target_key, since)

    async def _recurred(
        self, event: AlertEvent, record: AlertRecord, plan: Plan, fix: Remediation
    ) -> Remediation:
        """Not run again: the earlier fix counts as failed (its breaker, the ledger), and the
        alert is escalated for a person to look at the cause."""
        assert plan.recurs_within is not None
        verified = fix.finished_at or fix.started_at
        why = (
            f"the fix did not last: {record.alertname} fired again on {plan.target_key} "
            f"{format_duration(self._now() - verified)} after run {fix.id[:8]} was verified "
            f"(recurs_within {format_duration(plan.recurs_within)}); counted as a failed fix, "
            "not run again: the cause needs a person"
        )
        if fix.run_id is not None:
            await self._guards.count_recurrence(plan, fix.run_id)
        decided = Decided.of(plan, guard="recurrence")
        return await self.record.note(event, record, RunOutcome.BLOCKED, why, decided)

    async def _admit(
        self, event: AlertEvent, record: AlertRecord, plan: Plan
    ) -> tuple[Remediation, Admitted] | Remediation:
        """The guards' answer: a run begun (live, or dry-run's against guard state of its own),
        or its block recorded. Held only by the cap or the target's lease, it waits for its turn
        first."""
        admission = await self._guards.admit(plan)
        waiting = None
        if isinstance(admission, Blocked) and admission.guard in WAITING_FOR:
            wait = self._policies.current.guardrails.wait_for_slot
            why = f"waiting up to {format_duration(wait)} for its turn: {admission.reason}"
            decided = Decided.of(plan, guard=admission.guard)
            waiting = await self.record.note(event, record, RunOutcome.WAITING, why, decided)
            self.waiting.add(event.id)
            try:
                turn = await self._wait_for_turn(record.as_alert(event.kind), plan, admission, wait)
            finally:
                self.waiting.discard(event.id)
            if turn is None:
                return await self.record.end(waiting, RunOutcome.STOPPED, _RESOLVED_WHILE_WAITING)
            admission = turn
        if isinstance(admission, Blocked):
            if waiting is not None:
                blocked = replace(waiting, guard=admission.guard)
                return await self.record.end(blocked, RunOutcome.BLOCKED, admission.reason)
            # (A run that waited first keeps its own incident: its page may be out already.)
            decided = Decided.of(plan, guard=admission.guard, incident=admission.incident)
            return await self.record.note(
                event, record, RunOutcome.BLOCKED, admission.reason, decided
            )
        admitted, run_id = admission, admission.run_id
        if waiting is not None:
            return await self.record.running(waiting, run_id), admitted
        reason = "dry-run" if admitted.shadow else ""
        decided = Decided.of(plan, run_id=run_id)
        running = await self.record.note(event, record, RunOutcome.RUNNING, reason, decided)
        return running, admitted

    async def _wait_for_turn(
        self, alert: Alert, plan: Plan, blocked: Blocked, wait: timedelta
    ) -> Admitted | Blocked | None:
        """Ask again when this process frees a target and slot and it is this run's turn
        (oldest first), and at least every SLOT_POLL seconds (for a slot another replica frees:
        from 1 s, backing off to SLOT_POLL), until admitted, blocked by anything else, or
        `wait` has passed; None if the alert resolved meanwhile."""
        admission: Admitted | Blocked = blocked
        poll = 1.0
        try:
            async with asyncio.timeout(wait.total_seconds()):
                while isinstance(admission, Blocked) and admission.guard in WAITING_FOR:
                    async with self.busy.let_go():
                        turn = await self._guards.freed(poll * random.uniform(0.8, 1.2))
                    poll = min(poll * 1.5, SLOT_POLL)
                    if await self._resolved_meanwhile(alert):
                        if turn:
                            self._guards.pass_on()
                        return None
                    admission = await self._guards.admit(plan, quiet=True)
                    if turn and _blocked_by(admission, "target_lock"):
                        self._guards.pass_on()  # its own target is held: the slot is another's
        except TimeoutError:
            assert isinstance(admission, Blocked)
            waited = format_duration(wait)
            admission = replace(
                admission, reason=f"waited {waited} for its turn: {admission.reason}"
            )
        self._guards.tell(plan, admission)
        return admission

    async def _run_steps(
        self,
        remediation: Remediation,
        record: AlertRecord,
        plan: Plan,
        admitted: Admitted | None,
        done: Mapping[tuple[str, int], StepRecord],
        began: datetime | None,
    ) -> Remediation:
        alert = record.as_alert(AlertStatus.FIRING)
        dry = admitted is None or admitted.shadow
        context = StepContext(plan.target, dry, began or remediation.started_at)
        trail: Trail = {}
        timeout = self._policies.current.guardrails.run_timeout.total_seconds()
        renewing = asyncio.create_task(self._keep_lease(admitted)) if admitted else None
        try:
            async with asyncio.timeout(timeout):
                ended = await self._each_step(
                    remediation, alert, plan, admitted, done, context, trail
                )
        except TimeoutError:
            limit = format_duration(timedelta(seconds=timeout))
            why = f"steps still running after run_timeout {limit}"
            return await self.record.fail(remediation, plan, why)
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
        if isinstance(ended, Remediation):
            return ended
        known = Known(record, list(trail.values()))  # what the messages tell of: no read again
        if admitted is None or admitted.shadow:
            if admitted is not None:  # its slot is free again, and its breaker counts no failure
                await self._guards.record_outcome(admitted.run_id, breaker_spec(plan), True)
            why = dry_run_reason(list(trail.values()), plan)
            return await self.record.end(remediation, RunOutcome.DRY_RUN, why, known)
        if ended:  # nothing to verify: not the fix's failure, nor a success
            return await self.record.end(remediation, RunOutcome.DRY_RUN, "; ".join(ended), known)
        return await self.verification.begin(remediation, plan.verify_within, known)

    async def _each_step(
        self,
        remediation: Remediation,
        alert: Alert,
        plan: Plan,
        admitted: Admitted | None,
        done: Mapping[tuple[str, int], StepRecord],
        context: StepContext,
        trail: Trail,
    ) -> Remediation | list[str]:
        """The steps in order: the remediation when one ended the run, else the changes a live
        run could only dry-run (no client configured for them)."""
        results: dict[str, dict[str, Any]] = {}
        only_dry: list[str] = []
        for position, step in enumerate(plan.steps):
            # Before a change, not a read: acting on a recovered system can undo its recovery.
            if step.mutating and await self._resolved_meanwhile(alert):
                return await self._resolved_mid_run(remediation)
            if step.mutating and admitted:
                held = await self._may_still_act(remediation, admitted, step)
                if held is not None:
                    return held
            previous = done.get(("steps", position))
            at = StepAt(remediation, "steps", position)
            if step.mutating and admitted and not admitted.shadow and previous is None:
                asked = await self.gate.ask_or_pass(
                    at, plan, step, context, results, alert, trail, admitted
                )
                if asked is not None:
                    return asked
            result = await self.steps.run(
                at, step, context, results, alert, previous, admitted, trail
            )
            if HELD_BACK in result.data:
                return await self._held_back(remediation, *result.data[HELD_BACK])
            # A failed read is an observation for later steps' conditions; a failed change (or
            # a condition that cannot be evaluated, or a request guardrails refused) ends it.
            ends = step.mutating or "condition" in result.data or REFUSED in result.data
            if not result.ok and ends:
                return await self.record.fail(remediation, plan, f"{step.action}: {result.message}")
            if admitted and step.mutating and result.outcome is Outcome.DRY_RUN:
                only_dry.append(result.message)
        return only_dry

    async def _keep_lease(self, admitted: Admitted) -> None:
        current: Admitted | None = admitted
        while current is not None:
            await asyncio.sleep(self._guards.lease_ttl / 3)
            current = await self._guards.renew(current)
        log.warning("target lease lost; mutating steps will be refused", run=admitted.run_id)

    async def _resolved_meanwhile(self, alert: Alert) -> bool:
        record = await self._store.alert(alert.fingerprint, alert.starts_at)
        return record is None or record.status is AlertStatus.RESOLVED

    async def _may_still_act(
        self, remediation: Remediation, admitted: Admitted, step: PlannedStep
    ) -> Remediation | None:
        """Before a change: the kill switch, then the fencing check. Neither is the fix's
        failure: the breaker does not count them, and the run's slot and trial lapse."""
        refusal = await self.steps.refusal(admitted, step, "before")
        return None if refusal is None else await self._held_back(remediation, *refusal)

    async def _held_back(self, remediation: Remediation, guard: str, why: str) -> Remediation:
        """End a run a refusal stopped before a change: blocked by the kill switch (and
        escalated as such), or interrupted as its lease was lost."""
        if guard == "kill_switch":
            return await self.record.end(replace(remediation, guard=guard), RunOutcome.BLOCKED, why)
        return await self.record.end(remediation, RunOutcome.INTERRUPTED, why)

    async def _resolved_mid_run(self, remediation: Remediation) -> Remediation:
        """The alert resolved before the next step: acting now could undo a recovery. The
        resolution is what verification waits for, so the run counts as a success."""
        if remediation.run_id is not None:
            await self._guards.record_outcome(remediation.run_id, breaker_of(remediation), True)
        return await self.record.end(remediation, RunOutcome.STOPPED, "the alert resolved")

    async def _resolved(
        self, event: AlertEvent, record: AlertRecord, earlier: Sequence[Remediation]
    ) -> Remediation | None:
        """The alert cleared: the waiting run succeeded, its pages are resolved, and its
        mitigation may be undone."""
        ran = None
        for remediation in earlier:
            if remediation.outcome is RunOutcome.VERIFYING:
                await self.record.succeed(remediation, "the alert resolved in time")
            elif remediation.outcome is RunOutcome.AWAITING_APPROVAL:
                remediation = await self.gate.resolved(remediation)
                await self.record.escalator.notify(remediation, "resolve")
            else:
                await self.record.escalator.notify(remediation, "resolve")
            if remediation.kind == "firing" and remediation.outcome in _RAN:
                ran = remediation
        if ran is None or not ran.plan.on_resolved:
            return None
        alert = record.as_alert(event.kind)
        decision = decide(alert, self._policies.current, self._now())
        if not isinstance(decision, Plan) or not decision.on_resolved:
            why = "on_resolved steps cannot be planned"
            return await self.record.note(event, record, RunOutcome.REFUSED, why)
        if not await self._mitigated(ran):
            why = "on_resolved: nothing to undo, the run made no change"
            return await self.record.note(event, record, RunOutcome.SKIPPED, why)
        dry = ran.outcome is RunOutcome.DRY_RUN
        held = await self._hold(decision, dry)
        if isinstance(held, Blocked):
            # Not undone: a person is told what is left, about the incident they know.
            why = f"on_resolved: {held.reason}"
            decided = Decided.of(decision, guard=held.guard)
            return await self.record.note(event, record, RunOutcome.BLOCKED, why, decided)
        try:
            return await self._undo(event, record, decision, held)
        finally:
            if held is not None:
                await self._guards.release(held)

    async def _mitigated(self, ran: Remediation) -> bool:
        """Whether the run changed something (or, in dry-run, would have) for its on_resolved
        steps to undo: a change that ended ok, or was begun by a worker that died before its
        answer was recorded. A run whose every change failed or was skipped has nothing to
        undo, and undoing it anyway would change what no one changed."""
        made = (Outcome.OK, Outcome.DRY_RUN, STARTED)
        return any(
            step.phase == "steps"
            and CATALOGUE[step.action].mutating
            and step.outcome in made
            and WOULD_FAIL not in step.data  # dry-run: live mode would have failed to make it
            for step in await self._store.steps(ran.id)
            if step.action in CATALOGUE
        )

    async def _hold(self, plan: Plan, dry: bool) -> Admitted | Blocked | None:
        """The target, for undoing a mitigation: None in dry-run."""
        paused = await self._guards.paused()
        if paused is not None:
            return Blocked("kill_switch", f"paused: {paused.reason}")
        return None if dry else await self._guards.hold(plan)

    async def _undo(
        self, event: AlertEvent, record: AlertRecord, plan: Plan, held: Admitted | None
    ) -> Remediation:
        """The on_resolved steps, holding the target as a run does, with the same checks
        (the kill switch, the lease) before each change."""
        run_id = held.run_id if held else None
        decided = Decided.of(plan, run_id=run_id)
        reason = "dry-run" if held is None else ""
        alert = record.as_alert(event.kind)
        remediation = await self.record.note(event, record, RunOutcome.RUNNING, reason, decided)
        context = StepContext(plan.target, held is None, remediation.started_at)
        results: dict[str, dict[str, Any]] = {}
        for position, step in enumerate(plan.on_resolved):
            if step.mutating and held is not None:
                stopped = await self._may_still_act(remediation, held, step)
                if stopped is not None:
                    return stopped
            at = StepAt(remediation, "on_resolved", position)
            result = await self.steps.run(at, step, context, results, alert, None, held)
            if HELD_BACK in result.data:
                return await self._held_back(remediation, *result.data[HELD_BACK])
            if not result.ok:
                why = f"{step.action}: {result.message}"
                return await self.record.end(remediation, RunOutcome.FAILED, why)
        return await self.record.end(remediation, RunOutcome.SUCCEEDED, "on_resolved steps done")

    async def _completed_steps(
        self, interrupted: Sequence[Remediation]
    ) -> dict[tuple[str, int], StepRecord]:
        done: dict[tuple[str, int], StepRecord] = {}
        for remediation in interrupted:
            for step in await self._store.steps(remediation.id):
                done[(step.phase, step.position)] = step
        return done


def _after_approval(message: str, rule: ApprovalRule | None) -> str:
    if rule is None:
        return message
    return f"would ask {rule.asked} to approve, then: {message}"


def _parked(earlier: Sequence[Remediation], event: AlertEvent) -> Remediation | None:
    """The event's run that stopped to ask for approval, if it waits still."""
    return next(
        (
            r
            for r in reversed(earlier)
            if r.event_id == event.id and r.outcome is RunOutcome.AWAITING_APPROVAL
        ),
        None,
    )


def _blocked_by(admission: Admitted | Blocked, guard: str) -> bool:
    return isinstance(admission, Blocked) and admission.guard == guard


def dry_run_reason(steps: Sequence[StepRecord], plan: Plan | None = None) -> str:
    """What a dry-run did, as it happened: the changes it would have made (after the approval
    live mode would ask for), and the reads that failed (a run whose checks could not answer
    says so, not that all went well)."""
    asking = {
        position: step.approval
        for position, step in enumerate(plan.steps if plan else ())
        if step.approval is not None
    }
    would = [
        _after_approval(s.message, asking.get(s.position)) if s.phase == "steps" else s.message
        for s in steps
        if s.outcome == Outcome.DRY_RUN
    ]
    failed = [f"{s.action}: {s.message}" for s in steps if s.outcome == Outcome.FAILED]
    said = "; ".join(would) if would else "no step would have changed anything"
    if failed:
        reads = "read" if len(failed) == 1 else "reads"
        said += f"; {len(failed)} {reads} failed ({'; '.join(failed)})"
    return said
