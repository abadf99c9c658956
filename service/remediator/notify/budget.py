"""Channel budgets: at most N messages a channel sends in any window, folding the rest.

A channel with a `budget` (30/1m) sends a message only when it takes one of its N slots, each
free again a window after its last send: counted in the store, so the budget holds across
replicas, and no two take the same slot. Past it, a message is folded: marked done, unsent,
and one summary per channel is queued, due when the first slot frees. When the summary goes,
it takes in every message folded on its channel since the last summary (each is taken in by
exactly one) and says how many, per alertname: "ApplicationDown and 8,650 more messages
folded past the Slack budget". The full list is the operator API's (/api/v1/folds).

No P1 is dropped without a trace. A P1 page past the budget still goes at once when it is the
first page of its alertname past the budget in the window, using a reserve of N more slots:
a real incident is not queued behind a flood of another alertname. The flood's other pages
fold, and a summary holding a P1 is itself a P1 page (to the channel's fallback too, should
the channel not take it). Every folded message is counted (`remediator_notifications_folded`)
and listed by the summary that took it in.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import structlog

from remediator.metrics import NotifyMetrics
from remediator.notify.escalator import FALLBACK
from remediator.policy.schema import Budget, EscalationMatrix
from remediator.store import BudgetLedger, FoldedMessage, Outbox, OutboxEntry

log = structlog.get_logger(__name__)

FOLD = "fold"  # on a summary's message: it folds its channel's messages past the budget
TITLES = {"pagerduty": "PagerDuty", "slack": "Slack", "email": "Email"}
_NAMES_SHOWN = 10  # alertnames counted in a summary's text; the API lists them all


class Verdict(StrEnum):
    SEND = "send"  # within the budget
    OVER = "over"  # a P1 page past the budget, the first of its alertname: sent all the same
    FOLD = "fold"  # folded into the channel's summary
    WAIT = "wait"  # a summary, waiting for a slot


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    until: datetime | None = None  # FOLD and WAIT: when the channel's first slot frees


class FoldStore(Outbox, BudgetLedger, Protocol):
    """The outbox the summaries are queued in, and the budgets' ledger."""


class ChannelBudgets:
    def __init__(
        self,
        store: FoldStore,
        matrix: Callable[[], EscalationMatrix],
        metrics: NotifyMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._matrix = matrix
        self._metrics = metrics
        self._clock = clock
        # Per channel (and its P1 reserve): no slot frees before then, known from the store.
        self._full_until: dict[tuple[str, bool], datetime] = {}
        self._summary: dict[str, str] = {}  # per channel, the summary this process queued last
        # Per channel and alertname: when its first P1 page past the budget was (known from
        # the store, so that a flood's other pages fold without asking again).
        self._paged_past_budget: dict[tuple[str, str], datetime] = {}

    async def admit(self, entry: OutboxEntry) -> Admission:
        """Whether the message may be sent now, or is folded (or, a summary, waits)."""
        budget = self._matrix().budget_of(entry.channel)
        if budget is None or entry.message.get("digest"):
            return Admission(Verdict.SEND)
        channel, now = entry.channel, self._now()
        full_until = await self._take(channel, budget, now, reserve=False)
        if full_until is None:
            return Admission(Verdict.SEND)
        if FOLD in entry.message:
            return Admission(Verdict.WAIT, full_until)
        if await self._p1_over_budget(entry, budget, now):
            log.warning("P1 page sent past the channel's budget", channel=channel)
            return Admission(Verdict.OVER)
        return Admission(Verdict.FOLD, full_until)

    async def _take(
        self, channel: str, budget: Budget, now: datetime, *, reserve: bool
    ) -> datetime | None:
        """None when a slot was taken; else until when the channel's slots are all used."""
        key = (channel, reserve)
        known = self._full_until.get(key)
        if known is not None and now < known:
            return known
        slots = range(budget.count, 2 * budget.count) if reserve else range(budget.count)
        until = await self._store.take_slot(channel, slots, now, budget.per)
        if until is not None:
            self._full_until[key] = until
        return until

    async def _p1_over_budget(self, entry: OutboxEntry, budget: Budget, now: datetime) -> bool:
        """A P1 page, the first of its alertname past the budget in the window, and a slot
        of the P1 reserve free for it."""
        if entry.action != "trigger" or entry.message.get("level") != "P1":
            return False
        name = (entry.channel, str(entry.message.get("alertname", "")))
        known = self._paged_past_budget.get(name)
        if known is not None and now < known + budget.per:
            return False
        first = await self._store.first_past_budget(*name, now, budget.per)
        if first is not None:
            self._paged_past_budget[name] = first
            return False
        return await self._take(entry.channel, budget, now, reserve=True) is None

    async def fold_while_full(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """Fold in one write the messages of a channel known to be past its budget (no slot
        frees before then) that could not go anyway; the others, to be admitted one by one
        (a summary, a P1 page that may go past the budget)."""
        if not entries:
            return entries
        channel, now = entries[0].channel, self._now()
        budget = self._matrix().budget_of(channel)
        until = self._full_until.get((channel, False))
        if budget is None or until is None or now >= until:
            return entries
        foldable = [entry for entry in entries if self._foldable(entry, budget, now)]
        if foldable:
            await self.fold(foldable, until)
        folded = {entry.id for entry in foldable}
        return [entry for entry in entries if entry.id not in folded]

    def _foldable(self, entry: OutboxEntry, budget: Budget, now: datetime) -> bool:
        if FOLD in entry.message or entry.message.get("digest"):
            return False
        if entry.action != "trigger" or entry.message.get("level") != "P1":
            return True
        known = self._paged_past_budget.get((entry.channel, str(entry.message.get("alertname"))))
        return known is not None and now < known + budget.per

    async def fold(self, entries: list[OutboxEntry], until: datetime) -> None:
        """Fold the messages (of one channel) into its summary, queued (first) to go at
        `until`."""
        channel, now = entries[0].channel, self._now()
        summary = _summary_entry(channel, until, now)
        if self._summary.get(channel) != summary.id:
            await self._store.enqueue([summary])
            self._summary[channel] = summary.id
        title = TITLES.get(channel, channel)
        note = f"folded past the {title} budget ({self._matrix().budget_of(channel)})"
        folded = await self._store.fold([entry.id for entry in entries], now, note)
        for entry in entries:
            if entry.id in folded:
                self._metrics.notifications_folded.labels(channel, entry.message["level"]).inc()
        log.info("notifications folded", channel=channel, folded=len(folded), summary=summary.id)

    async def summary(self, entry: OutboxEntry) -> OutboxEntry | None:
        """The summary as it is sent: every message folded on its channel since the last one,
        taken in now; None when an earlier summary took them all."""
        folded = await self._store.adopt_folded(entry.channel, entry.id, f"folded into {entry.id}")
        if not folded:
            return None
        matrix = self._matrix()
        text = summary_message(entry, folded, matrix.budget_of(entry.channel))
        if fallback := matrix.fallback_of(entry.channel):
            text[FALLBACK] = fallback
        log.warning("fold summary", channel=entry.channel, folded=len(folded), summary=entry.id)
        return replace(entry, message=text)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _summary_entry(channel: str, due: datetime, now: datetime) -> OutboxEntry:
    """The channel's summary due at `due`: named after it, so every replica folding before
    then queues the same one."""
    stamp = due.strftime("%Y%m%dT%H%M%S.%fZ")
    key, message = f"remediator/fold/{channel}/{stamp}", {FOLD: True}
    return OutboxEntry(f"fold-{channel}-{stamp}", channel, "trigger", key, None, message, now, due)


def summary_message(
    entry: OutboxEntry, folded: Iterable[FoldedMessage], budget: Budget | None
) -> dict[str, Any]:
    """What a summary says: how many messages were folded, per alertname, at the highest
    level among them (a fold holding a P1 is a P1 page)."""
    folded = list(folded)
    counts = Counter(message.alertname for message in folded)
    top, _ = counts.most_common(1)[0]
    title = TITLES.get(entry.channel, entry.channel)
    more = f" and {len(folded) - 1:,} more" if len(folded) > 1 else ""
    named = ", ".join(f"{name} {count:,}" for name, count in counts.most_common(_NAMES_SHOWN))
    if len(counts) > _NAMES_SHOWN:
        named += f", {len(counts) - _NAMES_SHOWN:,} other alertnames"
    summary = f"{top}{more} folded past the {title} budget ({budget}): {named}"
    reason = f"every folded message is listed at /api/v1/folds/{entry.id}"
    return {
        "action": "trigger",
        "dedup_key": entry.dedup_key,
        "level": min(message.level for message in folded),
        "summary": summary[:1024],
        "alertname": top,
        "status": "firing",
        "labels": {"alertname": top},
        "annotations": {},
        "policy": None,
        "target": None,
        "outcome": "folded",
        "reason": reason,
        "steps": [],
        "links": {},
        "diagnostics": {},
        "folded": len(folded),
        "folded_by_alertname": dict(counts.most_common()),
    }
