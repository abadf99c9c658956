"""Sending the outbox: each channel on its own, so one dead channel delays no other.

Every message is claimed under a lease, sent once, then marked sent. A transient failure
(connection reset, timeout, 5xx) is first retried at once, a few times with tenacity's jittered
backoff; if it persists, or the channel said when (429 Retry-After), the message waits in the
outbox and is retried with exponential backoff for most of a day. A refusal is given up and
logged. A channel failing again and again is skipped for a cooldown (its own breaker), and its
messages wait in the outbox meanwhile rather than holding up the others.

Each channel has a lane: a task sending its messages in order, so a channel that is slow or
does not answer holds up only its own messages, never another channel's. A message of an
incident never overtakes an earlier one of the same incident on the same channel (a resolve
never reaches PagerDuty before its trigger). A page a channel did not take (its send failed,
was refused, or its breaker is open) goes to the channel's fallback as well (the matrix's
`fallback`), saying so: who reads Slack must know that PagerDuty woke nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from remediator.metrics import NotifyMetrics
from remediator.notify.base import (
    ApprovalAsk,
    Channel,
    DigestChannel,
    Message,
    PermanentFailure,
    StepLine,
    TransientFailure,
)
from remediator.notify.budget import FOLD, ChannelBudgets, Verdict
from remediator.notify.escalator import FALLBACK, FALLBACK_FOR
from remediator.notify.would_send import WOULD_SEND, WouldSend
from remediator.store import Outbox, OutboxEntry

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 30  # 5 s doubling to an hour: about 21 hours of trying
# Tried or not (a message waits untried behind an earlier one its channel keeps failing), one
# still unsent a day after it was queued is given up: a dead channel must not hold a queue
# that each message would then take its own 21 hours through.
GIVE_UP_AFTER = timedelta(days=1)
SEND_TIMEOUT = 15.0
BATCH = 100  # messages claimed at once, and held at most per channel
STOP_GRACE = 5.0  # at shutdown, sends still going after this are abandoned (sent again later)
TITLES = {"pagerduty": "PagerDuty", "slack": "Slack", "email": "Email"}
_SOON = timedelta(seconds=1)  # a message waiting for an earlier one is not claimed in a loop


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


@dataclass(frozen=True)
class _Claimed:
    entry: OutboxEntry
    at: float  # when this sender claimed it


@dataclass(frozen=True)
class _Undelivered:
    """A message not sent this time: when it is tried again (None: given up), and why;
    `refused` when the channel said no to this message (a permanent 4xx: malformed, too big)."""

    retry_at: datetime | None
    error: str
    refused: bool = False


class OutboxSender:
    def __init__(
        self,
        store: Outbox,
        channels: Mapping[str, Channel],
        metrics: NotifyMetrics,
        *,
        clock: Callable[[], float] = time.time,
        lease: timedelta = timedelta(seconds=60),
        breaker_failures: int = 5,
        breaker_cooldown: float = 300.0,
        worker: str | None = None,
        quick: QuickRetries = QuickRetries(),
        budgets: ChannelBudgets | None = None,
    ) -> None:
        self._quick = quick
        self._budgets = budgets
        self._store = store
        self._channels = channels
        self._metrics = metrics
        self._clock = clock
        self._lease = lease
        self._breaker_failures = breaker_failures
        self._breaker_cooldown = breaker_cooldown
        self._breakers = {name: _Breaker() for name in channels}
        self._queued: dict[str, list[_Claimed]] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        try:
            while not stop.is_set():
                claimed = 0
                try:
                    claimed = await self._dispatch()
                except Exception:  # the store may be down: try again at the next poll
                    log.exception("outbox round failed")
                await self._between_rounds(stop, poll, more_due=claimed >= BATCH)
        finally:
            await self._stop_lanes()

    async def _between_rounds(self, stop: asyncio.Event, poll: float, *, more_due: bool) -> None:
        """Until the next poll; but with more due than one claim took (a flood being sent or
        folded), only until the lanes have gone through what they were given (at most a
        poll), so that a page queued behind the flood is claimed as soon as they can take it."""
        if more_due:
            lanes = [lane for lane in self._lanes.values() if not lane.done()]
            if lanes:
                await asyncio.wait(lanes, timeout=poll)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)

    async def run_once(self) -> int:
        """Send what is due, each channel in parallel, and wait until it is sent (or put back);
        how many messages were tried."""
        claimed = await self._dispatch()
        await asyncio.gather(*self._lanes.values())
        return claimed

    async def _dispatch(self) -> int:
        """Claim what is due and hand each channel's messages to its lane, after the ones that
        lane is still busy with (a slow channel's), so that no channel waits for another."""
        now = self._now()
        entries = await self._store.claim_outbox(self.worker, now, now + self._lease, BATCH)
        for entry in entries:
            queued = self._queued.setdefault(entry.channel, [])
            if len(queued) < BATCH:
                queued.append(_Claimed(entry, self._clock()))
            else:  # that lane is far behind: the message waits in the outbox, not in memory
                await self._store.outbox_put_back(entry.id, retry_at=now + self._lease / 2)
        for name, queued in self._queued.items():
            lane = self._lanes.get(name)
            if queued and (lane is None or lane.done()):
                self._lanes[name] = asyncio.create_task(self._lane(name))
        return len(entries)

    async def _lane(self, name: str) -> None:
        try:
            while entries := await self._take(name):
                await self._send_all(name, entries)
        except Exception:  # the store may be down: what is left is claimed again later
            log.exception("outbox lane failed", channel=name)

    async def _take(self, name: str) -> list[OutboxEntry]:
        """What the lane has been given since it last looked. A message that waited there for
        half its lease (behind a slow channel's sends) is put back unsent, so that its lease
        cannot pass while it is being sent (another replica may claim it then)."""
        queued, self._queued[name] = self._queued.get(name, []), []
        stale_before = self._clock() - self._lease.total_seconds() / 2
        fresh = [claimed.entry for claimed in queued if claimed.at >= stale_before]
        for claimed in queued:
            if claimed.at < stale_before:
                with contextlib.suppress(Exception):
                    await self._store.outbox_put_back(claimed.entry.id)
        return fresh

    async def _stop_lanes(self) -> None:
        """Let sends in progress finish for a moment, then abandon them: an abandoned message
        stays claimed until its lease passes, and is sent then (at least once)."""
        lanes = [lane for lane in self._lanes.values() if not lane.done()]
        if lanes:
            _, pending = await asyncio.wait(lanes, timeout=STOP_GRACE)
            for lane in pending:
                lane.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for queued in self._queued.values():
            for claimed in queued:
                with contextlib.suppress(Exception):
                    await self._store.outbox_put_back(claimed.entry.id)  # for another replica
        self._queued.clear()

    async def _send_all(self, name: str, entries: list[OutboxEntry]) -> None:
        """In order, a trigger before its resolve: after a failure the rest wait their turn.
        A digest level's messages, due together at the digest hour, go as one."""
        channel = self._channels.get(name)
        digest = [e for e in entries if e.message.get("digest")]
        if digest and isinstance(channel, DigestChannel):
            await self._send_digest(name, channel, digest)
            entries = [e for e in entries if not e.message.get("digest")]
        if self._budgets is not None:  # a flood past the budget, folded in one write
            entries = await self._budgets.fold_while_full(entries)
        for position, entry in enumerate(entries):
            if await self._given_up_as_stale(entry):
                continue
            within = await self._within_budget(entry)  # a flood folds before any other look-up
            if within is None or await self._behind_its_incident(within):
                continue
            entry = within
            undelivered = await self._send(name, entry)
            if undelivered is None:
                continue
            await self._fall_back(entry, undelivered)
            if undelivered.retry_at is not None:
                for waiting in entries[position + 1 :]:
                    if await self._given_up_as_stale(waiting):
                        continue
                    await self._store.outbox_put_back(
                        waiting.id,
                        retry_at=undelivered.retry_at,
                        error="behind a message being retried",
                    )
                    await self._fall_back(waiting, undelivered)
                return

    async def _within_budget(self, entry: OutboxEntry) -> OutboxEntry | None:
        """The message to send now, within its channel's budget (a fold's summary with what
        it folds); None when it was folded, or waits for the budget, or had nothing to say."""
        if self._budgets is None:
            return entry
        admission = await self._budgets.admit(entry)
        if admission.verdict is Verdict.FOLD:
            assert admission.until is not None
            await self._budgets.fold([entry], admission.until)
            return None
        if admission.verdict is Verdict.WAIT:
            error = "a summary waiting for its channel's budget"
            await self._store.outbox_put_back(entry.id, retry_at=admission.until, error=error)
            return None
        if FOLD not in entry.message:
            return entry
        summary = await self._budgets.summary(entry)
        if summary is None:
            error = "nothing to summarise: an earlier summary took in every folded message"
            await self._store.outbox_done(entry.id, failed_at=self._now(), error=error)
        return summary

    async def _given_up_as_stale(self, entry: OutboxEntry) -> bool:
        if self._now() - entry.created_at < GIVE_UP_AFTER:
            return False
        why = "still unsent a day after it was queued"
        await self._give_up(entry, f"{why}: {entry.last_error}" if entry.last_error else why)
        return True

    async def _behind_its_incident(self, entry: OutboxEntry) -> bool:
        """An earlier message of the same incident to the same channel, still unsent, goes
        first: this one waits until that one is due (and is put back if so)."""
        earlier = [
            other
            for other in await self._store.outbox_for(entry.dedup_key)
            if other.channel == entry.channel
            and (other.created_at, other.id) < (entry.created_at, entry.id)
            and other.sent_at is None
            and other.failed_at is None
        ]
        if not earlier:
            return False
        retry_at = max(min(other.next_attempt_at for other in earlier), self._now() + _SOON)
        error = "behind an earlier message of its incident"
        await self._store.outbox_put_back(entry.id, retry_at=retry_at, error=error)
        return True

    async def _send(self, name: str, entry: OutboxEntry) -> _Undelivered | None:
        """None when sent; else why not, and when it is to be tried again (None: given up)."""
        channel = self._channels.get(name)
        if channel is None:
            return await self._give_up(entry, f"channel {name} is not configured")
        breaker = self._breakers[name]
        if breaker.open_until > self._clock():
            retry = datetime.fromtimestamp(breaker.open_until, UTC)
            await self._store.outbox_put_back(
                entry.id, retry_at=retry, error="channel breaker open"
            )
            return _Undelivered(retry, "its breaker is open after repeated failures")
        try:
            await self._send_quickly(name, channel, message_of(entry))
        except PermanentFailure as exc:
            return replace(await self._give_up(entry, str(exc)), refused=True)
        except (TransientFailure, TimeoutError) as exc:
            self._trip(name, breaker)
            error, retry_after = str(exc) or "timed out", getattr(exc, "retry_after", None)
            return await self._retry(entry, error, retry_after)
        except Exception as exc:  # a message the channel cannot compose: no retry will help
            log.exception("notification could not be sent", channel=name, key=entry.dedup_key)
            return await self._give_up(entry, f"{type(exc).__name__}: {exc}")
        breaker.failures = 0
        await self._done(name, channel, [entry])
        log.info("notification sent", channel=name, action=entry.action, key=entry.dedup_key)
        return None

    async def _fall_back(self, entry: OutboxEntry, undelivered: _Undelivered) -> None:
        """The page to the channel's fallback too, saying this channel did not take it; once
        per page (the copies are named after it), and not once the incident was resolved.
        A page refused with no fallback named is logged as reaching nobody there."""
        fallback = entry.message.get(FALLBACK) or []
        if entry.action != "trigger":
            return
        if not fallback:
            if undelivered.refused:
                log.error(
                    "page refused and the matrix names no fallback: it reached nobody there",
                    channel=entry.channel,
                    key=entry.dedup_key,
                    error=undelivered.error,
                )
            return
        latest = {e.channel: e for e in await self._store.latest_outbox(entry.dedup_key)}
        if (newest := latest.get(entry.channel)) is not None and newest.action == "resolve":
            return
        text = {
            **entry.message,
            "summary": fallback_summary(entry, undelivered),
            FALLBACK_FOR: entry.channel,
        }
        text.pop(FALLBACK, None)
        text.pop("digest", None)
        now = self._now()
        copies = [
            OutboxEntry(
                f"{entry.id}/{FALLBACK}/{channel}",
                channel,
                "trigger",
                entry.dedup_key,
                entry.remediation_id,
                text,
                now,
                now,
            )
            for channel in fallback
        ]
        await self._store.enqueue(copies)
        if undelivered.refused:
            log.error(
                "page refused; sent to the fallback",
                channel=entry.channel,
                fallback=fallback,
                key=entry.dedup_key,
                error=undelivered.error,
            )
        else:
            log.warning("page sent to the fallback", channel=entry.channel, fallback=fallback)

    async def _send_digest(
        self, name: str, channel: DigestChannel, entries: list[OutboxEntry]
    ) -> None:
        breaker = self._breakers[name]
        if breaker.open_until > self._clock():
            retry = datetime.fromtimestamp(breaker.open_until, UTC)
            for entry in entries:
                await self._store.outbox_put_back(
                    entry.id, retry_at=retry, error="channel breaker open"
                )
            return
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
            undelivered = await self._retry(entries[0], error, retry_after)
            for entry in entries[1:]:
                if undelivered.retry_at is None:  # given up after its attempts: the digest too
                    await self._give_up(entry, error)
                else:
                    await self._store.outbox_done(
                        entry.id, retry_at=undelivered.retry_at, error=error
                    )
            return
        breaker.failures = 0
        await self._done(name, channel, entries)
        log.info("digest sent", channel=name, messages=len(entries))

    async def _done(self, name: str, channel: Channel, entries: list[OutboxEntry]) -> None:
        """Sent, or in dry-run recorded as what would have been sent (WouldSend's note)."""
        note = WOULD_SEND if isinstance(channel, WouldSend) else None
        for entry in entries:
            await self._store.outbox_done(entry.id, sent_at=self._now(), error=note)
        self._metrics.notifications_sent.labels(name, "would_send" if note else "sent").inc(
            len(entries)
        )

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
    ) -> _Undelivered:
        if entry.attempts >= MAX_ATTEMPTS:
            return await self._give_up(entry, f"gave up after {entry.attempts} attempts: {error}")
        backoff = retry_after if retry_after is not None else min(5.0 * 2**entry.attempts, 3600.0)
        retry_at = self._now() + timedelta(seconds=backoff)
        await self._store.outbox_done(entry.id, retry_at=retry_at, error=error)
        self._metrics.notifications_sent.labels(entry.channel, "retried").inc()
        log.warning("notification will be retried", channel=entry.channel, error=error)
        return _Undelivered(retry_at, error)

    async def _give_up(self, entry: OutboxEntry, error: str) -> _Undelivered:
        await self._store.outbox_done(entry.id, failed_at=self._now(), error=error)
        self._metrics.notifications_sent.labels(entry.channel, "failed").inc()
        log.error("notification not sent", channel=entry.channel, error=error)
        return _Undelivered(None, error)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def fallback_summary(entry: OutboxEntry, undelivered: _Undelivered) -> str:
    """What the fallback's copy says first: that the channel refused the page, or that it
    could not be reached, and why."""
    title = TITLES.get(entry.channel, entry.channel)
    level, error = entry.message["level"], undelivered.error
    if undelivered.refused:
        said = f"{title} refused this {level} page ({error}): it may have reached nobody there."
    else:
        said = f"{title} could not be reached ({error}): this {level} page may have reached "
        said += "nobody there."
    return f"{said} {entry.message['summary']}"[:1024]


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
        # Absent from messages queued before they were added.
        run_id=m.get("run_id"),
        run_url=m.get("run_url"),
        severity_why=m.get("severity_why", ""),
        next=m.get("next", ""),
        started_at=m.get("started_at"),
        approval=ApprovalAsk.from_json(m["approval"]) if m.get("approval") else None,
    )


def _worth_retrying_now(exc: BaseException) -> bool:
    """A blip is; a channel that said when to come back (429) is asked then, not now."""
    if isinstance(exc, TimeoutError):
        return True
    return isinstance(exc, TransientFailure) and exc.retry_after is None
