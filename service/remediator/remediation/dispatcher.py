"""The dispatcher: claims queued alert events under a lease it renews, and runs each.

Several replicas share the queue: a claim is an UPDATE over `FOR UPDATE SKIP LOCKED` rows
(Postgres), so each event goes to one worker; a worker that dies stops renewing, and once its
lease has passed another worker claims the event and takes the run over. An idle worker is
woken by its own intake, by the store when another replica queued events (Postgres LISTEN),
and otherwise by a slow poll, which also ends overdue verifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from remediator.remediation.runner import Runner
from remediator.store import AlertEvent, Remediation, Store, StoreUnavailable

log = structlog.get_logger(__name__)

CLAIM_OVER_LEASE = 1.5  # an event's claim lasts this many target leases


class Dispatcher:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        *,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 10,
        idle_poll: float = 5.0,
        clock: Callable[[], float] = time.time,
        worker: str | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._lease = lease
        self._batch = batch
        self._idle_poll = idle_poll
        self._clock = clock
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New events were stored: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()  # before claiming: a wake that comes meanwhile is not lost
            try:
                handled = await self.run_once()
            except StoreUnavailable as exc:
                log.warning("dispatcher cannot reach the store; retrying", error=str(exc))
                handled = 0
            if handled == 0:
                await self._store.watch_events(self.wake)  # (again, if the listener was lost)
                idle = await self._idle_wait()
                waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
                await asyncio.wait(waits, timeout=idle, return_when="FIRST_COMPLETED")
                for task in waits:
                    task.cancel()
                await asyncio.gather(*waits, return_exceptions=True)

    async def _idle_wait(self) -> float:
        """How long to wait with nothing to claim: the idle poll, or a tenth of a claim while
        other workers hold queued events. Nothing wakes a replica when a dead worker's claim
        lapses, so this is how soon after that its events are taken over."""
        try:
            held = await self._store.pending_events(1)
        except StoreUnavailable:
            return self._idle_poll
        if held:
            return min(self._idle_poll, self._lease.total_seconds() / 10)
        return self._idle_poll

    async def run_once(self) -> int:
        """Claim and run one batch, end overdue verifications, and tell the guards what they
        missed; how many events ran."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        events = await self._store.claim_events(self.worker, now, now + self._lease, self._batch)
        if events:
            # Every claim of the batch is renewed while any waits its turn: an event claimed
            # and left to lapse would be taken by another replica and run twice.
            batch = _Batch({event.id for event in events})
            renewing = asyncio.create_task(self._keep_claims(batch))
            try:
                for event in events:
                    if event.id in batch.held:
                        await self._handle(event, batch)
            finally:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
        await self._runner.check_verifications()
        await self._runner.expire_verifications()
        await self._runner.settle_outcomes()
        return len(events)

    async def _handle(self, event: AlertEvent, batch: _Batch) -> None:
        running = asyncio.create_task(self._runner.handle(event))
        batch.running[event.id] = running
        try:
            await running
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if this is not None and this.cancelling():  # the dispatcher itself is stopped
                running.cancel()
                raise
            log.error("claim lost mid-run: stopped; the worker that has it goes on", event=event.id)
            return
        except StoreUnavailable:
            raise  # the claim lapses and the event is retried
        except Exception:
            log.exception("event failed; it will not be retried", event_id=event.id)
        finally:
            batch.running.pop(event.id, None)
            batch.held.discard(event.id)
        await self._store.complete_event(
            event.id, self.worker, datetime.fromtimestamp(self._clock(), UTC)
        )

    async def _keep_claims(self, batch: _Batch) -> None:
        while batch.held:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            until = datetime.fromtimestamp(self._clock(), UTC) + self._lease
            for event_id in list(batch.held):
                if await self._store.renew_event(event_id, self.worker, until):
                    continue
                # Taken over (this worker stalled past its lease): as if it had died, its
                # run stops here, and the worker that has the event now finishes it.
                batch.held.discard(event_id)
                running = batch.running.get(event_id)
                if running is not None:
                    running.cancel()
                log.error("claim on event lost to another worker", event_id=event_id)


@dataclass
class _Batch:
    held: set[int]  # events still claimed by this worker and not done
    running: dict[int, asyncio.Task[Remediation | None]] = field(default_factory=dict)
