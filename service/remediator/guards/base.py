"""What every guard backend promises, and the values that cross that promise.

A backend owns the shared state of the guards that need one: rate-limit logs, the targets
each blast radius has changed, circuit breakers, target leases and run slots. `admit` checks
rate limits, then blast radii, then the breaker, then the concurrency cap, and takes nothing
unless all allow: one atomic step, whatever the number of replicas. Times are seconds since
the epoch, from the backend's own clock (Redis: the server's TIME), so replicas with skewed
clocks agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class GuardsUnavailable(Exception):
    """The guard state cannot be read or written: nothing may act (fail closed)."""


class Unseeded(Exception):
    """The backend holds no state yet (new, restarted or flushed): seed it from the store."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Window:
    max: int
    per: float  # seconds


@dataclass(frozen=True)
class Limit:
    """A rate limit: at most `max` admissions in any `per` seconds, for every window."""

    key: str
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class Reach:
    """A blast radius: at most `count` distinct targets changed in any `per` seconds. A target
    already changed inside the window is not counted again."""

    key: str
    count: int
    per: float  # seconds


@dataclass(frozen=True)
class BreakerSpec:
    key: str
    failures: int  # failed runs within `window` that open the breaker
    window: float
    cooldown: float  # open this long before one trial run is let through


@dataclass(frozen=True)
class Attempt:
    run_id: str
    limits: tuple[Limit, ...]
    breaker: BreakerSpec
    max_concurrent: int
    run_ttl: float  # a run slot lapses after this unless renewed
    trial_ttl: float | None = None  # a half-open trial's deadline, through its verification
    target: str = ""  # what the run changes, as `reaches` count it
    reaches: tuple[Reach, ...] = ()  # empty for a run that changes nothing

    @property
    def trial_for(self) -> float:
        """A trial lasts until its outcome is known: at least the run's own lifetime."""
        return max(self.run_ttl, self.trial_ttl or 0.0)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    guard: str | None = None  # which guard blocked: rate_limit, blast_radius, circuit_breaker,
    # concurrency
    detail: str = ""
    retry_after: float | None = None
    breaker: BreakerState = BreakerState.CLOSED  # after this attempt; HALF_OPEN: a trial run
    reach: Reach | None = None  # the blast radius that blocked
    changed: tuple[tuple[str, float], ...] = ()  # its targets changed in the window, oldest first


@dataclass(frozen=True)
class Transition:
    """A breaker's state before and after a run's outcome was recorded."""

    key: str
    before: BreakerState
    after: BreakerState

    @property
    def changed(self) -> bool:
        return self.before is not self.after


@dataclass(frozen=True)
class Lease:
    """One run's hold on a target. The token grows with every new holder: a fencing token."""

    target: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True)
class PastRun:
    """A run as the store recorded it: what the guards are re-seeded from."""

    run_id: str
    limit_keys: tuple[str, ...]
    breaker: BreakerSpec
    admitted_at: float
    finished_at: float | None = None
    succeeded: bool | None = None
    target: str = ""
    reach_keys: tuple[str, ...] = ()  # the blast radii it counted in


@dataclass(frozen=True)
class BreakerView:
    state: BreakerState
    recent_failures: int
    opened_at: float | None
    trial_until: float | None  # a half-open trial's deadline


@dataclass(frozen=True)
class Budget:
    window: Window
    used: int

    @property
    def remaining(self) -> int:
        return max(0, self.window.max - self.used)


@dataclass(frozen=True)
class ReachView:
    """A blast radius now: the targets changed in its window, oldest first, with when."""

    reach: Reach
    changed: tuple[tuple[str, float], ...]

    @property
    def remaining(self) -> int:
        return max(0, self.reach.count - len(self.changed))


@dataclass(frozen=True)
class Snapshot:
    now: float
    breakers: dict[str, BreakerView] = field(default_factory=dict)
    budgets: dict[str, tuple[Budget, ...]] = field(default_factory=dict)
    leases: tuple[Lease, ...] = ()
    runs_in_flight: int = 0
    reaches: dict[str, ReachView] = field(default_factory=dict)


class GuardBackend(Protocol):
    async def admit(self, attempt: Attempt) -> Verdict:
        """Rate limits, blast radii, breaker, concurrency cap, in that order; takes only if all
        allow.

        Raises Unseeded before the first seed, GuardsUnavailable when the state is out of reach.
        """
        ...

    async def finish(self, run_id: str, breaker: BreakerSpec, succeeded: bool | None) -> Transition:
        """Free the run's slot and count its outcome against its breaker, once: a repeat (a
        retry whose first attempt did land, or a run the seed already replayed) changes
        nothing."""
        ...

    async def renew(self, run_id: str, lease: Lease, ttl: float) -> Lease | None:
        """Extend a running run's lease and slot; None when the lease was lost."""
        ...

    async def acquire_lease(self, target: str, owner: str, ttl: float) -> Lease | None:
        """The target's lease for `owner` (a run id), with a new fencing token: None while
        another owner holds it. The same owner takes it again (a run that waited for
        approval, whose replica died before letting the lease go)."""
        ...

    async def holds(self, lease: Lease) -> bool:
        """The fencing check: is this lease still the target's current one?"""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """The run (the lease's owner) is done with its steps: free its slot under the
        concurrency cap, and the target unless another holds it now. Its breaker trial and
        rate-limit entries stay until its outcome is recorded."""
        ...

    async def seed(self, history: Sequence[PastRun]) -> None:
        """Rebuild rate logs, blast radii and breakers from the store's runs; a no-op once
        seeded."""
        ...

    async def snapshot(
        self,
        limits: Sequence[Limit],
        breakers: Sequence[BreakerSpec],
        reaches: Sequence[Reach] = (),
    ) -> Snapshot: ...

    async def ping(self) -> None: ...

    def shadow(self) -> GuardBackend:
        """The same kind of state, apart: dry-run's budgets, breakers, leases and slots (on
        the same connection)."""
        ...

    async def close(self) -> None: ...
