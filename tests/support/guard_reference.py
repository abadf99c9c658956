"""A small model of what the guards promise, written from the rules below and not from
`remediator.guards.state`: the property tests hold both backends to it.

- Rate limits: an admission is allowed when, for every window of every limit, fewer than
  `max` admissions fell in the sliding window (now - per, now].
- Circuit breaker: closed, open or half-open. Closed: a failed run opens it when `failures`
  failures (this one included) fell in (now - window, now]. Open: blocks until `cooldown` has
  passed since it opened; the next run admitted after that is the one trial, and the breaker is
  half-open. Half-open: blocks while the trial is within its deadline (trial_for, extended by
  renewing); once that lapses the next admitted run becomes the trial. While open or half-open
  only the trial's outcome counts: success closes the breaker (failures forgotten), failure
  reopens it (a new cooldown), and a trial that tried nothing (no outcome) lapses at once.
  Closed, a run that tried nothing counts as nothing.
- Concurrency: at most `max_concurrent` runs in flight; a run's slot lapses after run_ttl.
- An attempt passes rate limits, then the breaker, then the cap, and takes nothing unless all
  three allow.
- Leases: one holder per target until it expires or is released; every new holder gets a
  larger token than any before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remediator.guards.base import Attempt, BreakerSpec


@dataclass
class Breaker:
    state: str = "closed"
    failures: list[float] = field(default_factory=list)
    opened_at: float = 0.0
    trial: str | None = None
    trial_until: float = 0.0


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    guard: str | None
    breaker: str  # the breaker's state after the attempt


class ReferenceGuards:
    def __init__(self) -> None:
        self.admissions: dict[str, list[float]] = {}  # limit key -> admission times
        self.breakers: dict[str, Breaker] = {}
        self.slots: dict[str, float] = {}  # run id -> when its slot lapses
        self.leases: dict[str, tuple[int, float]] = {}  # target -> (token, expiry)
        self.last_token: dict[str, int] = {}

    def admit(self, attempt: Attempt, now: float) -> Outcome:
        breaker = self.breaker(attempt.breaker.key)
        for limit in attempt.limits:
            for window in limit.windows:
                if self.used(limit.key, window.per, now) >= window.max:
                    return Outcome(False, "rate_limit", breaker.state)
        if breaker.state == "open" and now < breaker.opened_at + attempt.breaker.cooldown:
            return Outcome(False, "circuit_breaker", breaker.state)
        if breaker.state == "half_open" and now < breaker.trial_until:
            return Outcome(False, "circuit_breaker", breaker.state)
        if self.in_flight(now) >= attempt.max_concurrent:
            return Outcome(False, "concurrency", breaker.state)
        for limit in attempt.limits:
            self.admissions.setdefault(limit.key, []).append(now)
        if breaker.state != "closed":
            breaker.state = "half_open"
            breaker.trial = attempt.run_id
            breaker.trial_until = now + attempt.trial_for
        self.slots[attempt.run_id] = now + attempt.run_ttl
        return Outcome(True, None, breaker.state)

    def finish(
        self, run_id: str, spec: BreakerSpec, succeeded: bool | None, now: float
    ) -> tuple[str, str]:
        """(state before, state after)."""
        self.slots.pop(run_id, None)
        breaker = self.breaker(spec.key)
        before = breaker.state
        if breaker.state == "closed":
            if succeeded is False:
                breaker.failures = [at for at in breaker.failures if at > now - spec.window]
                breaker.failures.append(now)
                if len(breaker.failures) >= spec.failures:
                    self.breakers[spec.key] = Breaker("open", opened_at=now)
        elif breaker.trial == run_id and succeeded is None:
            breaker.trial_until = now
        elif breaker.trial == run_id:
            self.breakers[spec.key] = Breaker() if succeeded else Breaker("open", opened_at=now)
        return before, self.breakers[spec.key].state

    def renew(self, run_id: str, target: str, token: int, ttl: float, now: float) -> bool:
        if not self.holds(target, token, now):
            return False
        self.leases[target] = (token, now + ttl)
        self.slots[run_id] = now + ttl
        for breaker in self.breakers.values():
            if breaker.state == "half_open" and breaker.trial == run_id:
                breaker.trial_until = max(breaker.trial_until, now + ttl)
        return True

    def acquire(self, target: str, ttl: float, now: float) -> int | None:
        current = self.leases.get(target)
        if current is not None and current[1] > now:
            return None
        token = self.last_token.get(target, 0) + 1
        self.last_token[target] = token
        self.leases[target] = (token, now + ttl)
        return token

    def holds(self, target: str, token: int, now: float) -> bool:
        current = self.leases.get(target)
        return current is not None and current[0] == token and current[1] > now

    def release(self, target: str, token: int) -> None:
        current = self.leases.get(target)
        if current is not None and current[0] == token:
            del self.leases[target]

    def breaker(self, key: str) -> Breaker:
        return self.breakers.setdefault(key, Breaker())

    def used(self, limit_key: str, per: float, now: float) -> int:
        return sum(1 for at in self.admissions.get(limit_key, []) if now - per < at <= now)

    def recent_failures(self, spec: BreakerSpec, now: float) -> int:
        return sum(1 for at in self.breaker(spec.key).failures if at > now - spec.window)

    def in_flight(self, now: float) -> int:
        return sum(1 for until in self.slots.values() if until > now)
