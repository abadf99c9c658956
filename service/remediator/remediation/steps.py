"""Running one step: its `when`, its timeout, retries of transient errors only, the checks
before a change (the kill switch, the target's lease), its record, and a take-over's replay
(a change the interrupted run completed is not made again)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
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
from remediator.actions.egress import REFUSED, EgressRefused
from remediator.alerts import Alert
from remediator.engine.plan import PlannedStep
from remediator.guards.guards import Admitted, Guards
from remediator.policy.durations import format_duration
from remediator.policy.parameters import Params, repeatable
from remediator.policy.templates import ConditionError, evaluate_condition
from remediator.remediation.busy import Busy
from remediator.store import Remediation, RunLedger, StepRecord, StoreUnavailable

log = structlog.get_logger(__name__)

DEFAULT_STEP_TIMEOUT = timedelta(minutes=2)
ATTEMPTS = 3  # per step, on transient errors only
HELD_BACK = "held_back"  # in a step's data: a retry the kill switch or the lease refused
# A change that cannot be made twice safely is recorded as started before it is made: a run
# taking over from a dead worker then knows it may have been made, and leaves it to a person.
STARTED = "started"
_STARTED_NOTE = StepResult(Outcome.OK, "made by this run; its answer is not recorded yet")
_MAYBE_MADE = (
    "the interrupted run made this change and died before its answer was recorded: not made"
    " again, as it may have taken effect; check it by hand"
)

Refusal = tuple[str, str]  # the guard, and why the change must not be made now
PARAMS = "params"  # in a change's recorded data: its parameters as rendered


def rendered(params: Params) -> dict[str, Any]:
    """A step's parameters as rendered, those set (JSON: durations as ISO 8601 text)."""
    return params.model_dump(mode="json", exclude_none=True, by_alias=True)


Trail = dict[tuple[str, int], StepRecord]  # a run's steps as recorded, by phase and position
Results = dict[str, dict[str, Any]]  # each step with an id: what it returned, for `when`


@dataclass(frozen=True)
class Retrying:
    attempts: int = ATTEMPTS
    first_wait: float = 0.5
    max_wait: float = 10.0


DEFAULT_RETRYING = Retrying()


@dataclass(frozen=True)
class StepAt:
    """Where a step is in its run: the phase (steps, on_resolved, verify) and its position."""

    remediation: Remediation
    phase: str
    position: int


class Steps:
    def __init__(
        self,
        store: RunLedger,
        guards: Guards,
        actions: Mapping[str, Action],
        *,
        clock: Callable[[], float] = time.time,
        retrying: Retrying = DEFAULT_RETRYING,
        busy: Busy | None = None,
    ) -> None:
        self._busy = busy or Busy()
        self._store = store
        self._guards = guards
        self._actions = actions
        self._clock = clock
        self._retrying = retrying

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def run(
        self,
        at: StepAt,
        step: PlannedStep,
        context: StepContext,
        results: Results,
        alert: Alert,
        previous: StepRecord | None,
        admitted: Admitted | None = None,
        trail: Trail | None = None,
    ) -> StepResult:
        """Run (or replay) the step and record its result; `results` gains it by its id, and
        `trail` its record."""
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
            before_retry = None
            if step.mutating and admitted is not None and not admitted.shadow:
                if not repeatable(step.action, step.params):
                    await self.record(at, step, _STARTED_NOTE, 0, started, outcome=STARTED)
                before_retry = partial(self.refusal, admitted, step, "before retrying")
            result, attempts = await self.execute(step, context, results, alert, before_retry)
        if step.id:
            results[step.id] = {
                "ok": result.ok,
                "outcome": result.outcome.value,
                "message": result.message,
                "data": dict(result.data),
            }
        made = step.mutating and attempts > 0 and result.outcome is Outcome.OK
        written = await (self._record_made if made else self.record)(
            at, step, result, attempts, started
        )
        if trail is not None:
            trail[(at.phase, at.position)] = written
        log.info(
            "step",
            remediation=at.remediation.id,
            action=step.action,
            outcome=result.outcome.value,
            message=result.message,
        )
        return result

    async def record(
        self,
        at: StepAt,
        step: PlannedStep,
        result: StepResult,
        attempts: int,
        started: datetime,
        *,
        outcome: str | None = None,  # STARTED: a change being made, its answer not yet in
    ) -> StepRecord:
        data = dict(result.data)
        if step.mutating:  # what the change was asked to do, as rendered, beside what it did
            data.setdefault(PARAMS, rendered(step.params))
        written = StepRecord(
            at.remediation.id,
            at.phase,
            at.position,
            step.id,
            step.action,
            outcome or result.outcome.value,
            result.message,
            data,
            attempts,
            started,
            self._now(),
        )
        await self._store.record_step(written)
        return written

    async def _record_made(
        self, at: StepAt, step: PlannedStep, result: StepResult, attempts: int, started: datetime
    ) -> StepRecord:
        """A change made is on record before the run goes on: while the store is down its
        record is tried again (bounded by the run's timeout), for a take-over that found none
        would make the change a second time."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            before_sleep=lambda state: log.warning(
                "a change made is not on record yet: the store is unavailable; trying again",
                action=step.action,
                remediation=at.remediation.id,
                attempt=state.attempt_number,
            ),
            reraise=True,
        ):
            with attempt:
                return await self.record(at, step, result, attempts, started)
        raise AssertionError("unreachable: the retries above end in a return or a raise")

    async def execute(
        self,
        step: PlannedStep,
        context: StepContext,
        results: Mapping[str, Mapping[str, Any]],
        alert: Alert,
        before_retry: Callable[[], Awaitable[Refusal | None]] | None = None,
    ) -> tuple[StepResult, int]:
        """Run the step's action, retrying transient errors; a change is retried only if the
        kill switch and the lease still allow it (`before_retry`), as a retry comes up to
        seconds after the check made before the step."""
        not_run = self.not_run(step, results, alert)
        if not_run is not None:
            return not_run, 0
        action = self._actions[step.action]
        step_context = context if step.mutating else replace(context, dry_run=False)
        limit = (step.timeout or DEFAULT_STEP_TIMEOUT).total_seconds()
        async with self._busy.let_go():  # the call is a wait on something outside
            return await self._attempt(step, step_context, action, limit, before_retry)

    async def _attempt(
        self,
        step: PlannedStep,
        context: StepContext,
        action: Action,
        limit: float,
        before_retry: Callable[[], Awaitable[Refusal | None]] | None,
    ) -> tuple[StepResult, int]:
        """The action's call within `limit` seconds, and its retries of transient errors."""
        attempts = 0
        try:
            async for attempt in self._attempts():
                refusal = await before_retry() if attempts and before_retry else None
                if refusal is not None:
                    return failed(f"not retried: {refusal[1]}", **{HELD_BACK: refusal}), attempts
                with attempt:
                    attempts += 1
                    async with asyncio.timeout(limit):
                        return await action(step.params, context), attempts
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            return failed(f"gave up after {attempts} attempts: {cause}"), attempts
        except TimeoutError:
            return failed(f"timed out after {format_duration(timedelta(seconds=limit))}"), attempts
        except StoreUnavailable:
            raise  # from the check before a retry: the claim lapses, the event is retried
        except EgressRefused as exc:  # never sent: ends the run (not an answer to read)
            return failed(str(exc), **{REFUSED: str(exc)}), attempts
        except Exception as exc:  # an action's bug must not kill the dispatcher
            log.exception("action raised", action=step.action)
            return failed(f"{type(exc).__name__}: {exc}"), attempts
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempts(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._retrying.attempts),
            wait=wait_exponential_jitter(
                multiplier=self._retrying.first_wait,
                max=self._retrying.max_wait,
                jitter=self._retrying.first_wait,
            ),
            retry=retry_if_exception_type(Transient),
        )

    def not_run(
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

    async def refusal(self, admitted: Admitted, step: PlannedStep, when: str) -> Refusal | None:
        """Why this change must not be made now (the guard, and the reason), if it must not:
        the kill switch, then the fencing check on the target's lease."""
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
