"""Sending the outbox: each channel on its own, so one dead channel delays no other.

Every message is claimed under a lease, sent once, then marked sent. A transient failure
(connection reset, timeout, 5xx) is first retried at once, a few times with tenacity's jittered
backoff; if it persists, or the channel said when (429 Retry-After), the message waits in the
outbox and is retried with exponential backoff for most of a day. A refusal is given up and
logged. A channel failing again and again is skipped for a cooldown (its own breaker), and its
messages wait in the outbox meanwhile rather than holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from remediator.metrics import Metrics
from remediator.notify.base import (
    Channel,
    DigestChannel,
    Message,
    PermanentFailure,
    StepLine,
    TransientFailure,
)
from remediator.store import OutboxEntry, Store

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 30  # 5 s doubling to an hour: about 21 hours of trying
SEND_TIMEOUT = 15.0


@dataclass(frozen=True)
class QuickRetries:
    """Retries within one send, for a blip; longer outages are the outbox's backoff."""

    attempts: int = 3
    first_wait: float = 0.5
    max_wait: float = 4.0


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class OutboxSender:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        lease: timedelta = timedelta(seconds=60),
        breaker_failures: int = 5,
        breaker_cooldown: float = 300.0,
        worker: str | None = None,
        quick: QuickRetries = QuickRetries(),
    ) -> None:
        self._quick = quick
        self._store = store
        self._channels = channels
        self._metrics = metrics
        self._clock = clock
        self._lease = lease
        self._breaker_failures = breaker_failures
        self._breaker_cooldown = breaker_cooldown
        self._breakers = {name: _Breaker() for name in channels}
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # the store may be down: try again at the next poll
                log.exception("outbox round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)

    async def run_once(self) -> int:
        """Send what is due, each channel in parallel; how many messages were tried."""
        now = self._now()
        entries = await self._store.claim_outbox(self.worker, now, now + self._lease, 100)
        by_channel: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_channel.setdefault(entry.channel, []).append(entry)
        await asyncio.gather(
            *(self._send_all(channel, queued) for channel, queued in by_channel.items())
        )
        return len(entries)

    async def _send_all(self, name: str, entries: list[OutboxEntry]) -> None:
        """In order, a trigger before its resolve: after a failure the rest wait their turn.
        A digest level's messages, due together at the digest hour, go as one."""
        channel = self._channels.get(name)
        digest = [e for e in entries if e.message.get("digest")]
        if digest and isinstance(channel, DigestChannel):
            await self._send_digest(name, channel, digest)
            entries = [e for e in entries if not e.message.get("digest")]
        for position, entry in enumerate(entries):
            retry_at = await self._send(name, entry)
            if retry_at is not None:
                for waiting in entries[position + 1 :]:
                    await self._store.outbox_done(
                        waiting.id, retry_at=retry_at, error="behind a message being retried"
                    )
                return

    async def _send(self, name: str, entry: OutboxEntry) -> datetime | None:
        """None when sent or given up; else when it is to be tried again."""
        channel = self._channels.get(name)
        if channel is None:
            await self._give_up(entry, f"channel {name} is not configured")
            return None
        breaker = self._breakers[name]
        if breaker.open_until > self._clock():
            retry = datetime.fromtimestamp(breaker.open_until, UTC)
            await self._store.outbox_done(entry.id, retry_at=retry, error="channel breaker open")
            return retry
        try:
            await self._send_quickly(name, channel, message_of(entry))
        except PermanentFailure as exc:
            await self._give_up(entry, str(exc))
            return None
        except (TransientFailure, TimeoutError) as exc:
            self._trip(name, breaker)
            error, retry_after = str(exc) or "timed out", getattr(exc, "retry_after", None)
            return await self._retry(entry, error, retry_after)
        else:
            breaker.failures = 0
            await self._store.outbox_done(entry.id, sent_at=self._now())
            self._metrics.notifications_sent.labels(name, "sent").inc()
            log.info("notification sent", channel=name, action=entry.action, key=entry.dedup_key)
            return None

    async def _send_digest(
        self, name: str, channel: DigestChannel, entries: list[OutboxEntry]
    ) -> None:
        breaker = self._breakers[name]
        retry: datetime | None = None
        if breaker.open_until > self._clock():
            retry, error = datetime.fromtimestamp(breaker.open_until, UTC), "channel breaker open"
        else:
            try:
                await asyncio.wait_for(
                    channel.send_digest([message_of(e) for e in entries]), SEND_TIMEOUT
                )
            except PermanentFailure as exc:
                for entry in entries:
                    await self._give_up(entry, str(exc))
                return
            except (TransientFailure, TimeoutError) as exc:
                self._trip(name, breaker)
                error, retry_after = str(exc) or "timed out", getattr(exc, "retry_after", None)
                retry = await self._retry(entries[0], error, retry_after)
                if retry is None:  # given up after its attempts: the digest with it
                    for entry in entries[1:]:
                        await self._give_up(entry, error)
                    return
        if retry is not None:
            for entry in entries:
                await self._store.outbox_done(entry.id, retry_at=retry, error=error)
            return
        breaker.failures = 0
        for entry in entries:
            await self._store.outbox_done(entry.id, sent_at=self._now())
        self._metrics.notifications_sent.labels(name, "sent").inc(len(entries))
        log.info("digest sent", channel=name, messages=len(entries))

    async def _send_quickly(self, name: str, channel: Channel, message: Message) -> None:
        """One send, each attempt under its timeout; the last failure is raised as it was."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._quick.attempts),
            wait=wait_exponential_jitter(
                multiplier=self._quick.first_wait,
                max=self._quick.max_wait,
                jitter=self._quick.first_wait,
            ),
            retry=retry_if_exception(_worth_retrying_now),
            reraise=True,
            before_sleep=lambda state: self._metrics.notifications_sent.labels(
                name, "retried"
            ).inc(),
        )
        async for attempt in retrying:
            with attempt:
                await asyncio.wait_for(channel.send(message), SEND_TIMEOUT)

    def _trip(self, name: str, breaker: _Breaker) -> None:
        breaker.failures += 1
        if breaker.failures >= self._breaker_failures:
            breaker.open_until = self._clock() + self._breaker_cooldown
            breaker.failures = 0
            log.warning("channel failing; pausing it", channel=name, for_s=self._breaker_cooldown)

    async def _retry(
        self, entry: OutboxEntry, error: str, retry_after: float | None
    ) -> datetime | None:
        if entry.attempts >= MAX_ATTEMPTS:
            await self._give_up(entry, f"gave up after {entry.attempts} attempts: {error}")
            return None
        backoff = retry_after if retry_after is not None else min(5.0 * 2**entry.attempts, 3600.0)
        retry_at = self._now() + timedelta(seconds=backoff)
        await self._store.outbox_done(entry.id, retry_at=retry_at, error=error)
        self._metrics.notifications_sent.labels(entry.channel, "retried").inc()
        log.warning("notification will be retried", channel=entry.channel, error=error)
        return retry_at

    async def _give_up(self, entry: OutboxEntry, error: str) -> None:
        await self._store.outbox_done(entry.id, failed_at=self._now(), error=error)
        self._metrics.notifications_sent.labels(entry.channel, "failed").inc()
        log.error("notification not sent", channel=entry.channel, error=error)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def message_of(entry: OutboxEntry) -> Message:
    m = entry.message
    return Message(
        id=entry.id,
        action="resolve" if entry.action == "resolve" else "trigger",
        dedup_key=entry.dedup_key,
        level=m["level"],
        summary=m["summary"],
        alertname=m["alertname"],
        status=m["status"],
        labels=m["labels"],
        annotations=m["annotations"],
        policy=m["policy"],
        target=m["target"],
        outcome=m["outcome"],
        reason=m["reason"],
        steps=tuple(StepLine(s["action"], s["outcome"], s["message"]) for s in m["steps"]),
        links=m["links"],
        diagnostics=m.get("diagnostics", {}),
    )


def _worth_retrying_now(exc: BaseException) -> bool:
    """A blip is; a channel that said when to come back (429) is asked then, not now."""
    if isinstance(exc, TimeoutError):
        return True
    return isinstance(exc, TransientFailure) and exc.retry_after is None
