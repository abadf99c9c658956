"""A flapping alert is one incident: its resolve is held for the matrix's `resolve_after`, a
new episode within it resumes the incident, and what the channels' real servers hear is one
PagerDuty incident and one email thread, not a trigger and a resolve per episode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from remediator.notify.hold import HeldResolves
from remediator.notify.outbox import OutboxSender, message_of
from remediator.policy.loader import load_policies
from remediator.store import Store
from tests.support.escalation import KEY, outbox
from tests.support.flapping import (
    MINUTE,
    Heard,
    every_channel_at_p2,
    post,
    real_channels,
    secrets,
    sender,
)
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import Recorder
from tests.support.policies import SHIPPED_POLICIES, shipped_matrix
from tests.support.world import POLICY, World, open_world, write_policies

# Two runs an hour: episodes 3 and 4 are blocked by the rate limit, and escalate as blocked.
# No on_resolved step: an undo that fails is news of its own (it resumes the incident too).
FLAPPING = POLICY.replace("{max: 5, per: 1h}", "{max: 2, per: 1h}")
_UNDO = FLAPPING[FLAPPING.index("on_resolved:") : FLAPPING.index("verify:")]
FLAPPING = FLAPPING.replace(_UNDO, "")


@pytest.fixture
async def world(store: Store, tmp_path: Path) -> AsyncIterator[World]:
    directory = write_policies(tmp_path / "policies", FLAPPING)
    matrix = directory / "escalation.yaml"
    matrix.write_text(every_channel_at_p2(shipped_matrix("5m")))  # as shipped
    async with open_world(store, directory) as opened:
        opened.application.fix_status = 400  # each run fails, and pages
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
        yield sender(world, real_channels(session, heard.pagerduty, heard.slack, mailbox[1]))


async def flap(world: World, send: OutboxSender, episodes: int) -> None:
    """Fire for a minute, resolve for a minute, `episodes` times; the outbox sends as it goes."""
    for episode in range(1, episodes + 1):
        for status in ("firing", "resolved"):
            await post(world, status, episode)
            await world.dispatcher.run_once()
            await send.run_once()
            await send.run_once()
            world.clock.advance(MINUTE)


async def settle(send: OutboxSender) -> None:
    await send.run_once()  # what is due: a held resolve queues the channels' resolves
    await send.run_once()  # and they are sent


def test_the_shipped_matrix_holds_a_resolve_for_five_minutes() -> None:
    assert load_policies(SHIPPED_POLICIES).matrix.resolve_after == timedelta(minutes=5)


async def test_a_flapping_alert_is_one_incident_on_each_channel_until_it_stays_resolved(
    world: World, send: OutboxSender, heard: Heard
) -> None:
    await flap(world, send, episodes=4)  # 08:00 to 08:08, the last resolve at 08:07
    world.clock.advance(3 * MINUTE)  # 08:11: not yet resolved for 5m
    await settle(send)
    assert "resolve" not in [action for action, _ in heard.pagerduty_events()]

    world.clock.advance(MINUTE)  # 08:12: resolved, and stayed resolved, for 5m
    await settle(send)
    assert heard.pagerduty_events() == [("trigger", KEY)] * 4 + [("resolve", KEY)]
    resolved = "resolved, and stayed resolved for 5m, after 4 episodes in 7m"
    # Email and Slack: the opening, at most one update per hold time (episode 4, 6 minutes
    # after the opening; episodes 2 and 3 came within 5 minutes of it), and the resolve.
    [opening, update, resolve] = heard.subjects()
    assert opening.startswith("[P2] AppDown on Application/-/shop: remediation failed")
    assert update.startswith("[P2] AppDown: fired again (episode 4 in 6m): AppDown on")
    assert "remediation blocked" in update  # episode 4 was blocked by the rate limit
    assert resolve.startswith(f"[resolved] AppDown on Application/-/shop {resolved}")
    [opened, again, over] = heard.slack_texts()
    assert "remediation failed" in opened
    assert "fired again (episode 4 in 6m)" in again
    assert over.startswith("Resolved: ")
    assert resolved in over

    world.clock.advance(60 * MINUTE)
    await settle(send)
    assert heard.counts() == {"pagerduty": 5, "slack": 3, "email": 3}  # nothing more


async def test_an_episode_after_the_hold_time_opens_a_new_incident(
    world: World, send: OutboxSender, heard: Heard
) -> None:
    await flap(world, send, episodes=1)
    world.clock.advance(5 * MINUTE)
    await settle(send)
    assert heard.pagerduty_events() == [("trigger", KEY), ("resolve", KEY)]
    [_, resolve] = heard.subjects()
    assert "resolved, and stayed resolved for 5m (" in resolve  # one episode: no count
    await post(world, "firing", 2)
    await world.dispatcher.run_once()
    await settle(send)
    assert [action for action, _ in heard.pagerduty_events()] == ["trigger", "resolve", "trigger"]
    assert heard.subjects()[-1].startswith("[P2] AppDown on")  # opened, not resumed


async def test_a_held_resolve_survives_a_crash_and_is_sent_once(
    world: World, send: OutboxSender, heard: Heard
) -> None:
    await flap(world, send, episodes=2)
    [held] = [e for e in await world.store.latest_outbox(KEY) if e.channel == HeldResolves.name]
    assert held.sent_at is None  # durable: queued with the remediation, due 5m later
    world.clock.advance(5 * MINUTE)
    handler = HeldResolves(world.store, lambda: world.live.current.matrix, clock=world.clock)
    await handler.send(message_of(held))
    await handler.send(message_of(held))  # the sender died before marking it done
    assert [a for c, a in await outbox(world.store, KEY) if c == "pagerduty"].count("resolve") == 1
    await settle(send)  # another replica: the held entry, then the resolves, once each
    assert heard.pagerduty_events() == [("trigger", KEY)] * 2 + [("resolve", KEY)]
    assert heard.counts() == {"pagerduty": 3, "slack": 2, "email": 2}


async def test_an_incident_whose_resolve_is_held_does_not_climb_and_a_new_episode_resumes_it(
    world: World, send: OutboxSender, heard: Heard
) -> None:
    await flap(world, send, episodes=1)  # P2 climbs to P1 after 1h open
    await post(world, "firing", 2)  # within the hold time: the same incident, open again
    await world.dispatcher.run_once()
    world.clock.advance(60 * MINUTE)
    await settle(send)
    await settle(send)
    levels = [r.json["payload"]["summary"].split(",")[0] for r in heard.pagerduty.requests]
    assert len(levels) == 3  # opened, resumed, then the climb from the resumption an hour on
    assert levels[-1].startswith("still open 1h after the P2 page")
    assert "resolve" not in [action for action, _ in heard.pagerduty_events()]
