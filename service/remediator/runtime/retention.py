"""Retention: what is older than `REMEDIATOR_RETENTION_DAYS` is pruned, every hour.

Every replica prunes (the deletes are idempotent, and one transaction each), so no replica is
special. Guard runs are kept at least as long as the guards re-seed from them, so pruning can
never hand back a rate limit's budget or close a breaker; the requests seen only a day.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from remediator.guards.guards import SEED_HORIZON
from remediator.store import Retention, StoreUnavailable

log = structlog.get_logger(__name__)

EVERY = 3600.0
# The requests seen (a Slack request's signature, refused when replayed) are kept this long:
# far past any replay window a request is checked against.
SEEN_KEPT = timedelta(days=1)


async def prune_once(store: Retention, days: int, now: float) -> dict[str, int]:
    moment = datetime.fromtimestamp(now, UTC)
    before = moment - timedelta(days=days)
    counts = await store.prune(before, min(before, moment - SEED_HORIZON), moment - SEEN_KEPT)
    if any(counts.values()):
        log.info("pruned what the retention period no longer keeps", days=days, **counts)
    return counts


async def prune_periodically(
    store: Retention,
    days: int,
    stop: asyncio.Event,
    *,
    every: float = EVERY,
    clock: Callable[[], float] = time.time,
) -> None:
    while not stop.is_set():
        try:
            await prune_once(store, days, clock())
        except StoreUnavailable as exc:
            log.warning("pruning skipped: the store is unavailable", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
