"""The dispatcher: claims queued alert events under a lease it renews, and runs each on its own.

Each claimed event runs in a task of its own, so a slow or hung step of one run (a health check
waiting out its timeout, a rollout wait) delays no other alert's decision, run or page. At most
`in_flight` events are held at once, runs waiting for their turn aside (a few times as many of
those); events of one alert are claimed in order (the store does not hand out an event while an
earlier one of its alert is not done), so a resolution is handled after its firing.

Several replicas share the queue: a claim is an UPDATE over `FOR UPDATE SKIP LOCKED` rows
(Postgres), so each event goes to one worker; a worker that dies stops renewing, and once its
claim has passed another worker claims the event and takes the run over. An idle worker is
woken by its own intake, by the store when another replica queued events (Postgres LISTEN), by
one of its runs ending, and otherwise by a slow poll. Verifications are ended and checked by a
loop of their own, every second, so a slow check holds no event back either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import structlog

from remediator.remediation.run import Runner
from remediator.store import AlertEvent, EventQueue, StoreUnavailable

log = structlog.get_logger(__name__)

CLAIM_OVER_LEASE = 1.5  # an event's claim lasts this many target leases
IN_FLIGHT = 32  # events a replica holds at once, by default
DRAIN = 20.0  # seconds a stopping replica waits for its runs before cancelling them
PARKED_PER_SLOT = 4  # runs waiting for their turn a replica holds, per event in flight
HOUSEKEEPING = 1.0  # seconds between looks at the verifications due (an index range each)


class Dispatcher:
    def __init__(
        self,
        store: EventQueue,
        runner: Runner,
        *,
        lease: timedelta = timedelta(seconds=60),
        in_flight: int = IN_FLIGHT,
        idle_poll: float = 5.0,
        drain: float = DRAIN,
        clock: Callable[[], float] = time.time,
        worker: str | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._lease = lease
        self._in_flight = in_flight
        self._idle_poll = idle_poll
        self._drain_for = drain
        self._clock = clock
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._finished: list[int] = []  # handled, their completion not yet written
        self._lost: set[int] = set()  # claims another worker took over while we ran them
        # Claimed again while still running here: handled again once that run ends.
        self._claimed_again: dict[int, AlertEvent] = {}

    def wake(self) -> None:
        """New events were stored, or a run ended: look now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Events this worker holds that count against `in_flight`: running, or handled and
        not yet marked done. A run waiting for its turn (the cap, its target's lock) does not
        count: it holds a claim and a coroutine, no more, and must not keep other alerts from
        being decided and paged."""
        return len(self._running) - len(self._runner.waiting) + len(self._finished)

    def _room(self) -> int:
        """How many more events to claim: up to `in_flight` counted, and at most
        PARKED_PER_SLOT times that held in all, waiting runs included."""
        held = len(self._running) + len(self._finished)
        return min(self._in_flight - self.in_flight, self._in_flight * PARKED_PER_SLOT - held)

    async def run(self, stop: asyncio.Event) -> None:
        async with self._claims_kept(), self._verifying(stop):
            try:
                while not stop.is_set():
                    self._wake.clear()  # before claiming: a wake that comes meanwhile is kept
                    try:
                        asked, claimed = await self._step()
                    except StoreUnavailable as exc:
                        log.warning("dispatcher cannot reach the store; retrying", error=str(exc))
                        asked, claimed = 1, 0
                    if claimed < asked or asked == 0:
                        await self._idle(stop, full=asked == 0)
                await self._drain()
            finally:
                await self._cancel_runs()

    async def run_once(self) -> int:
        """Claim what can be claimed now, run it to its end, then end and check the
        verifications due; how many events ran. (Tests and one-shot tools: an event of an
        alert whose earlier event ran in this round is claimed in the next.)"""
        async with self._claims_kept():
            try:
                _, claimed = await self._step()
                if self._running:
                    await asyncio.wait(list(self._running.values()))
            finally:
                await self._cancel_runs()
        await self._runner.housekeep()
        return claimed

    async def _step(self) -> tuple[int, int]:
        """Write the completions due and claim what there is room for: (asked, claimed)."""
        await self._complete_finished()
        room = self._room()
        if room <= 0:
            return 0, 0
        now = datetime.fromtimestamp(self._clock(), UTC)
        events = await self._store.claim_events(self.worker, now, now + self._lease, room)
        for event in events:
            if event.id in self._running:
                # Still running here, and queued again meanwhile (an approval answered as the
                # run that asked ends its turn), or its claim lapsed while the store was down.
                # Handled again once this run ends: a second run now would repeat its changes,
                # and none would lose the answer.
                self._claimed_again[event.id] = event
                continue
            self._running[event.id] = asyncio.create_task(
                self._handle(event), name=f"event-{event.id}"
            )
        return room, len(events)

    async def _idle(self, stop: asyncio.Event, *, full: bool) -> None:
        """Wait for a wake, a stop, or the poll: with no room, until a run ends or a second
        has passed (a run that began waiting for its turn meanwhile leaves room)."""
        timeout = HOUSEKEEPING
        if not full:
            with contextlib.suppress(StoreUnavailable):
                await self._store.watch_events(self.wake)  # (again, if the listener was lost)
            timeout = await self._idle_wait()
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    async def _idle_wait(self) -> float:
        """How long to wait with nothing to claim: the idle poll, or a tenth of a claim while
        other workers hold queued events. Nothing wakes a replica when a dead worker's claim
        lapses, so this is how soon after that its events are taken over."""
        try:
            pending = await self._store.pending_events(len(self._running) + 1)
        except StoreUnavailable:
            return self._idle_poll
        if any(event.id not in self._running for event in pending):
            return min(self._idle_poll, self._lease.total_seconds() / 10)
        return self._idle_poll

    async def _handle(self, event: AlertEvent) -> None:
        handled = False
        try:
            await self._runner.handle(event)
            handled = True
        except asyncio.CancelledError:
            if event.id not in self._lost:
                raise  # the dispatcher itself is stopped: the claim lapses, the event is retried
            log.error(
                "claim lost mid-run: stopped; the worker that has it goes on", event_id=event.id
            )
        except StoreUnavailable as exc:
            log.warning(
                "event not finished: the store is unavailable", event_id=event.id, error=exc
            )
        except Exception as exc:
            log.exception("event failed unexpectedly; recorded as an error", event_id=event.id)
            handled = await self._errored(event, exc)
        finally:
            self._running.pop(event.id, None)
            lost = event.id in self._lost
            self._lost.discard(event.id)
            again = self._claimed_again.pop(event.id, None)
            self.wake()
        if again is not None and not lost:
            self._running[again.id] = asyncio.create_task(
                self._handle(again), name=f"event-{again.id}"
            )
        elif handled:
            self._finished.append(event.id)

    async def _errored(self, event: AlertEvent, error: Exception) -> bool:
        """Record the error and escalate it; whether that was done. If not (the store is down,
        or recording failed too), the event is not done: it is tried again once its claim
        lapses, here or on another worker."""
        try:
            await self._runner.errored(event, error)
        except Exception as exc:
            log.error("event error not recorded; tried again", event_id=event.id, error=repr(exc))
            return False
        return True

    async def _complete_finished(self) -> None:
        """Mark done, in one write, every event handled since the last time."""
        if not self._finished:
            return
        done, self._finished = self._finished, []
        try:
            await self._store.complete_events(
                done, self.worker, datetime.fromtimestamp(self._clock(), UTC)
            )
        except StoreUnavailable:
            self._finished.extend(done)
            raise

    @contextlib.asynccontextmanager
    async def _claims_kept(self) -> AsyncIterator[None]:
        """Renew every claim held, in one write each third of a claim, while in the block."""
        renewing = asyncio.create_task(self._keep_claims())
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _keep_claims(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            held = [*self._running, *self._finished]
            if not held:
                continue
            until = datetime.fromtimestamp(self._clock(), UTC) + self._lease
            try:
                kept = await self._store.renew_events(held, self.worker, until)
            except StoreUnavailable as exc:
                log.warning("claims not renewed; retrying", error=str(exc))
                continue
            # Only what was asked for: an event claimed while the renewal was on its way is
            # not in `held`, and it is not lost.
            for event_id in set(held) - kept:
                running = self._running.get(event_id)
                if running is None:
                    continue  # ended meanwhile
                # Taken over (this worker stalled past its claim): as if it had died, its run
                # stops here, and the worker that has the event now finishes it.
                self._lost.add(event_id)
                running.cancel()
                log.error("claim on event lost to another worker", event_id=event_id)

    @contextlib.asynccontextmanager
    async def _verifying(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """End overdue verifications, check the due ones and tell the guards what they missed,
        every second, in a task of its own."""
        task = asyncio.create_task(self._housekeeping(stop))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._runner.housekeep()
            except StoreUnavailable as exc:
                log.warning("verifications not checked: the store is unavailable", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(self._idle_poll, HOUSEKEEPING))

    async def _drain(self) -> None:
        """Stopping: runs in flight get `drain` seconds to end before they are cancelled."""
        if self._running:
            log.info("stopping: waiting for runs in flight", runs=len(self._running))
            await asyncio.wait(list(self._running.values()), timeout=self._drain_for)

    async def _cancel_runs(self) -> None:
        """Cancel what still runs (its claim lapses, and it is taken over as after a crash),
        and write the completions due."""
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        with contextlib.suppress(StoreUnavailable):
            await self._complete_finished()
