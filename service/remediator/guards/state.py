"""The guards' rules as pure functions over plain records: no clock, no I/O.

The in-process backend applies them directly; the Redis backend's Lua scripts apply the same
rules inside Redis, and the tests hold both to a reference model. Seeding from the store
replays recorded runs through these same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from remediator.guards.base import BreakerSpec, BreakerState, PastRun, Reach, Window


@dataclass(frozen=True)
class BreakerRecord:
    state: BreakerState = BreakerState.CLOSED
    failures: tuple[float, ...] = ()  # failure times within the window, while closed
    opened_at: float | None = None
    trial_run: str | None = None
    trial_until: float | None = None


def used(log: Iterable[float], window: Window, now: float) -> int:
    """Admissions inside the sliding window (now - per, now]."""
    return sum(1 for at in log if now - window.per < at <= now)


def rate_retry_after(log: Sequence[float], windows: Iterable[Window], now: float) -> float | None:
    """None when every window has room; else how long until the fullest one has."""
    waits = []
    for window in windows:
        inside = sorted(at for at in log if now - window.per < at <= now)
        if len(inside) >= window.max:
            oldest_to_leave = inside[len(inside) - window.max]
            waits.append(oldest_to_leave + window.per - now)
    return max(waits) if waits else None


def reach_inside(
    changed: Mapping[str, float], reach: Reach, now: float
) -> tuple[tuple[str, float], ...]:
    """The targets changed inside the window (now - per, now], oldest first."""
    inside = [(target, at) for target, at in changed.items() if now - reach.per < at <= now]
    return tuple(sorted(inside, key=lambda entry: (entry[1], entry[0])))


def reach_retry_after(
    changed: Mapping[str, float], reach: Reach, target: str, now: float
) -> float | None:
    """None when the target may be changed: it was already changed inside the window (not
    counted again), or fewer than `count` targets were. Else how long until one more may."""
    inside = reach_inside(changed, reach, now)
    if target in dict(inside) or len(inside) < reach.count:
        return None
    _, oldest_to_leave = inside[len(inside) - reach.count]
    return oldest_to_leave + reach.per - now


def breaker_admit(
    record: BreakerRecord, spec: BreakerSpec, now: float, run_id: str, ttl: float
) -> tuple[BreakerRecord, float | None]:
    """(the record after admitting, None) or (unchanged, seconds until a run may pass)."""
    if record.state is BreakerState.CLOSED:
        return record, None
    if record.state is BreakerState.HALF_OPEN and record.trial_run == run_id:
        return record, None  # the trial itself, admitted again (its approval came)
    trial_open = record.trial_until is not None and record.trial_until > now
    if record.state is BreakerState.HALF_OPEN and trial_open:
        assert record.trial_until is not None
        return record, record.trial_until - now
    assert record.opened_at is not None
    reopens = record.opened_at + spec.cooldown
    if record.state is BreakerState.OPEN and now < reopens:
        return record, reopens - now
    # Cooldown over, or a half-open trial that lapsed unfinished: let exactly one run through.
    return replace(
        record, state=BreakerState.HALF_OPEN, trial_run=run_id, trial_until=now + ttl
    ), None


def breaker_finish(
    record: BreakerRecord, spec: BreakerSpec, now: float, run_id: str, succeeded: bool | None
) -> BreakerRecord:
    """The breaker after a run's outcome: `succeeded` None for a run that tried nothing (its
    approval refused, expired, or its alert resolved while it waited), which proves nothing
    either way: a trial's ends as if it had lapsed, and the next run is the trial."""
    if record.state is not BreakerState.CLOSED:
        if record.trial_run != run_id:
            return record  # a run admitted before the breaker opened: its outcome changes nothing
        if succeeded is None:
            return replace(record, trial_until=None)
        if succeeded:
            return BreakerRecord()
        return BreakerRecord(BreakerState.OPEN, opened_at=now)
    if succeeded is None or succeeded:
        return record
    failures = (*(at for at in record.failures if at > now - spec.window), now)
    if len(failures) >= spec.failures:
        return BreakerRecord(BreakerState.OPEN, opened_at=now)
    return replace(record, failures=failures)


def recent_failures(record: BreakerRecord, spec: BreakerSpec, now: float) -> int:
    return sum(1 for at in record.failures if at > now - spec.window)


def finished_runs(history: Sequence[PastRun]) -> dict[str, float]:
    """Run id -> finish time of the runs whose outcome `replay` counts: a backend seeded from
    them does not count them again."""
    return {
        run.run_id: run.finished_at
        for run in history
        if run.finished_at is not None and run.succeeded is not None
    }


def replay(history: Sequence[PastRun]) -> tuple[dict[str, list[float]], dict[str, BreakerRecord]]:
    """Rate logs and breakers as the recorded runs left them, for seeding an empty backend."""
    logs: dict[str, list[float]] = {}
    breakers: dict[str, BreakerRecord] = {}
    events: list[tuple[float, int, PastRun]] = []
    for run in history:
        for key in run.limit_keys:
            logs.setdefault(key, []).append(run.admitted_at)
        events.append((run.admitted_at, 0, run))
        if run.finished_at is not None and run.succeeded is not None:
            events.append((run.finished_at, 1, run))
    for at, kind, run in sorted(events, key=lambda event: (event[0], event[1])):
        record = breakers.get(run.breaker.key, BreakerRecord())
        if kind == 0:
            # It was admitted then, so the breaker let it through: replay only the transition.
            record, _ = breaker_admit(record, run.breaker, at, run.run_id, float("inf"))
            if record.state is BreakerState.OPEN:
                record = replace(record, state=BreakerState.HALF_OPEN, trial_run=run.run_id)
        else:
            assert run.succeeded is not None
            record = breaker_finish(record, run.breaker, at, run.run_id, run.succeeded)
        breakers[run.breaker.key] = record
    for key, record in breakers.items():
        if record.state is BreakerState.HALF_OPEN and record.trial_until == float("inf"):
            # A trial the store never saw finish: lapse it now, so the next run may try.
            breakers[key] = replace(record, trial_until=None)
    return logs, breakers


def replay_reaches(history: Sequence[PastRun]) -> dict[str, dict[str, float]]:
    """Per blast radius, each target and when a recorded run last changed it."""
    reaches: dict[str, dict[str, float]] = {}
    for run in sorted(history, key=lambda run: run.admitted_at):
        for key in run.reach_keys:
            reaches.setdefault(key, {})[run.target] = run.admitted_at
    return reaches
