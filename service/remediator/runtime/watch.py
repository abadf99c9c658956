"""The gauges that make the service itself watchable, set from the store's backlog just before
/metrics is generated: the event queue, the messages unsent per channel, the runs in flight
and the kill switch. A few indexed look-ups a scrape; a store that does not answer in time
leaves the previous values (and counts an error)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from remediator.engine.outcome import RunOutcome
from remediator.metrics import WatchMetrics
from remediator.store import Backlog, StoreUnavailable, Watch

log = structlog.get_logger(__name__)

IN_FLIGHT = (
    RunOutcome.WAITING,
    RunOutcome.RUNNING,
    RunOutcome.VERIFYING,
    RunOutcome.AWAITING_APPROVAL,
)
REFRESH_TIMEOUT = 2.0  # seconds: a scrape answers with the previous values past this


class Watcher:
    def __init__(
        self,
        store: Watch,
        metrics: WatchMetrics,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = REFRESH_TIMEOUT,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._timeout = timeout
        self._channels: set[str] = set()  # every channel seen: set to 0 once it has none

    async def refresh(self) -> None:
        now = datetime.fromtimestamp(self._clock(), UTC)
        try:
            backlog = await asyncio.wait_for(self._store.backlog(now), self._timeout)
        except (StoreUnavailable, TimeoutError) as exc:
            self._metrics.refresh_errors.inc()
            log.warning("backlog not read for /metrics", error=str(exc) or "no answer in time")
            return
        self.show(backlog, now)

    def show(self, backlog: Backlog, now: datetime) -> None:
        m = self._metrics
        m.events_pending.set(backlog.events)
        m.oldest_event_age.set(_age(backlog.oldest_event, now))
        unsent = {entry.channel: entry for entry in backlog.channels}
        self._channels |= set(unsent)
        for channel in sorted(self._channels):
            entry = unsent.get(channel)
            m.messages_unsent.labels(channel).set(entry.messages if entry else 0)
            oldest = entry.oldest_due if entry else None
            m.oldest_message_age.labels(channel).set(_age(oldest, now))
        flying = dict(backlog.in_flight)
        for state in IN_FLIGHT:
            m.runs_in_flight.labels(state.value).set(flying.get(state, 0))
        m.paused.set(0 if backlog.paused_at is None else 1)
        m.paused_age.set(_age(backlog.paused_at, now))


def _age(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())
