"""The ladder (an incident still open climbs to the next level) and the daily digest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from remediator.metrics import Metrics
from remediator.notify.base import Channel
from remediator.notify.ladder import Ladder
from remediator.notify.outbox import OutboxSender, message_of
from remediator.policy.schema import Digest
from tests.support.escalation import KEY, Recorder, outbox
from tests.support.mailbox import Mailbox, plain_email
from tests.support.world import POLICY, World

HOUR = 3600.0


def sender(world: World, **channels: Channel) -> OutboxSender:
    ladder = Ladder(world.store, lambda: world.live.current.matrix, clock=world.clock)
    return OutboxSender(
        world.store, {**channels, "ladder": ladder}, Metrics().notify, clock=world.clock
    )


@pytest.fixture
def recorders() -> dict[str, Recorder]:
    return {name: Recorder(name) for name in ("pagerduty", "slack", "email")}


async def test_an_incident_still_open_climbs_to_the_next_level_and_its_resolve_reaches_all(
    world: World, recorders: dict[str, Recorder]
) -> None:
    world.application.fix_status = 400  # the fix fails: P2 pages slack and email
    await world.post("firing")
    await world.dispatcher.run_once()
    send = sender(world, **recorders)
    await send.run_once()
    assert [len(recorders[c].sent) for c in ("pagerduty", "slack", "email")] == [0, 1, 1]

    world.clock.advance(HOUR - 1)
    await send.run_once()
    assert recorders["pagerduty"].sent == []  # not yet: P2's rung is after 1h
    world.clock.advance(1)
    await send.run_once()  # the climb falls due and queues P1's channels
    await send.run_once()
    [page] = recorders["pagerduty"].sent
    assert page.level == "P1"
    assert page.action == "trigger"
    assert page.dedup_key == KEY
    assert page.summary.startswith(
        "still open 1h after the P2 page, escalated to P1: AppDown on Application/-/shop:"
        " remediation failed:"
    )
    assert [m.level for m in recorders["slack"].sent] == ["P2", "P1"]
    assert len(recorders["email"].sent) == 1  # P1 does not use email

    world.clock.advance(10 * HOUR)
    await send.run_once()
    assert len(recorders["pagerduty"].sent) == 1  # P1 has no next rung: it climbs no further

    world.application.fix_status = 200
    await world.post("resolved")
    await world.dispatcher.run_once()
    await send.run_once()
    resolved = {c for c, r in recorders.items() if r.sent[-1].action == "resolve"}
    assert resolved == {"pagerduty", "slack", "email"}


async def test_an_incident_resolved_before_its_climb_does_not_climb_even_when_it_reopens(
    world: World, recorders: dict[str, Recorder]
) -> None:
    world.application.fix_status = 400
    await world.post("firing")
    await world.dispatcher.run_once()
    send = sender(world, **recorders)
    await send.run_once()
    world.clock.advance(600)
    await world.post("resolved")
    await world.dispatcher.run_once()
    world.clock.advance(600)
    await world.post("firing", starts_at="2027-01-15T08:20:00Z")  # a new episode, same target
    await world.dispatcher.run_once()
    world.clock.advance(HOUR - 1200)  # the first climb is due; the second not yet
    await send.run_once()
    await send.run_once()
    assert recorders["pagerduty"].sent == []
    world.clock.advance(1200)  # an hour after the reopening: that one climbs
    await send.run_once()
    await send.run_once()
    assert [m.level for m in recorders["pagerduty"].sent] == ["P1"]


async def test_a_climb_repeated_after_a_crash_queues_nothing_twice(
    world: World, recorders: dict[str, Recorder]
) -> None:
    world.application.fix_status = 400
    await world.post("firing")
    await world.dispatcher.run_once()
    [climb] = [e for e in await world.store.outbox_for(KEY) if e.channel == "ladder"]
    ladder = Ladder(world.store, lambda: world.live.current.matrix, clock=world.clock)
    world.clock.advance(HOUR)
    await ladder.send(message_of(climb))
    await ladder.send(message_of(climb))  # the sender died before marking it done
    climbed = [channel for channel, _ in await outbox(world.store, KEY)]
    assert climbed.count("pagerduty") == 1


@pytest.mark.parametrize("policy", [POLICY.replace("severity: P2", "severity: P4")])
async def test_a_digest_level_s_email_waits_for_the_hour_and_goes_as_one(
    world: World, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    world.application.fix_status = 400
    await world.post("firing")  # 08:00 UTC; the shipped digest is at 09:00 UTC
    await world.dispatcher.run_once()
    world.clock.advance(600)
    world.application.fix_status = 200  # the on_resolved undo works
    await world.post("resolved")
    await world.dispatcher.run_once()
    send = sender(world, email=plain_email(port))
    await send.run_once()
    assert box.received == []
    world.clock.advance(HOUR - 600)
    await send.run_once()
    assert len(box.received) == 1
    envelope, mail = box.mail(0)
    assert mail["Subject"] == "[P4 digest] 1 incidents: AppDown"
    plain = mail.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "[resolved] AppDown" in text  # the incident at its latest state, once
    assert "shop: remediation failed" not in text  # the trigger it replaced is not repeated
    assert all(e.sent_at is not None for e in await world.store.outbox_for(KEY))
    assert envelope.rcpt_tos == ["oncall@example.com", "sre@example.com"]


@pytest.mark.parametrize(
    ("now", "at", "zone", "due"),
    [
        ("2027-01-15T08:00:00+00:00", "09:00", "UTC", "2027-01-15T09:00:00+00:00"),
        ("2027-01-15T09:00:00+00:00", "09:00", "UTC", "2027-01-15T09:00:00+00:00"),
        ("2027-01-15T09:01:00+00:00", "09:00", "UTC", "2027-01-16T09:00:00+00:00"),
        ("2027-01-15T08:30:00+00:00", "09:00", "Europe/Berlin", "2027-01-16T08:00:00+00:00"),
        ("2027-03-27T09:00:00+00:00", "09:00", "Europe/Berlin", "2027-03-28T07:00:00+00:00"),
    ],
)
def test_the_digest_is_due_at_its_hour_in_its_zone(now: str, at: str, zone: str, due: str) -> None:
    digest = Digest.model_validate({"at": at, "timezone": zone})
    assert digest.next_after(datetime.fromisoformat(now)) == datetime.fromisoformat(due)
    assert digest.next_after(datetime.fromisoformat(now)).astimezone(UTC).tzinfo is UTC
