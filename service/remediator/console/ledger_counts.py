"""The effectiveness ledger as the Policies page shows it, counted at most once a minute per
replica and period: with 100,000 runs a year, the 3,500 entries of two weeks take about
150 ms to read and count on two cores, and what worked over days does not change by the
minute. One count at a time: many people opening the page at once cost one read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from remediator.engine.ledger import ALL_ACTIONS, DEFAULT_WINDOW, PolicyStats, daily, ledger
from remediator.policy.policyset import PoliciesInForce
from remediator.store import RunLedger

FRESH_SECONDS = 60.0


@dataclass(frozen=True)
class Counted:
    """The ledger over a period: each policy's row, and its rows a day from `first`."""

    at: datetime  # when it was counted
    first: date
    totals: dict[str, PolicyStats]
    by_day: dict[str, list[PolicyStats]]


class LedgerCounts:
    def __init__(
        self, store: RunLedger, policies: PoliciesInForce, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._policies = policies
        self._clock = clock
        self._counted: dict[int, tuple[float, Counted]] = {}
        self._counting = asyncio.Lock()

    async def of(self, days: int) -> Counted:
        """The ledger of the last `days` days (today's included), at most a minute old."""
        counted = self._fresh(days)
        if counted is not None:
            return counted
        async with self._counting:
            counted = self._fresh(days)
            if counted is None:
                at = self._clock()
                counted = await self._count(at, days)
                self._counted[days] = (at, counted)
            return counted

    def _fresh(self, days: int) -> Counted | None:
        at, counted = self._counted.get(days, (None, None))
        if at is None or not 0 <= self._clock() - at < FRESH_SECONDS:
            return None
        return counted

    async def _count(self, at: float, days: int) -> Counted:
        now = datetime.fromtimestamp(at, UTC)
        first = (now - timedelta(days=days - 1)).date()
        policies = self._policies.current
        entries = await self._store.ledger_since(datetime.combine(first, time(), UTC))
        windows = {p.name: p.recurs_within or DEFAULT_WINDOW for p in policies.policies}
        totals = {s.policy: s for s in ledger(entries, windows, now) if s.action == ALL_ACTIONS}
        return Counted(now, first, totals, daily(entries, windows, now, first, days))
