"""The effectiveness ledger as the Policies page shows it, counted at most once a minute per
replica and period: with 100,000 runs a month, the 36,000 entries of two weeks take about 2 s
to read and count on two cores, and what worked over days does not change by the minute.

Nobody waits for a recount: a count older than a minute is shown as it is (the page says when
it was counted) while a new one is made in the background, one at a time per period. Only the
first request for a period after the service starts waits for its count."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import structlog

from remediator.engine.ledger import (
    ALL_ACTIONS,
    DEFAULT_WINDOW,
    LedgerEntry,
    PolicyStats,
    daily,
    ledger,
)
from remediator.policy.policyset import PoliciesInForce
from remediator.store import RunLedger

log = structlog.get_logger(__name__)

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
        self._counting = asyncio.Lock()  # one count at a time: many people, one read
        self._recounting: dict[int, asyncio.Task[None]] = {}

    async def of(self, days: int) -> Counted:
        """The ledger of the last `days` days (today's included): the last count, recounted
        in the background when it is a minute old; counted now only if there is none."""
        held = self._counted.get(days)
        if held is None:
            async with self._counting:
                held = self._counted.get(days)
                if held is None:
                    held = await self._recount(days)
        at, counted = held
        if not 0 <= self._clock() - at < FRESH_SECONDS and days not in self._recounting:
            task = asyncio.create_task(self._recount_quietly(days), name=f"ledger-{days}d")
            self._recounting[days] = task
            task.add_done_callback(lambda _: self._recounting.pop(days, None))
        return counted

    async def close(self) -> None:
        """Stop the recounts under way (the service is stopping)."""
        for task in list(self._recounting.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _recount_quietly(self, days: int) -> None:
        try:
            async with self._counting:
                await self._recount(days)
        except Exception as exc:  # the count shown stays; the next request tries again
            log.warning("ledger not counted again", days=days, error=repr(exc))

    async def _recount(self, days: int) -> tuple[float, Counted]:
        at = self._clock()
        held = at, await self._count(at, days)
        self._counted[days] = held
        return held

    async def _count(self, at: float, days: int) -> Counted:
        now = datetime.fromtimestamp(at, UTC)
        first = (now - timedelta(days=days - 1)).date()
        policies = self._policies.current
        entries = await self._store.ledger_since(datetime.combine(first, time(), UTC))
        windows = {p.name: p.recurs_within or DEFAULT_WINDOW for p in policies.policies}
        # Counting is pure and takes seconds on a busy month: in a thread, so the service's
        # loop goes on taking webhooks and answering pages meanwhile.
        return await asyncio.to_thread(_counted, entries, windows, now, first, days)


def _counted(
    entries: list[LedgerEntry],
    windows: dict[str, timedelta],
    now: datetime,
    first: date,
    days: int,
) -> Counted:
    totals = {s.policy: s for s in ledger(entries, windows, now) if s.action == ALL_ACTIONS}
    return Counted(now, first, totals, daily(entries, windows, now, first, days))
