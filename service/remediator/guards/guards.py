"""The guards in their order, between a plan and its first step.

Kill switch, one run per target, rate limit, blast radius, circuit breaker, concurrency cap:
the first that says no blocks the run, and the Blocked value names it and its state so that
the escalation can. Guard state that cannot be reached blocks too: without it nothing acts.

Dry-run (the service's mode, or a policy's `dry_run`) is live mode minus the changes: its runs
pass the same guards, against budgets, breakers, leases and slots of their own (the shadow
backend, and runs recorded under `shadow:` ids), so that its record says what live mode would
have done ("would be blocked by rate_limit") and switching to live starts from a clean slate.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from remediator.engine.plan import Plan
from remediator.guards.base import (
    Attempt,
    BreakerSpec,
    BreakerState,
    GuardBackend,
    GuardsUnavailable,
    Lease,
    Limit,
    PastRun,
    Reach,
    Snapshot,
    Transition,
    Unseeded,
    Verdict,
    Window,
)
from remediator.metrics import GuardMetrics
from remediator.policy.durations import format_duration
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import CircuitBreaker, Guardrails, MaxTargets
from remediator.policy.schema import Window as PolicyWindow
from remediator.store import ControlState, Pause, RunLedger, RunRecord, StoreUnavailable

log = structlog.get_logger(__name__)

GUARDS = (
    "kill_switch",
    "target_lock",
    "rate_limit",
    "blast_radius",
    "circuit_breaker",
    "concurrency",
)
GLOBAL_LIMIT = "global"
# The blast radius of all policies together; a policy's own is keyed by its name (a slug, so
# never this).
GLOBAL_REACH = "(all policies)"
# Runs older than this cannot matter to any window or breaker a policy may declare.
SEED_HORIZON = timedelta(days=7)
# The run ids of dry-run's runs, guarded apart from live ones (`is_shadow`).
SHADOW = "shadow:"


def is_shadow(run_id: str) -> bool:
    """A dry-run's run: its budgets, breakers, leases and slots are the shadow backend's."""
    return run_id.startswith(SHADOW)


@dataclass(frozen=True)
class Admitted:
    run_id: str
    lease: Lease
    trial: bool  # the one run a half-open breaker lets through

    @property
    def shadow(self) -> bool:
        """Admitted in dry-run: its changes are only described."""
        return is_shadow(self.run_id)


@dataclass(frozen=True)
class Blocked:
    guard: str  # one of GUARDS, or guards_unavailable
    reason: str
    retry_after: float | None = None
    # The incident this block belongs to when it is not the target's own: every alert a blast
    # radius holds back in one window is one probable shared cause, so one incident.
    incident: str | None = None


@dataclass(frozen=True)
class _Outcome:
    """How a run ended, recorded in the store and still to be counted by the backend."""

    run_id: str
    breaker: BreakerSpec
    succeeded: bool | None


def breaker_spec(plan: Plan) -> BreakerSpec:
    return _breaker(plan.breaker_key, plan.circuit_breaker)


def limits(plan: Plan, guardrails: Guardrails) -> tuple[Limit, ...]:
    own = Limit(plan.rate_limit_key, _windows(plan.rate_limit))
    if not guardrails.global_rate_limit:
        return (own,)
    return own, Limit(GLOBAL_LIMIT, _windows(guardrails.global_rate_limit))


def reaches(plan: Plan, guardrails: Guardrails) -> tuple[Reach, ...]:
    """The blast radii a run of this plan counts in: none when it would change nothing."""
    if not plan.mutating:
        return ()
    bounds = ((plan.policy, plan.max_targets), (GLOBAL_REACH, guardrails.max_targets))
    return tuple(_reach(key, bound) for key, bound in bounds if bound is not None)


def blast_radius_blocked(plan: Plan, verdict: Verdict, now: float) -> Blocked:
    """Past its blast radius, in a person's words: the targets changed in the window are
    probably down for one shared reason, which changing this one more would not fix."""
    assert verdict.reach is not None
    reach, changed = verdict.reach, verdict.changed
    oldest = changed[0][1] if changed else now
    span = timedelta(seconds=max(1, math.ceil(now - oldest)))
    whose = "all policies" if reach.key == GLOBAL_REACH else plan.policy
    others = ", ".join(_shown(target) for target, _ in changed)
    asked = len(changed) + 1
    reason = (
        f"probable shared cause: {asked} targets of {whose} changed or asked within"
        f" {format_duration(span)} (bound {reach.count} per"
        f" {format_duration(timedelta(seconds=reach.per))}): {others}; not changing"
        f" {_ordinal(asked)} ({_shown(plan.target_key)})"
    )
    stamp = _utc(oldest).strftime("%Y%m%dT%H%M%SZ")
    scope = "" if reach.key == GLOBAL_REACH else f"{plan.policy}/"
    incident = f"remediator/{scope}blast-radius/{stamp}"
    return Blocked("blast_radius", reason, verdict.retry_after, incident)


class GuardStore(RunLedger, ControlState, Protocol):
    """What the guards keep durably: the runs admitted and finished (the budgets are seeded
    from them), and the kill switch with its audit."""


class Guards:
    def __init__(
        self,
        backend: GuardBackend,
        store: GuardStore,
        metrics: GuardMetrics,
        *,
        live: bool,
        guardrails: Callable[[], Guardrails],
        clock: Callable[[], float] = time.time,
        lease_ttl: float = 60.0,
        shadow: GuardBackend | None = None,
    ) -> None:
        self.backend = backend
        # Dry-run's guard state, apart from live's (in the same place, under names of its own).
        self.shadow = shadow if shadow is not None else backend.shadow()
        self.lease_ttl = lease_ttl  # a running run renews its lease and slot well within this
        self._store = store
        self._metrics = metrics
        self._live = live
        self._guardrails = guardrails
        self._clock = clock
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        # Outcomes the backend could not be told yet (Redis unreachable), oldest first.
        self._unsettled: deque[_Outcome] = deque()
        self._settling = asyncio.Lock()
        # Runs of this process waiting for a target or a slot, oldest first (see `freed`).
        self._turns: deque[asyncio.Future[None]] = deque()

    async def admit(self, plan: Plan, *, quiet: bool = False) -> Admitted | Blocked:
        """The guards' answer, counted and logged unless `quiet` (a run asking again while it
        waits for its turn: `tell` counts the answer that ends the wait)."""
        answer = await self._admit(plan)
        if not quiet:
            self.tell(plan, answer)
        return answer

    def tell(self, plan: Plan, answer: Admitted | Blocked) -> None:
        guard = answer.guard if isinstance(answer, Blocked) else "admitted"
        self._metrics.guard_decisions.labels(guard).inc()
        if isinstance(answer, Blocked):
            log.info("remediation blocked", policy=plan.policy, guard=guard, reason=answer.reason)

    async def readmit(self, plan: Plan, run_id: str) -> Admitted | Blocked:
        """A run that stopped for an approval, admitted again to make its change: the kill
        switch, its target's lease, its breaker (a trial stays its own) and the concurrency
        cap are asked again. Its rate limits and blast radii are not: they were spent when it
        began, for this one run."""
        answer = await self._admit(plan, run_id)
        self.tell(plan, answer)
        return answer

    async def _admit(self, plan: Plan, again: str | None = None) -> Admitted | Blocked:
        try:
            paused = await self._store.pause()
        except StoreUnavailable as exc:
            return Blocked("guards_unavailable", f"the kill switch cannot be read: {exc}")
        if paused is not None:
            return Blocked("kill_switch", f"paused by {paused.paused_by}: {paused.reason}")
        shadow = not self._live or plan.dry_run
        run_id = again or (SHADOW if shadow else "") + str(uuid.uuid4())
        answer = await self._guarded(plan, run_id, spend=again is None)
        if shadow and isinstance(answer, Blocked):
            why = "the policy sets dry_run" if plan.dry_run else "the service runs in dry-run mode"
            return replace(answer, reason=f"dry-run ({why}): would be blocked: {answer.reason}")
        return answer

    async def standing(self, plan: Plan, run_id: str) -> dict[str, object]:
        """The plan's rate-limit budgets left and its breaker, as an approver sees them (empty
        when the guard state cannot be read)."""
        spec = breaker_spec(plan)
        try:
            snapshot = await self.backend_of(run_id).snapshot(
                limits(plan, self._guardrails()), [spec]
            )
        except (GuardsUnavailable, Unseeded) as exc:
            return {"unavailable": str(exc)}
        budgets = {
            key: [
                f"{budget.remaining} of {budget.window.max} left per"
                f" {format_duration(timedelta(seconds=budget.window.per))}"
                for budget in windows
            ]
            for key, windows in snapshot.budgets.items()
        }
        breaker = snapshot.breakers.get(spec.key)
        state = breaker.state.value if breaker else BreakerState.CLOSED.value
        failures = breaker.recent_failures if breaker else 0
        return {
            "budgets": budgets,
            "breaker": f"{state} ({failures} of {spec.failures} failures to open it)",
        }

    def backend_of(self, run_id: str) -> GuardBackend:
        """The backend that guards this run: the shadow one for a dry-run's."""
        return self.shadow if is_shadow(run_id) else self.backend

    async def _guarded(self, plan: Plan, run_id: str, *, spend: bool) -> Admitted | Blocked:
        """Every guard but the kill switch, against the run's own backend; without `spend`
        (a run admitted again), its rate limits and blast radii are not counted again."""
        backend = self.backend_of(run_id)
        guardrails = self._guardrails()
        ttl = self.lease_ttl
        lease: Lease | None = None
        try:
            # A breaker that has not counted every recorded outcome is not known: count them
            # first, or fail closed.
            await self._settle()
            lease = await backend.acquire_lease(plan.target_key, run_id, ttl)
            if lease is None:
                return Blocked("target_lock", f"another run holds {plan.target_key}")
            attempt = Attempt(
                run_id,
                limits(plan, guardrails) if spend else (),
                breaker_spec(plan),
                guardrails.max_concurrent_runs,
                ttl,
                # A trial's outcome is known only after its verification: no second trial
                # before then, even on another alert for the same target.
                trial_ttl=(guardrails.run_timeout + plan.verify_within).total_seconds() + ttl,
                target=plan.target_key,
                reaches=reaches(plan, guardrails) if spend else (),
            )
            verdict = await self._admit_seeded(backend, attempt)
        except (GuardsUnavailable, StoreUnavailable) as exc:
            if lease is not None:
                await self._release_quietly(lease)
            return Blocked("guards_unavailable", f"guard state unavailable, failing closed: {exc}")
        if not verdict.allowed:
            await self._release_quietly(lease)
            return self._blocked(plan, verdict)
        now = self._clock()
        if not spend:  # on record since it began
            return Admitted(run_id, lease, verdict.breaker is BreakerState.HALF_OPEN)
        try:
            await self._store.record_admission(_run_record(plan, attempt, now))
        except StoreUnavailable as exc:
            await self._release_quietly(lease)
            return Blocked("guards_unavailable", f"the run cannot be recorded: {exc}")
        trial = verdict.breaker is BreakerState.HALF_OPEN
        if trial:
            transition = Transition(attempt.breaker.key, BreakerState.OPEN, BreakerState.HALF_OPEN)
            await self._record_transition(transition, run_id, None, now)
        return Admitted(run_id, lease, trial)

    def _blocked(self, plan: Plan, verdict: Verdict) -> Blocked:
        assert verdict.guard is not None
        if verdict.guard == "blast_radius":
            return blast_radius_blocked(plan, verdict, self._clock())
        return Blocked(verdict.guard, verdict.detail, verdict.retry_after)

    async def _admit_seeded(self, backend: GuardBackend, attempt: Attempt) -> Verdict:
        try:
            return await backend.admit(attempt)
        except Unseeded:
            since = _utc(self._clock()) - SEED_HORIZON
            shadow = is_shadow(attempt.run_id)
            history = [r for r in await self._store.runs_since(since) if is_shadow(r.id) == shadow]
            await backend.seed([_past_run(run) for run in history])
            log.info("guard state seeded from the store", runs=len(history), shadow=shadow)
            return await backend.admit(attempt)

    async def may_act(self, admitted: Admitted) -> bool:
        """The fencing check before each mutating step: is our lease still the current one?"""
        try:
            return await self.backend_of(admitted.run_id).holds(admitted.lease)
        except GuardsUnavailable:
            return False

    async def renew(self, admitted: Admitted) -> Admitted | None:
        backend = self.backend_of(admitted.run_id)
        try:
            lease = await backend.renew(admitted.run_id, admitted.lease, self.lease_ttl)
        except GuardsUnavailable:
            return None
        return None if lease is None else Admitted(admitted.run_id, lease, admitted.trial)

    async def finish(self, plan: Plan, admitted: Admitted, succeeded: bool) -> None:
        await self.release(admitted)
        await self.record_outcome(admitted.run_id, breaker_spec(plan), succeeded)

    async def hold(self, plan: Plan) -> Admitted | Blocked:
        """The target alone, for undoing a run's mitigation once its alert resolved: no new
        remediation, so no rate limit, breaker or slot; but not while another run acts on it."""
        run_id = str(uuid.uuid4())
        try:
            lease = await self.backend.acquire_lease(plan.target_key, run_id, self.lease_ttl)
        except GuardsUnavailable as exc:
            return Blocked("guards_unavailable", f"guard state unavailable, failing closed: {exc}")
        if lease is None:
            return Blocked("target_lock", f"another run holds {plan.target_key}")
        return Admitted(run_id, lease, trial=False)

    async def release(self, admitted: Admitted) -> None:
        """The run's steps are done: others may act on the target while it is verified."""
        await self._release_quietly(admitted.lease)

    async def record_outcome(
        self, run_id: str, breaker: BreakerSpec, succeeded: bool | None
    ) -> None:
        """How the run ended (its steps, then its verification), counted by its breaker; None
        for a run that tried nothing (it waited for an approval that did not come), which
        its breaker does not count either way.

        The store has it first. A backend that cannot be reached counts it later, before this
        process admits another run: the run's end is still recorded and escalated, and no run
        is admitted past a breaker that missed a failure. (A replica that dies meanwhile leaves
        it in the store, from which an empty backend is seeded.)
        """
        await self._store.record_finish(run_id, succeeded, _utc(self._clock()))
        self._unsettled.append(_Outcome(run_id, breaker, succeeded))
        try:
            await self._settle()
        except GuardsUnavailable as exc:
            log.warning(
                "run outcome recorded, not yet counted by the guards",
                run=run_id,
                waiting=len(self._unsettled),
                error=str(exc),
            )

    async def count_recurrence(self, plan: Plan, run_id: str) -> None:
        """The verified fix of run `run_id` did not last (its alert fired again on the target):
        the run counts as failed, in the store and, once per run, by its breaker."""
        await self._store.record_finish(run_id, False, _utc(self._clock()))
        self._unsettled.append(_Outcome(f"{run_id}/recurred", breaker_spec(plan), False))
        try:
            await self._settle()
        except GuardsUnavailable as exc:
            log.warning("recurrence recorded, not yet counted by the guards", error=str(exc))

    async def settle(self) -> None:
        """Tell the backend the outcomes it missed, if it can be reached now: called at each
        dispatcher poll as well as before an admission, so that another replica does not
        admit a run past a breaker that missed them while this one has nothing to admit."""
        if not self._unsettled:
            return
        try:
            await self._settle()
        except GuardsUnavailable as exc:
            log.info("run outcomes still not counted", waiting=len(self._unsettled), error=str(exc))

    async def _settle(self) -> None:
        """Tell the backend every outcome it missed, oldest first (it counts each run once);
        GuardsUnavailable while it still cannot be told."""
        async with self._settling:
            while self._unsettled:
                outcome = self._unsettled[0]
                transition = await self.backend_of(outcome.run_id).finish(
                    outcome.run_id, outcome.breaker, outcome.succeeded
                )
                self._unsettled.popleft()
                if transition.changed:
                    await self._record_transition(
                        transition, outcome.run_id, outcome.succeeded, self._clock()
                    )

    async def _record_transition(
        self, transition: Transition, run_id: str, succeeded: bool | None, now: float
    ) -> None:
        self._metrics.breaker_transitions.labels(transition.after.value).inc()
        detail: dict[str, object] = {
            "from": transition.before.value,
            "to": transition.after.value,
            "run": run_id,
        }
        if succeeded is not None:
            detail["succeeded"] = succeeded
        log.warning("circuit breaker changed state", breaker=transition.key, **detail)
        try:
            await self._store.audit("breaker", transition.key, detail, _utc(now))
        except StoreUnavailable as exc:
            log.error("breaker transition not audited", breaker=transition.key, error=str(exc))

    async def pause(self, reason: str, by: str) -> Pause:
        pause = Pause(reason, by, _utc(self._clock()))
        await self._store.set_pause(pause)
        await self._store.audit(
            "pause", "kill_switch", {"reason": reason, "by": by}, pause.paused_at
        )
        log.warning("remediation paused", reason=reason, by=by)
        return pause

    async def resume(self, by: str) -> int:
        """Lift the kill switch; the alerts it held that still fire are decided again, once
        each. How many were queued again."""
        await self._store.set_pause(None)
        at = _utc(self._clock())
        again = await self._store.decide_again_after_pause(at)
        await self._store.audit("resume", "kill_switch", {"by": by, "decided_again": again}, at)
        log.warning("remediation resumed", by=by, decided_again=again)
        return again

    async def paused(self) -> Pause | None:
        return await self._store.pause()

    async def snapshot(self, policies: PolicySet) -> Snapshot:
        """The state of every limit and breaker that a run of the last week touched, with the
        outcomes this process has not yet told the backend counted first."""
        await self._settle()
        since = _utc(self._clock()) - SEED_HORIZON
        runs = await self._store.runs_since(since)
        guardrails = self._guardrails()
        found: dict[str, Limit] = {}
        breakers: dict[str, BreakerSpec] = {}
        for run in runs:
            policy = policies.by_name.get(run.policy)
            if policy is not None:
                found[run.limit_keys[0]] = Limit(
                    run.limit_keys[0], _windows(policy.rate_limit.windows)
                )
                breakers[run.breaker_key] = _breaker(run.breaker_key, policy.circuit_breaker)
        if guardrails.global_rate_limit:
            found[GLOBAL_LIMIT] = Limit(GLOBAL_LIMIT, _windows(guardrails.global_rate_limit))
        bounds = [(policy.name, policy.max_targets) for policy in policies.by_name.values()]
        bounds.append((GLOBAL_REACH, guardrails.max_targets))
        radii = [_reach(key, bound) for key, bound in bounds if bound is not None]
        # The state that guards this mode's runs: dry-run's own budgets in dry-run.
        backend = self.backend if self._live else self.shadow
        return await backend.snapshot(list(found.values()), list(breakers.values()), radii)

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await self.backend_of(lease.owner).release_lease(lease)
        except GuardsUnavailable as exc:  # the lease lapses by its TTL
            log.warning("lease not released; it lapses by itself", error=str(exc))
        self.pass_on()

    async def freed(self, within: float) -> bool:
        """Wait until this process releases a target and its slot and it is this waiter's
        turn (the oldest waiter first: one release wakes one waiter, not all), or `within`
        seconds have passed (a slot another replica frees is seen by asking again). Whether
        the turn came."""
        turn = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        try:
            async with asyncio.timeout(within):
                await turn
        except TimeoutError:
            return False
        finally:
            if turn in self._turns:
                self._turns.remove(turn)
        return True

    def pass_on(self) -> None:
        """Give the turn to the oldest waiter: a target and slot were released, or the waiter
        that had the turn could not use it (its own target is still held)."""
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return


def _windows(windows: Sequence[PolicyWindow]) -> tuple[Window, ...]:
    return tuple(Window(window.max, window.per.total_seconds()) for window in windows)


def _reach(key: str, bound: MaxTargets) -> Reach:
    return Reach(key, bound.count, bound.per.total_seconds())


def _shown(target_key: str) -> str:
    """A target key (kind/namespace/name) as a person names it: namespace/name."""
    _, namespace, name = target_key.split("/", 2)
    return name if namespace == "-" else f"{namespace}/{name}"


def _ordinal(n: int) -> str:
    words = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
    return f"a {words[n - 1]}" if n <= len(words) else f"a {n}th"


def _breaker(key: str, breaker: CircuitBreaker) -> BreakerSpec:
    return BreakerSpec(
        key, breaker.failures, breaker.window.total_seconds(), breaker.cooldown.total_seconds()
    )


def _run_record(plan: Plan, attempt: Attempt, now: float) -> RunRecord:
    return RunRecord(
        id=attempt.run_id,
        policy=plan.policy,
        fingerprint=plan.fingerprint,
        target=plan.target_key,
        limit_keys=tuple(limit.key for limit in attempt.limits),
        reach_keys=tuple(reach.key for reach in attempt.reaches),
        breaker_key=attempt.breaker.key,
        breaker_failures=attempt.breaker.failures,
        breaker_window=attempt.breaker.window,
        breaker_cooldown=attempt.breaker.cooldown,
        admitted_at=_utc(now),
    )


def _past_run(run: RunRecord) -> PastRun:
    return PastRun(
        run.id,
        run.limit_keys,
        BreakerSpec(
            run.breaker_key, run.breaker_failures, run.breaker_window, run.breaker_cooldown
        ),
        run.admitted_at.timestamp(),
        run.finished_at.timestamp() if run.finished_at else None,
        run.succeeded,
        run.target,
        run.reach_keys,
    )


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
