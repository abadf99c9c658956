"""Every alert one blast radius holds back in one window is one incident, a probable shared
cause: each channel's real server hears it once, in words naming the cause and its targets,
and its resolve goes once every alert it holds has resolved (not when the first one does),
exactly once however many replicas resolve the last ones at once, and a crash does not lose it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from remediator.alerts import Notification
from remediator.notify.outbox import OutboxSender
from remediator.remediation.run import Runner
from remediator.store import OutboxEntry, Store
from tests.support.flapping import MINUTE, Heard, every_channel_at_p2, real_channels, secrets
from tests.support.flapping import sender as outbox_sender
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import Recorder
from tests.support.policies import shipped_matrix
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import POLICY, World, open_world, write_policies

# At most two applications changed in ten minutes: the first two alerts run (their fix is
# applied, and waits for its verification: no page), the next three are held back.
SHARED = POLICY + "max_targets: {count: 2, per: 10m}\n"
RUN, HELD = ("users", "orders"), ("payments", "search", "cart")
INCIDENT = "remediator/probe-and-fix/blast-radius/20270115T080000Z"


@pytest.fixture(params=["0s", "5m"], ids=["resolve-at-once", "resolve-held-5m"])
def resolve_after(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def world(store: Store, tmp_path: Path, resolve_after: str) -> AsyncIterator[World]:
    directory = write_policies(tmp_path / "policies", SHARED)
    (directory / "escalation.yaml").write_text(every_channel_at_p2(shipped_matrix(resolve_after)))
    async with open_world(store, directory) as opened:
        yield opened


@pytest.fixture
def heard(pagerduty_api: Recorder, slack_api: Recorder, mailbox: tuple[Mailbox, int]) -> Heard:
    return Heard(pagerduty_api, slack_api, mailbox[0])


@pytest.fixture
async def send(
    world: World, heard: Heard, mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OutboxSender]:
    for name, value in secrets(heard.slack).items():
        monkeypatch.setenv(name, value)
    async with aiohttp.ClientSession() as session:
        channels = real_channels(session, heard.pagerduty, heard.slack, mailbox[1])
        yield outbox_sender(world, channels)


async def post(world: World, status: str, *apps: str) -> None:
    """One notification of the applications' AppDown alerts, each its own fingerprint."""
    alerts = [
        webhook_alert(
            {"alertname": "AppDown", "app": app, "instance": world.instance},
            fingerprint=f"fp-{app}",
            starts_at="2027-01-15T08:00:00Z",
            status=status,
        )
        for app in apps
    ]
    body = webhook(*alerts, group_key='{}:{alertname="AppDown"}')
    received = datetime.fromtimestamp(world.clock(), UTC)
    await world.store.record_notification(Notification.model_validate(body), b"{}", received)


async def fire_all(world: World) -> None:
    """The five alerts, handled one by one a second apart: two run, three are held by the
    blast radius."""
    for app in RUN + HELD:
        await post(world, "firing", app)
        await world.dispatcher.run_once()
        world.clock.advance(1)


async def resolve(world: World, *apps: str) -> None:
    await post(world, "resolved", *apps)
    await world.dispatcher.run_once()


async def settle(world: World, send: OutboxSender, resolve_after: str) -> None:
    """Send what is due, and what falls due once a held resolve's hold time has passed."""
    await send.run_once()
    if resolve_after != "0s":
        world.clock.advance(5 * MINUTE)
        await send.run_once()  # the held resolve: the channels' resolves are queued
        await send.run_once()


async def test_alerts_one_blast_radius_holds_are_one_incident_told_once_per_channel(
    world: World, send: OutboxSender, heard: Heard
) -> None:
    await fire_all(world)
    await send.run_once()
    held = [r for r in await world.runs() if r.guard == "blast_radius"]
    assert sorted(r.target or "" for r in held) == sorted(f"Application/-/{a}" for a in HELD)
    assert {r.plan.incident for r in held} == {INCIDENT}
    assert heard.pagerduty_events() == [("trigger", INCIDENT)]  # one incident, not three
    assert heard.counts() == {"pagerduty": 1, "slack": 1, "email": 1}
    # In the words of the first block: the cause, the targets changed, the one held.
    [cause] = [r.reason for r in held if r.target == "Application/-/payments"]
    assert cause.startswith("probable shared cause: 3 targets of probe-and-fix changed")
    assert cause.endswith("(bound 2 per 10m): users, orders; not changing a third (payments)")
    assert heard.pagerduty.requests[0].json["payload"]["summary"] == cause
    [subject] = heard.subjects()
    assert subject == f"[P2] AppDown: {cause}"
    assert cause in heard.slack_texts()[0]


async def test_the_shared_incident_resolves_only_when_its_last_alert_does(
    world: World, send: OutboxSender, heard: Heard, resolve_after: str
) -> None:
    await fire_all(world)
    await send.run_once()
    await resolve(world, "payments")
    await resolve(world, "search")
    await resolve(world, *RUN)  # the runs' own alerts are no part of it
    await settle(world, send, resolve_after)
    assert heard.counts() == {"pagerduty": 1, "slack": 1, "email": 1}  # cart still fires
    await resolve(world, "cart")
    await settle(world, send, resolve_after)
    await settle(world, send, resolve_after)  # nothing more falls due
    assert heard.pagerduty_events() == [("trigger", INCIDENT), ("resolve", INCIDENT)]
    assert heard.counts() == {"pagerduty": 2, "slack": 2, "email": 2}
    over = heard.subjects()[-1]
    assert over.startswith("[resolved] AppDown: every held alert resolved")
    assert "probable shared cause" in over


class Deferred:
    """A replica's view of the store whose outbox writes wait until `flush`: what a replica
    queues is written only after the other replica has looked (the two at once)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.queued: list[Sequence[OutboxEntry]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        self.queued.append(entries)

    async def flush(self) -> None:
        for entries in self.queued:
            await self._store.enqueue(entries)


def replica(world: World, store: Deferred) -> Runner:
    return Runner(cast(Store, store), world.guards, world.live, {}, clock=world.clock)


async def test_the_last_two_alerts_resolving_at_once_on_two_replicas_resolve_it_once(
    world: World, send: OutboxSender, heard: Heard, resolve_after: str
) -> None:
    await fire_all(world)
    await send.run_once()
    await resolve(world, "payments")
    await post(world, "resolved", "search", "cart")  # both heard before either is handled
    events = await world.store.pending_events(10)
    assert sorted(e.fingerprint for e in events) == ["fp-cart", "fp-search"]
    first, second = Deferred(world.store), Deferred(world.store)
    # Each replica reads the incident and asks whether another alert still fires before
    # either has queued anything.
    await replica(world, first).handle(events[0])
    await replica(world, second).handle(events[1])
    await first.flush()
    await second.flush()
    # Neither saw the other still firing: both queued it.
    assert first.queued
    assert second.queued
    await settle(world, send, resolve_after)
    await settle(world, send, resolve_after)
    assert heard.pagerduty_events() == [("trigger", INCIDENT), ("resolve", INCIDENT)]
    assert heard.counts() == {"pagerduty": 2, "slack": 2, "email": 2}


class Crashing:
    """The store of a replica that dies as it queues its messages."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        raise ConnectionResetError("the replica died")


async def test_the_last_resolution_handled_again_after_a_crash_still_resolves_it(
    world: World, send: OutboxSender, heard: Heard, resolve_after: str
) -> None:
    await fire_all(world)
    await send.run_once()
    await resolve(world, "payments", "search")
    await post(world, "resolved", "cart")
    now = datetime.fromtimestamp(world.clock(), UTC)
    [event] = await world.store.claim_events("dead", now, now + timedelta(minutes=1), 1)
    dead = Runner(
        cast(Store, Crashing(world.store)), world.guards, world.live, {}, clock=world.clock
    )
    with pytest.raises(ConnectionResetError):
        await dead.handle(event)
    world.clock.advance(2 * MINUTE)  # its lease passes: another replica takes the event over
    assert await world.dispatcher.run_once() == 1
    await settle(world, send, resolve_after)
    assert heard.pagerduty_events() == [("trigger", INCIDENT), ("resolve", INCIDENT)]
    assert heard.counts() == {"pagerduty": 2, "slack": 2, "email": 2}
