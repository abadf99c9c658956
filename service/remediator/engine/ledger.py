"""The ledger of what works: per policy and per action, how its runs ended and whether the fix
lasted. Pure: the store reads the entries (`RunLedger.ledger_since`), this counts them.

A run is **effective** when its verification passed (outcome succeeded) and the same policy's
alert did not fire again on the same target within the window after the fix was verified (the
policy's `recurs_within`, else `DEFAULT_WINDOW`). A fix whose window has not yet passed is
verified but neither effective nor recurred: not known yet.

Times from firing to resolved are split by whether the alert's episode paged a person
(escalated) or not (remediated), as p50 and p90 by the nearest rank.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from remediator.engine.outcome import RunOutcome

DEFAULT_WINDOW = timedelta(hours=1)
FAILED = frozenset({RunOutcome.FAILED, RunOutcome.ERROR, RunOutcome.INTERRUPTED})
ALL_ACTIONS = "*"  # the `action` of a policy's own row: every run of it


@dataclass(frozen=True)
class LedgerEntry:
    """One firing remediation of a policy, with its alert episode's end and whether it paged."""

    id: str
    policy: str
    target: str | None
    fingerprint: str
    starts_at: datetime  # the alert episode's
    outcome: RunOutcome
    run_id: str | None  # None: decided without a run (blocked, refused, ...)
    actions: tuple[str, ...]  # the plan's steps
    started_at: datetime
    finished_at: datetime | None
    resolved_at: datetime | None  # the episode's end, once it resolved
    paged: bool  # a page (a trigger to a person's channel) was queued for it


@dataclass(frozen=True)
class Durations:
    """Firing to resolved, in seconds: how many, and the p50 and p90 (nearest rank)."""

    count: int
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Durations:
        ordered = sorted(seconds)
        return cls(len(ordered), _rank(ordered, 0.5), _rank(ordered, 0.9))


@dataclass(frozen=True)
class PolicyStats:
    policy: str
    action: str  # ALL_ACTIONS for the policy's own row
    runs: int
    verified: int  # outcome succeeded
    effective: int  # verified, and did not recur within the window (which has passed)
    recurred: int  # verified, and fired again on the target within the window
    failed: int  # failed, error or interrupted
    blocked: int
    alerts: int  # alert episodes
    unpaged: int  # episodes resolved without a page
    remediated: Durations  # firing to resolved, episodes not paged
    escalated: Durations  # firing to resolved, episodes paged

    @property
    def known(self) -> int:
        """Runs whose outcome is known: effective, recurred or failed (what demotion counts)."""
        return self.effective + self.recurred + self.failed

    @property
    def effective_share(self) -> float | None:
        """Effective among the runs whose outcome is known (None: none is known yet)."""
        return self.effective / self.known if self.known else None

    @property
    def pages_avoided(self) -> float | None:
        """Share of the alerts resolved without a page (None: no alerts)."""
        return self.unpaged / self.alerts if self.alerts else None


def ledger(
    entries: Iterable[LedgerEntry],
    windows: Mapping[str, timedelta],
    now: datetime,
) -> list[PolicyStats]:
    """Each policy's row, then one per action its plans have, sorted by policy then action."""
    by_policy: dict[str, list[LedgerEntry]] = {}
    for entry in entries:
        by_policy.setdefault(entry.policy, []).append(entry)
    stats = []
    for policy in sorted(by_policy):
        own = sorted(by_policy[policy], key=lambda e: (e.started_at, e.id))
        lasted = _lasted(own, windows.get(policy, DEFAULT_WINDOW), now)
        stats.append(_stats(policy, ALL_ACTIONS, own, lasted))
        for action in sorted({action for entry in own for action in entry.actions}):
            subset = [entry for entry in own if action in entry.actions]
            stats.append(_stats(policy, action, subset, lasted))
    return stats


def daily(
    entries: Iterable[LedgerEntry],
    windows: Mapping[str, timedelta],
    now: datetime,
    first: date,
    days: int,
) -> dict[str, list[PolicyStats]]:
    """Each policy's own row (every action) for each of `days` days from `first`, by the day
    (UTC) its runs started: whether a fix lasted is judged over all the entries, so a
    recurrence the next day still counts against the fix."""
    by_policy: dict[str, list[LedgerEntry]] = {}
    for entry in entries:
        by_policy.setdefault(entry.policy, []).append(entry)
    found = {}
    for policy, own in by_policy.items():
        own.sort(key=lambda e: (e.started_at, e.id))
        lasted = _lasted(own, windows.get(policy, DEFAULT_WINDOW), now)
        buckets: list[list[LedgerEntry]] = [[] for _ in range(days)]
        for entry in own:
            index = (entry.started_at.astimezone(UTC).date() - first).days
            if 0 <= index < days:
                buckets[index].append(entry)
        found[policy] = [_stats(policy, ALL_ACTIONS, bucket, lasted) for bucket in buckets]
    return found


def _lasted(
    entries: Sequence[LedgerEntry], window: timedelta, now: datetime
) -> Callable[[LedgerEntry], bool | None]:
    """Whether a verified fix lasted its window: True, False (fired again on its target within
    it), or None (not yet known: the window has not passed)."""

    by_target: dict[str | None, list[LedgerEntry]] = {}
    for entry in entries:  # in the order they started
        by_target.setdefault(entry.target, []).append(entry)
    starts = {target: [e.started_at for e in own] for target, own in by_target.items()}

    def lasted(fix: LedgerEntry) -> bool | None:
        until = (fix.finished_at or fix.started_at) + window
        own = by_target[fix.target]
        for later in own[bisect.bisect_right(starts[fix.target], fix.started_at) :]:
            if later.started_at > until:
                break
            if (later.fingerprint, later.starts_at) != (fix.fingerprint, fix.starts_at):
                return False
        return True if now >= until else None

    return lasted


def _stats(
    policy: str,
    action: str,
    entries: Sequence[LedgerEntry],
    lasted: Callable[[LedgerEntry], bool | None],
) -> PolicyStats:
    verified = [e for e in entries if e.outcome is RunOutcome.SUCCEEDED]
    verdicts = [lasted(fix) for fix in verified]
    episodes: dict[tuple[str, datetime], list[LedgerEntry]] = {}
    for entry in entries:
        episodes.setdefault((entry.fingerprint, entry.starts_at), []).append(entry)
    remediated: list[float] = []
    escalated: list[float] = []
    unpaged = 0
    for episode in episodes.values():
        paged = any(entry.paged for entry in episode)
        resolved_at = episode[0].resolved_at
        if resolved_at is None:
            continue
        unpaged += not paged
        seconds = (resolved_at - episode[0].starts_at).total_seconds()
        (escalated if paged else remediated).append(seconds)
    return PolicyStats(
        policy=policy,
        action=action,
        runs=sum(1 for e in entries if e.run_id is not None),
        verified=len(verified),
        effective=sum(1 for verdict in verdicts if verdict is True),
        recurred=sum(1 for verdict in verdicts if verdict is False),
        failed=sum(1 for e in entries if e.outcome in FAILED),
        blocked=sum(1 for e in entries if e.outcome is RunOutcome.BLOCKED),
        alerts=len(episodes),
        unpaged=unpaged,
        remediated=Durations.of(remediated),
        escalated=Durations.of(escalated),
    )


def _rank(ordered: Sequence[float], quantile: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]
