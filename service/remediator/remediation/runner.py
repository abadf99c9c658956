"""One alert event, from decision to the end of its run: decide, guard, act, await verification.

Every outcome is a Remediation row and every step a StepRecord, written as it happens, so a
crash leaves a run `interrupted` with its completed steps on record. The worker that takes the
event over starts a new run that skips what the interrupted one completed, and the actions read
before they write, so nothing completed is repeated blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from remediator.actions.base import (
    Action,
    Outcome,
    StepContext,
    StepResult,
    Transient,
    failed,
    skipped,
)
from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide
from remediator.engine.escalation import on_outcome, on_start
from remediator.engine.plan import Escalation, NoMatch, Plan, PlannedStep, Refused
from remediator.guards.base import BreakerSpec
from remediator.guards.gate import Admitted, Blocked, Guards, breaker_spec, target_key
from remediator.notify.escalator import Escalator, dedup_key
from remediator.policy.actions import repeatable
from remediator.policy.durations import format_duration
from remediator.policy.schema import EscalateWhen
from remediator.policy.templates import ConditionError, evaluate_condition
from remediator.policy_reload import LivePolicies
from remediator.store import (
    AlertEvent,
    AlertRecord,
    Remediation,
    StepRecord,
    Store,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)

ACTIVE = ("running", "verifying")
_UNFINISHED = ("running", "interrupted")  # attempts at an event that a crash cut short
_DEFAULT_ESCALATE = ("on_failure", "when_blocked")
DEFAULT_STEP_TIMEOUT = timedelta(minutes=2)
ATTEMPTS = 3  # per step, on transient errors only
HELD_BACK = "held_back"  # in a step's data: a retry the kill switch or the lease refused


@dataclass(frozen=True)
class Retrying:
    attempts: int = ATTEMPTS
    first_wait: float = 0.5
    max_wait: float = 10.0


# A change that cannot be made twice safely is recorded as started before it is made: a run
# taking over from a dead worker then knows it may have been made, and leaves it to a person.
STARTED = "started"
_MAYBE_MADE = (
    "the interrupted run made this change and died before its answer was recorded: not made"
    " again, as it may have taken effect; check it by hand"
)


class Runner:
    def __init__(
        self,
        store: Store,
        guards: Guards,
        policies: LivePolicies,
        actions: Mapping[str, Action],
        *,
        clock: Callable[[], float] = time.time,
        retrying: Retrying = Retrying(),
        check_interval: float = 15.0,
    ) -> None:
        self._store = store
        self._guards = guards
        self._policies = policies
        self._actions = actions
        self._clock = clock
        self._retrying = retrying
        self.check_interval = check_interval
        self._last_checked: dict[str, float] = {}
        self._escalator = Escalator(store, lambda: policies.current.matrix, clock=clock)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def handle(self, event: AlertEvent) -> Remediation | None:
        """Take one claimed event as far as it goes now; the verification wait is left running."""
        record = await self._store.alert(event.fingerprint, event.starts_at)
        if record is None:
            log.error("event without its alert", event_id=event.id, fingerprint=event.fingerprint)
            return None
        earlier = await self._store.remediations_for(event.fingerprint, event.starts_at)
        handled = [r for r in earlier if r.event_id == event.id and r.outcome not in _UNFINISHED]
        if handled:
            # Its worker died after recording how the event went, before marking it done:
            # deciding again would act twice on one alert state.
            log.warning("event already handled; not again", event_id=event.id)
            await self._tell_if_untold(handled[-1])
            return handled[-1]
        attempts = await self._take_over(event, earlier)
        alert = _alert(record, event.kind)
        if event.kind is AlertStatus.RESOLVED:
            return await self._resolved(event, alert, earlier)
        if record.status is AlertStatus.RESOLVED:
            return await self._note(event, alert, "skipped", "resolved before the run started")
        if any(r.outcome in ACTIVE for r in earlier if r.event_id != event.id):
            log.info("a run for this alert is still going; not starting another", event_id=event.id)
            return None
        done = await self._completed_steps(attempts)
        # A change a dead worker made but did not live to record is found by the actions as
        # made "by this run": they compare with when the first attempt began.
        began = min((r.started_at for r in attempts), default=None)
        return await self._fire(event, alert, done, began)

    async def _take_over(
        self, event: AlertEvent, earlier: Sequence[Remediation]
    ) -> list[Remediation]:
        """Every earlier attempt at this event, the one a dead worker left running marked
        interrupted now: not only the last, as a worker killed twice leaves one of each."""
        attempts = [r for r in earlier if r.event_id == event.id and r.outcome in _UNFINISHED]
        for remediation in attempts:
            if remediation.outcome == "running":
                await self._store.save_remediation(
                    replace(remediation, outcome="interrupted", finished_at=self._now())
                )
                log.warning("run interrupted; taking it over", remediation=remediation.id)
        return attempts

    async def _fire(
        self,
        event: AlertEvent,
        alert: Alert,
        done: Mapping[tuple[str, int], StepRecord],
        began: datetime | None = None,
    ) -> Remediation:
        decision = decide(alert, self._policies.current, self._now())
        if isinstance(decision, NoMatch):
            return await self._note(
                event,
                alert,
                "no_match",
                "no policy matches: escalate only",
                plan=_escalation_only(decision.escalation),
            )
        if isinstance(decision, Refused):
            return await self._note(
                event,
                alert,
                "refused",
                decision.reason,
                policy=decision.policy,
                plan=_escalation_only(decision.escalation),
            )
        plan = decision
        admission = await self._guards.admit(plan)
        dry = isinstance(admission, Blocked) and admission.guard == "dry_run"
        if isinstance(admission, Blocked) and not dry:
            return await self._note(
                event,
                alert,
                "blocked",
                admission.reason,
                policy=plan.policy,
                guard=admission.guard,
                target=target_key(plan),
                plan=_plan_summary(plan),
            )
        admitted = admission if isinstance(admission, Admitted) else None
        remediation = await self._start(event, alert, plan, admitted)
        try:
            return await self._run_steps(remediation, alert, plan, admitted, done, began)
        except StoreUnavailable:
            raise  # the claim lapses; the next worker finds this run and takes it over
        except Exception as exc:  # a bug must not leave the alert's run `running` for ever
            log.exception("run failed unexpectedly", remediation=remediation.id)
            return await self._fail(remediation, plan, f"internal error: {exc!r}")
        finally:
            if admitted is not None:
                await self._guards.release(admitted)

    async def _run_steps(
        self,
        remediation: Remediation,
        alert: Alert,
        plan: Plan,
        admitted: Admitted | None,
        done: Mapping[tuple[str, int], StepRecord],
        began: datetime | None,
    ) -> Remediation:
        context = StepContext(plan.target, admitted is None, began or remediation.started_at)
        timeout = self._policies.current.guardrails.run_timeout.total_seconds()
        renewing = asyncio.create_task(self._keep_lease(admitted)) if admitted else None
        try:
            async with asyncio.timeout(timeout):
                ended = await self._each_step(remediation, alert, plan, admitted, done, context)
        except TimeoutError:
            limit = format_duration(timedelta(seconds=timeout))
            why = f"steps still running after run_timeout {limit}"
            return await self._fail(remediation, plan, why)
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
        if isinstance(ended, Remediation):
            return ended
        return await self._await_verification(remediation, plan, admitted, ended)

    async def _each_step(
        self,
        remediation: Remediation,
        alert: Alert,
        plan: Plan,
        admitted: Admitted | None,
        done: Mapping[tuple[str, int], StepRecord],
        context: StepContext,
    ) -> Remediation | list[str]:
        """The steps in order: the remediation when one ended the run, else the changes a live
        run could only dry-run (no client configured for them)."""
        results: dict[str, dict[str, Any]] = {}
        only_dry: list[str] = []
        for position, step in enumerate(plan.steps):
            if await self._resolved_meanwhile(alert):
                return await self._resolved_mid_run(remediation, plan)
            if step.mutating and admitted:
                held = await self._may_still_act(remediation, admitted, step)
                if held is not None:
                    return held
            previous = done.get(("steps", position))
            result = await self._step(
                remediation, "steps", position, step, context, results, alert, previous, admitted
            )
            if HELD_BACK in result.data:
                return await self._held_back(remediation, *result.data[HELD_BACK])
            # A failed read is an observation for later steps' conditions; a failed change (or
            # a condition that cannot be evaluated) ends the run.
            if not result.ok and (step.mutating or "condition" in result.data):
                return await self._fail(remediation, plan, f"{step.action}: {result.message}")
            if admitted and step.mutating and result.outcome is Outcome.DRY_RUN:
                only_dry.append(result.message)
        return only_dry

    async def _await_verification(
        self, remediation: Remediation, plan: Plan, admitted: Admitted | None, only_dry: list[str]
    ) -> Remediation:
        if admitted is None:
            return await self._end(remediation, "dry_run", "every step ran in dry-run")
        if only_dry:  # nothing to verify: not the fix's failure, nor a success
            return await self._end(remediation, "dry_run", "; ".join(only_dry))
        waiting = replace(
            remediation,
            outcome="verifying",
            reason=f"waiting up to {format_duration(plan.verify_within)} for the alert to resolve",
            verify_until=self._now() + plan.verify_within,
        )
        await self._store.save_remediation(waiting)
        await self._escalate(waiting)
        return waiting

    async def _step(
        self,
        remediation: Remediation,
        phase: str,
        position: int,
        step: PlannedStep,
        context: StepContext,
        results: dict[str, dict[str, Any]],
        alert: Alert,
        previous: StepRecord | None,
        admitted: Admitted | None = None,
    ) -> StepResult:
        started = self._now()
        attempts = 0
        if step.mutating and previous is not None and previous.outcome == Outcome.OK:
            # Changes the interrupted run completed are not made again; reads are repeated.
            result = StepResult(
                Outcome.OK, f"done by the interrupted run: {previous.message}", previous.data
            )
        elif step.mutating and previous is not None and previous.outcome == STARTED:
            result = StepResult(Outcome.FAILED, _MAYBE_MADE)
        else:
            if step.mutating and admitted is not None and not repeatable(step.action, step.params):
                await self._store.record_step(
                    StepRecord(
                        remediation.id,
                        phase,
                        position,
                        step.id,
                        step.action,
                        STARTED,
                        "made by this run; its answer is not recorded yet",
                        {},
                        0,
                        started,
                        started,
                    )
                )
            before_retry = None
            if step.mutating and admitted is not None:
                before_retry = partial(self._refusal, admitted, step, "before retrying")
            result, attempts = await self._execute(step, context, results, alert, before_retry)
        if step.id:
            results[step.id] = {"ok": result.ok, "outcome": result.outcome.value, **_view(result)}
        await self._store.record_step(
            StepRecord(
                remediation.id,
                phase,
                position,
                step.id,
                step.action,
                result.outcome.value,
                result.message,
                dict(result.data),
                attempts,
                started,
                self._now(),
            )
        )
        log.info(
            "step",
            remediation=remediation.id,
            action=step.action,
            outcome=result.outcome.value,
            message=result.message,
        )
        return result

    async def _execute(
        self,
        step: PlannedStep,
        context: StepContext,
        results: Mapping[str, Mapping[str, Any]],
        alert: Alert,
        before_retry: Callable[[], Awaitable[tuple[str, str] | None]] | None = None,
    ) -> tuple[StepResult, int]:
        """Run the step's action, retrying transient errors; a change is retried only if the
        kill switch and the lease still allow it (`before_retry`), as a retry comes up to
        seconds after the check made before the step."""
        not_run = self._not_run(step, results, alert)
        if not_run is not None:
            return not_run, 0
        action = self._actions[step.action]
        step_context = context if step.mutating else replace(context, dry_run=False)
        timeout = (step.timeout or DEFAULT_STEP_TIMEOUT).total_seconds()
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._retrying.attempts),
                wait=wait_exponential_jitter(
                    multiplier=self._retrying.first_wait,
                    max=self._retrying.max_wait,
                    jitter=self._retrying.first_wait,
                ),
                retry=retry_if_exception_type(Transient),
            ):
                refusal = await before_retry() if attempts and before_retry else None
                if refusal is not None:
                    return failed(f"not retried: {refusal[1]}", **{HELD_BACK: refusal}), attempts
                with attempt:
                    attempts += 1
                    async with asyncio.timeout(timeout):
                        return await action(step.params, step_context), attempts
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            return failed(f"gave up after {attempts} attempts: {cause}"), attempts
        except TimeoutError:
            return failed(
                f"timed out after {format_duration(timedelta(seconds=timeout))}"
            ), attempts
        except StoreUnavailable:
            raise  # from the check before a retry: the claim lapses, the event is retried
        except Exception as exc:  # an action's bug must not kill the dispatcher
            log.exception("action raised", action=step.action)
            return failed(f"{type(exc).__name__}: {exc}"), attempts
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _not_run(
        self, step: PlannedStep, results: Mapping[str, Mapping[str, Any]], alert: Alert
    ) -> StepResult | None:
        """The step's result when its action is not to run: its `when` is false or cannot be
        evaluated, or the action is not configured here."""
        if step.when is not None:
            scope = {"steps": results, "labels": alert.labels, "annotations": alert.annotations}
            try:
                if not evaluate_condition(step.when, scope):
                    return skipped(f"when {step.when!r} is false")
            except ConditionError as exc:
                return failed(str(exc), condition=step.when)
        if step.action not in self._actions:
            return failed(f"{step.action} is not available here (not configured)")
        return None

    async def _keep_lease(self, admitted: Admitted) -> None:
        current: Admitted | None = admitted
        while current is not None:
            await asyncio.sleep(self._guards.lease_ttl / 3)
            current = await self._guards.renew(current)
        log.warning("target lease lost; mutating steps will be refused", run=admitted.run_id)

    async def _resolved_meanwhile(self, alert: Alert) -> bool:
        record = await self._store.alert(alert.fingerprint, alert.starts_at)
        return record is None or record.status is AlertStatus.RESOLVED

    async def _resolved(
        self, event: AlertEvent, alert: Alert, earlier: Sequence[Remediation]
    ) -> Remediation | None:
        """The alert cleared: the waiting run succeeded, its pages are resolved, and its
        mitigation may be undone."""
        ran = None
        for remediation in earlier:
            if remediation.outcome == "verifying":
                await self._guards.record_outcome(
                    remediation.run_id or "", _breaker(remediation), succeeded=True
                )
                await self._end(remediation, "succeeded", "the alert resolved in time")
            else:
                await self._escalator.notify(remediation, "resolve")
            if remediation.kind == "firing" and remediation.outcome in (
                "verifying",
                "succeeded",
                "failed",
                "stopped",
                "dry_run",
            ):
                ran = remediation
        if ran is None or not ran.plan.get("on_resolved"):
            return None
        decision = decide(alert, self._policies.current, self._now())
        if not isinstance(decision, Plan) or not decision.on_resolved:
            return await self._note(event, alert, "refused", "on_resolved steps cannot be planned")
        dry = ran.outcome == "dry_run"
        paused = await self._guards.paused()
        held: Admitted | Blocked | None = None
        if paused is not None:
            held = Blocked("kill_switch", f"paused: {paused.reason}")
        elif not dry:
            held = await self._guards.hold(decision)
        if isinstance(held, Blocked):
            # Not undone: a person is told what is left, about the incident they know.
            return await self._note(
                event,
                alert,
                "blocked",
                f"on_resolved: {held.reason}",
                policy=decision.policy,
                guard=held.guard,
                target=target_key(decision),
                plan=_plan_summary(decision),
            )
        try:
            return await self._undo(event, alert, decision, held, dry)
        finally:
            if held is not None:
                await self._guards.release(held)

    async def _undo(
        self, event: AlertEvent, alert: Alert, plan: Plan, held: Admitted | None, dry: bool
    ) -> Remediation:
        """The on_resolved steps, holding the target as a run does, with the same checks
        (the kill switch, the lease) before each change."""
        remediation = await self._start(event, alert, plan, held)
        context = StepContext(plan.target, dry, remediation.started_at)
        results: dict[str, dict[str, Any]] = {}
        for position, step in enumerate(plan.on_resolved):
            if step.mutating and held is not None:
                stopped = await self._may_still_act(remediation, held, step)
                if stopped is not None:
                    return stopped
            result = await self._step(
                remediation, "on_resolved", position, step, context, results, alert, None, held
            )
            if HELD_BACK in result.data:
                return await self._held_back(remediation, *result.data[HELD_BACK])
            if not result.ok:
                return await self._end(remediation, "failed", f"{step.action}: {result.message}")
        return await self._end(remediation, "succeeded", "on_resolved steps done")

    async def settle_outcomes(self) -> None:
        """The run outcomes the guards' backend missed while it was away, told now."""
        await self._guards.settle()

    async def check_verifications(self) -> list[Remediation]:
        """Runs whose policy has a verification check: the check passing verifies the fix
        before the alert resolves. Each run is checked at most every `check_interval`."""
        verified = []
        for remediation in await self._store.verifying():
            if not remediation.plan.get("verify_check"):
                continue
            now = self._clock()
            if now - self._last_checked.get(remediation.id, 0.0) < self.check_interval:
                continue
            self._last_checked[remediation.id] = now
            record = await self._store.alert(remediation.fingerprint, remediation.starts_at)
            if record is None:
                continue
            alert = _alert(record, AlertStatus.FIRING)
            plan = decide(alert, self._policies.current, self._now())
            if not isinstance(plan, Plan) or plan.verify_check is None:
                continue
            context = StepContext(plan.target, False, remediation.started_at)
            result, attempts = await self._execute(plan.verify_check, context, {}, alert)
            if not result.ok:
                continue
            await self._store.record_step(
                StepRecord(
                    remediation.id,
                    "verify",
                    0,
                    plan.verify_check.id,
                    plan.verify_check.action,
                    result.outcome.value,
                    result.message,
                    dict(result.data),
                    attempts,
                    self._now(),
                    self._now(),
                )
            )
            await self._guards.record_outcome(
                remediation.run_id or "", _breaker(remediation), succeeded=True
            )
            self._last_checked.pop(remediation.id, None)
            verified.append(
                await self._end(remediation, "succeeded", f"verified: {result.message}")
            )
        return verified

    async def expire_verifications(self) -> list[Remediation]:
        """Runs whose alert did not resolve in time failed: count them against the breaker."""
        ended = []
        for remediation in await self._store.overdue_verifications(self._now()):
            await self._guards.record_outcome(
                remediation.run_id or "", _breaker(remediation), succeeded=False
            )
            ended.append(
                await self._end(remediation, "failed", "the alert did not resolve in time")
            )
        return ended

    async def _start(
        self, event: AlertEvent, alert: Alert, plan: Plan, admitted: Admitted | None
    ) -> Remediation:
        return await self._note(
            event,
            alert,
            "running",
            "dry-run" if admitted is None else "",
            policy=plan.policy,
            target=target_key(plan),
            plan=_plan_summary(plan),
            run_id=admitted.run_id if admitted else None,
            finished=False,
        )

    async def _note(
        self,
        event: AlertEvent,
        alert: Alert,
        outcome: str,
        reason: str,
        *,
        policy: str | None = None,
        guard: str | None = None,
        target: str | None = None,
        plan: dict[str, Any] | None = None,
        run_id: str | None = None,
        finished: bool = True,
    ) -> Remediation:
        """Record what happened for an event: a decision or block (finished), or a run begun."""
        now = self._now()
        remediation = Remediation(
            id=str(uuid.uuid4()),
            event_id=event.id,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            alertname=alert.alertname,
            kind=event.kind.value,
            policy=policy,
            policy_revision=self._policies.revision,
            outcome=outcome,
            guard=guard,
            reason=reason,
            run_id=run_id,
            target=target,
            plan=plan or {},
            started_at=now,
            finished_at=now if finished else None,
        )
        await self._store.save_remediation(remediation)
        log.info("remediation", outcome=outcome, reason=reason, alertname=alert.alertname)
        await self._escalate(remediation, start=not finished)
        return remediation

    async def _may_still_act(
        self, remediation: Remediation, admitted: Admitted, step: PlannedStep
    ) -> Remediation | None:
        """Before a change: the kill switch, then the fencing check. Neither is the fix's
        failure: the breaker does not count them, and the run's slot and trial lapse."""
        refusal = await self._refusal(admitted, step, "before")
        return None if refusal is None else await self._held_back(remediation, *refusal)

    async def _refusal(
        self, admitted: Admitted, step: PlannedStep, when: str
    ) -> tuple[str, str] | None:
        """Why this change must not be made now (the guard, and the reason), if it must not."""
        paused = await self._guards.paused()
        if paused is not None:
            return (
                "kill_switch",
                f"paused by {paused.paused_by} {when} {step.action}: {paused.reason}",
            )
        if not await self._guards.may_act(admitted):
            # Our lease lapsed (a long pause, a partition) and another worker may hold the
            # target now.
            return "target_lease", f"target lease lost {when} {step.action}: not acting"
        return None

    async def _held_back(self, remediation: Remediation, guard: str, why: str) -> Remediation:
        """End a run a refusal stopped before a change: blocked by the kill switch (and
        escalated as such), or interrupted as its lease was lost."""
        if guard == "kill_switch":
            return await self._end(replace(remediation, guard=guard), "blocked", why)
        return await self._end(remediation, "interrupted", why)

    async def _resolved_mid_run(self, remediation: Remediation, plan: Plan) -> Remediation:
        """The alert resolved before the next step: acting now could undo a recovery. The
        resolution is what verification waits for, so the run counts as a success."""
        if remediation.run_id is not None:
            await self._guards.record_outcome(remediation.run_id, breaker_spec(plan), True)
        return await self._end(remediation, "stopped", "the alert resolved")

    async def _fail(self, remediation: Remediation, plan: Plan, reason: str) -> Remediation:
        if remediation.run_id is not None:
            await self._guards.record_outcome(remediation.run_id, breaker_spec(plan), False)
        return await self._end(remediation, "failed", reason)

    async def _end(self, remediation: Remediation, outcome: str, reason: str) -> Remediation:
        ended = replace(remediation, outcome=outcome, reason=reason, finished_at=self._now())
        await self._store.save_remediation(ended)
        log.info("remediation ended", remediation=ended.id, outcome=outcome, reason=reason)
        await self._escalate(ended)
        return ended

    async def _escalate(self, remediation: Remediation, *, start: bool = False) -> None:
        """Queue the messages this turn of the remediation calls for (the escalation rules)."""
        plan = remediation.plan
        escalate = tuple(EscalateWhen(e) for e in plan.get("escalate", _DEFAULT_ESCALATE))
        if start:
            if remediation.kind != "firing":
                return  # undoing a mitigation pages nobody unless it fails
            notify = on_start(escalate, bool(plan.get("page_now")))
            if notify is not None:
                await self._escalator.notify(remediation, notify)
            return
        outcome = remediation.outcome
        await self._escalator.turn(
            remediation, lambda paged: on_outcome(outcome, escalate, already_paged=paged)
        )

    async def _tell_if_untold(self, remediation: Remediation) -> None:
        """Its worker may have died between recording the outcome and queueing what it calls
        for: then nothing of this run is in the outbox, and it is queued now."""
        told = await self._store.latest_outbox(dedup_key(remediation))
        if not any(entry.remediation_id == remediation.id for entry in told):
            await self._escalate(remediation)

    async def _completed_steps(
        self, interrupted: Sequence[Remediation]
    ) -> dict[tuple[str, int], StepRecord]:
        done: dict[tuple[str, int], StepRecord] = {}
        for remediation in interrupted:
            for step in await self._store.steps(remediation.id):
                done[(step.phase, step.position)] = step
        return done


def _alert(record: AlertRecord, status: AlertStatus) -> Alert:
    return Alert(
        status=status,
        labels=record.labels,
        annotations=record.annotations,
        starts_at=record.starts_at,
        ends_at=record.ends_at,
        fingerprint=record.fingerprint,
    )


def _view(result: StepResult) -> dict[str, Any]:
    return {"message": result.message, "data": dict(result.data)}


def _plan_summary(plan: Plan) -> dict[str, Any]:
    breaker = breaker_spec(plan)
    return {
        "target": str(plan.target),
        "steps": [step.action for step in plan.steps],
        "on_resolved": [step.action for step in plan.on_resolved],
        "verify_within": format_duration(plan.verify_within),
        "verify_check": plan.verify_check.action if plan.verify_check else None,
        "rate_limit_key": plan.rate_limit_key,
        "breaker": {
            "key": breaker.key,
            "failures": breaker.failures,
            "window": breaker.window,
            "cooldown": breaker.cooldown,
        },
        "level": plan.escalation.level,
        "channels": list(plan.escalation.channels),
        "page_now": plan.escalation.page_while_remediating,
        "escalate": [when.value for when in plan.escalate_when],
    }


def _escalation_only(escalation: Escalation) -> dict[str, Any]:
    return {"level": escalation.level, "channels": list(escalation.channels)}


def _breaker(remediation: Remediation) -> BreakerSpec:
    spec = remediation.plan["breaker"]
    return BreakerSpec(spec["key"], spec["failures"], spec["window"], spec["cooldown"])
