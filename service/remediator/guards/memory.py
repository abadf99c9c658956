"""Guard state in this process: the embedded default, for a single replica.

Every method runs without awaiting in between, so on one event loop each is atomic. The state
starts unseeded, so a restart re-reads recent runs from the store instead of starting with full
budgets and closed breakers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from remediator.guards.base import (
    Attempt,
    BreakerSpec,
    BreakerState,
    BreakerView,
    Budget,
    Lease,
    Limit,
    PastRun,
    Reach,
    ReachView,
    Snapshot,
    Transition,
    Unseeded,
    Verdict,
)
from remediator.guards.state import (
    BreakerRecord,
    breaker_admit,
    breaker_finish,
    finished_runs,
    rate_retry_after,
    reach_inside,
    reach_retry_after,
    recent_failures,
    replay,
    replay_reaches,
    used,
)

_LOG_HORIZON = 7 * 86400.0  # rate-log entries older than this are dropped


class MemoryGuards:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seeded = False
        self._logs: dict[str, list[float]] = {}
        self._reaches: dict[str, dict[str, float]] = {}  # blast radius -> target -> changed at
        self._breakers: dict[str, BreakerRecord] = {}
        self._slots: dict[str, float] = {}  # run id -> expiry
        self._leases: dict[str, Lease] = {}
        self._fences: dict[str, int] = {}
        self._finished: dict[str, float] = {}  # run id -> when its outcome was counted

    async def admit(self, attempt: Attempt) -> Verdict:
        if not self._seeded:
            raise Unseeded
        now = self._clock()
        spent = self._rate_limited(attempt, now) or self._past_reach(attempt, now)
        if spent is not None:
            return spent
        spec = attempt.breaker
        record = self._breakers.get(spec.key, BreakerRecord())
        admitted, wait = breaker_admit(record, spec, now, attempt.run_id, attempt.trial_for)
        if wait is not None:
            detail = f"circuit breaker {spec.key} is {record.state}"
            return Verdict(False, "circuit_breaker", detail, wait, record.state)
        self._slots = {run: until for run, until in self._slots.items() if until > now}
        if len(self._slots) >= attempt.max_concurrent:
            detail = f"{len(self._slots)} runs in flight, the cap is {attempt.max_concurrent}"
            retry = min(self._slots.values(), default=now) - now
            return Verdict(False, "concurrency", detail, retry, record.state)
        for limit in attempt.limits:
            self._logs[limit.key].append(now)
        for reach in attempt.reaches:
            self._reaches[reach.key][attempt.target] = now
        self._breakers[spec.key] = admitted
        self._slots[attempt.run_id] = now + attempt.run_ttl
        return Verdict(True, breaker=admitted.state)

    def _rate_limited(self, attempt: Attempt, now: float) -> Verdict | None:
        for limit in attempt.limits:
            log = self._logs.setdefault(limit.key, [])
            log[:] = [at for at in log if at > now - _LOG_HORIZON]
            wait = rate_retry_after(log, limit.windows, now)
            if wait is not None:
                detail = f"rate limit {limit.key} spent: {_windows(limit, log, now)}"
                return Verdict(False, "rate_limit", detail, wait, self._state(attempt.breaker))
        return None

    def _past_reach(self, attempt: Attempt, now: float) -> Verdict | None:
        for reach in attempt.reaches:
            changed = self._reaches.setdefault(reach.key, {})
            for target in [target for target, at in changed.items() if at <= now - _LOG_HORIZON]:
                del changed[target]
            wait = reach_retry_after(changed, reach, attempt.target, now)
            if wait is not None:
                inside = reach_inside(changed, reach, now)
                detail, state = _reach(reach, inside), self._state(attempt.breaker)
                return Verdict(False, "blast_radius", detail, wait, state, reach, inside)
        return None

    async def finish(self, run_id: str, breaker: BreakerSpec, succeeded: bool | None) -> Transition:
        self._slots.pop(run_id, None)
        before = self._breakers.get(breaker.key, BreakerRecord())
        if run_id in self._finished:
            return Transition(breaker.key, before.state, before.state)
        now = self._clock()
        self._finished = {run: at for run, at in self._finished.items() if at > now - _LOG_HORIZON}
        self._finished[run_id] = now
        after = breaker_finish(before, breaker, now, run_id, succeeded)
        self._breakers[breaker.key] = after
        return Transition(breaker.key, before.state, after.state)

    async def renew(self, run_id: str, lease: Lease, ttl: float) -> Lease | None:
        if not await self.holds(lease):
            return None
        now = self._clock()
        renewed = Lease(lease.target, lease.owner, lease.token, now + ttl)
        self._leases[lease.target] = renewed
        self._slots[run_id] = now + ttl
        for key, record in self._breakers.items():
            if record.trial_run == run_id and record.state is BreakerState.HALF_OPEN:
                until = max(record.trial_until or 0.0, now + ttl)  # renewing never shortens it
                self._breakers[key] = BreakerRecord(
                    record.state, record.failures, record.opened_at, run_id, until
                )
        return renewed

    async def acquire_lease(self, target: str, owner: str, ttl: float) -> Lease | None:
        now = self._clock()
        current = self._leases.get(target)
        if current is not None and current.expires_at > now and current.owner != owner:
            return None
        token = self._fences.get(target, 0) + 1
        self._fences[target] = token
        lease = Lease(target, owner, token, now + ttl)
        self._leases[target] = lease
        return lease

    async def holds(self, lease: Lease) -> bool:
        current = self._leases.get(lease.target)
        return (
            current is not None
            and (current.token, current.owner) == (lease.token, lease.owner)
            and current.expires_at > self._clock()
        )

    async def release_lease(self, lease: Lease) -> None:
        self._slots.pop(lease.owner, None)  # the owner is the run: its steps are done
        current = self._leases.get(lease.target)
        if current is not None and (current.token, current.owner) == (lease.token, lease.owner):
            del self._leases[lease.target]

    async def seed(self, history: Sequence[PastRun]) -> None:
        if self._seeded:
            return
        logs, breakers = replay(history)
        self._logs = {key: sorted(times) for key, times in logs.items()}
        self._breakers = breakers
        self._reaches = replay_reaches(history)
        self._finished.update(finished_runs(history))
        self._seeded = True

    async def snapshot(
        self,
        limits: Sequence[Limit],
        breakers: Sequence[BreakerSpec],
        reaches: Sequence[Reach] = (),
    ) -> Snapshot:
        now = self._clock()
        budgets = {
            limit.key: tuple(
                Budget(window, used(self._logs.get(limit.key, ()), window, now))
                for window in limit.windows
            )
            for limit in limits
        }
        views = {}
        for spec in breakers:
            record = self._breakers.get(spec.key, BreakerRecord())
            views[spec.key] = BreakerView(
                record.state,
                recent_failures(record, spec, now),
                record.opened_at,
                record.trial_until,
            )
        leases = tuple(lease for lease in self._leases.values() if lease.expires_at > now)
        in_flight = sum(1 for until in self._slots.values() if until > now)
        radii = {
            reach.key: ReachView(reach, reach_inside(self._reaches.get(reach.key, {}), reach, now))
            for reach in reaches
        }
        return Snapshot(now, views, budgets, leases, in_flight, radii)

    async def ping(self) -> None:
        return None

    def shadow(self) -> MemoryGuards:
        return MemoryGuards(self._clock)

    async def close(self) -> None:
        return None

    def _state(self, spec: BreakerSpec) -> BreakerState:
        return self._breakers.get(spec.key, BreakerRecord()).state


def _windows(limit: Limit, log: Sequence[float], now: float) -> str:
    return ", ".join(
        f"{used(log, window, now)}/{window.max} in {window.per:g}s" for window in limit.windows
    )


def _reach(reach: Reach, inside: Sequence[tuple[str, float]]) -> str:
    targets = ", ".join(target for target, _ in inside)
    spent = f"{len(inside)}/{reach.count} in {reach.per:g}s"
    return f"blast radius {reach.key} spent: {spent}: {targets}"
