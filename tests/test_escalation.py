"""Who hears, when, once: the escalation rules, the runner's outbox entries, the outbox sender."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from remediator.alerts import AlertStatus
from remediator.engine.escalation import on_outcome, on_start
from remediator.engine.outcome import RunOutcome
from remediator.metrics import Metrics
from remediator.notify.base import PermanentFailure, TransientFailure
from remediator.notify.escalator import alert_links
from remediator.notify.outbox import MAX_ATTEMPTS, OutboxSender, QuickRetries
from remediator.policy.schema import EscalateWhen
from remediator.store import AlertRecord, OutboxEntry, Store
from tests.support.clocks import Clock
from tests.support.escalation import KEY, Recorder, outbox
from tests.support.world import POLICY, World, open_world, write_policies

DEFAULT = (EscalateWhen.ON_FAILURE, EscalateWhen.WHEN_BLOCKED)
ALWAYS = (EscalateWhen.ALWAYS,)


@pytest.mark.parametrize(
    ("outcome", "escalate", "paged", "expected"),
    [
        ("failed", DEFAULT, False, "trigger"),
        ("failed", (EscalateWhen.WHEN_BLOCKED,), False, None),
        ("blocked", DEFAULT, False, "trigger"),
        ("blocked", (EscalateWhen.ON_FAILURE,), False, None),
        ("dry_run", DEFAULT, False, "trigger"),
        ("no_match", (), False, "trigger"),
        ("verifying", DEFAULT, False, None),
        ("verifying", DEFAULT, True, "trigger"),  # the open page follows the run
        ("succeeded", DEFAULT, False, None),
        ("succeeded", DEFAULT, True, "resolve"),
        ("skipped", DEFAULT, False, None),
        ("succeeded", ALWAYS, False, None),
    ],
)
def test_escalation_rules(
    outcome: str, escalate: tuple[EscalateWhen, ...], paged: bool, expected: str | None
) -> None:
    assert on_outcome(RunOutcome(outcome), escalate, paged) == expected


def test_p1_and_always_page_when_a_run_starts() -> None:
    assert on_start(DEFAULT, page_while_remediating=True) == "trigger"
    assert on_start(ALWAYS, page_while_remediating=False) == "trigger"
    assert on_start(DEFAULT, page_while_remediating=False) is None


async def test_a_failed_run_pages_its_level_s_channels_and_the_resolution_closes_them(
    world: World,
) -> None:
    world.application.fix_status = 400
    await world.post("firing")
    await world.dispatcher.run_once()
    assert await outbox(world.store, KEY) == [
        ("slack", "trigger"),
        ("email", "trigger"),
        ("ladder", "climb"),  # P2 climbs to P1 if still open after an hour
    ]
    [entry, *_] = await world.store.outbox_for(KEY)
    message = entry.message
    assert message["level"] == "P2"
    assert message["summary"].startswith("AppDown on Application/-/shop: remediation failed:")
    assert [(s["action"], s["outcome"]) for s in message["steps"]] == [
        ("http.check", "failed"),
        ("http.request", "failed"),
    ]
    world.application.fix_status = 200  # the on_resolved undo works
    await world.post("resolved")
    await world.dispatcher.run_once()
    assert await outbox(world.store, KEY) == [
        ("slack", "trigger"),
        ("email", "trigger"),
        ("ladder", "climb"),
        ("slack", "resolve"),
        ("email", "resolve"),
    ]


async def test_a_run_that_changed_nothing_is_not_undone_and_its_resolve_stays_closed(
    world: World,
) -> None:
    world.application.fix_status = 400  # the fix is refused: nothing was mitigated
    await world.post("firing")
    await world.dispatcher.run_once()
    await world.post("resolved")
    await world.dispatcher.run_once()
    assert [hook for hook, _ in world.application.calls] == ["fix"]  # no "unfix"
    undo = [(r.outcome, r.reason) for r in await world.runs() if r.kind == "resolved"]
    assert undo == [("skipped", "on_resolved: nothing to undo, the run made no change")]
    # The resolution closed the incident, and nothing after it opens it again.
    assert (await outbox(world.store, KEY))[-2:] == [("slack", "resolve"), ("email", "resolve")]
    assert await outbox(world.store, f"{KEY}/on_resolved") == []


async def test_an_undo_that_fails_is_an_incident_of_its_own(world: World) -> None:
    await world.post("firing")
    await world.dispatcher.run_once()  # the fix worked; verifying
    world.application.fix_status = 400  # the undo is refused
    await world.post("resolved")
    await world.dispatcher.run_once()
    assert [hook for hook, _ in world.application.calls] == ["fix", "unfix"]
    assert await outbox(world.store, KEY) == []  # nobody was paged about the alert
    assert await outbox(world.store, f"{KEY}/on_resolved") == [
        ("slack", "trigger"),
        ("email", "trigger"),
        ("ladder", "climb"),
    ]
    [entry, *_] = await world.store.outbox_for(f"{KEY}/on_resolved")
    assert entry.message["outcome"] == "failed"


async def test_a_run_that_works_pages_nobody(world: World) -> None:
    await world.post("firing")
    await world.dispatcher.run_once()
    await world.post("resolved")
    await world.dispatcher.run_once()
    assert await outbox(world.store, KEY) == []


@pytest.mark.parametrize("policy", [POLICY.replace("severity: P2", "severity: P1")])
async def test_p1_pages_at_once_follows_the_run_and_resolves(world: World) -> None:
    await world.post("firing")
    await world.dispatcher.run_once()
    assert await outbox(world.store, KEY) == [
        ("pagerduty", "trigger"),  # at the start, in parallel with the fix
        ("slack", "trigger"),
        ("pagerduty", "trigger"),  # updated: fix applied, verifying
        ("slack", "trigger"),
    ]
    await world.post("resolved")
    await world.dispatcher.run_once()
    assert (await outbox(world.store, KEY))[-2:] == [("pagerduty", "resolve"), ("slack", "resolve")]


def entry(channel: str, action: str = "trigger", at: float = 1_800_000_000.0) -> OutboxEntry:
    when = datetime.fromtimestamp(at, UTC)
    message = {
        "level": "P2",
        "summary": "s",
        "alertname": "AppDown",
        "status": "firing",
        "labels": {},
        "annotations": {},
        "policy": "p",
        "target": "t",
        "outcome": "failed",
        "reason": "r",
        "steps": [],
        "links": {},
    }
    return OutboxEntry(str(uuid.uuid4()), channel, action, "key", None, message, when, when)


async def test_each_message_is_sent_once_and_a_crash_before_sending_loses_nothing(
    store: Store,
) -> None:
    clock = Clock()
    slack = Recorder("slack")
    queued = entry("slack")
    await store.enqueue([queued])
    # A worker claims it and dies before sending: after its lease another sends it.
    dead = OutboxSender(
        store, {"slack": Recorder("slack")}, Metrics().notify, clock=clock, worker="dead"
    )
    await store.claim_outbox(dead.worker, _at(clock), _at(clock, 60), 10)
    sender = OutboxSender(store, {"slack": slack}, Metrics().notify, clock=clock)
    assert await sender.run_once() == 0
    clock.advance(61)
    assert await sender.run_once() == 1
    assert [m.id for m in slack.sent] == [queued.id]
    clock.advance(3600)
    assert await sender.run_once() == 0  # sent: never again
    [done] = await store.outbox_for("key")
    assert done.sent_at is not None


async def test_transient_failures_are_retried_with_backoff_refusals_given_up(
    store: Store,
) -> None:
    clock = Clock()
    slack = Recorder("slack", failures=[TransientFailure("429", retry_after=7)])
    email = Recorder("email", failures=[PermanentFailure("550 no such user")])
    await store.enqueue([entry("slack"), entry("email")])
    sender = OutboxSender(store, {"slack": slack, "email": email}, Metrics().notify, clock=clock)
    await sender.run_once()
    assert slack.sent == []
    assert email.sent == []
    clock.advance(6)
    await sender.run_once()
    assert slack.sent == []  # Retry-After: 7 honoured
    clock.advance(1)
    await sender.run_once()
    assert len(slack.sent) == 1
    failed = [e for e in await store.outbox_for("key") if e.channel == "email"]
    assert failed[0].failed_at is not None
    assert failed[0].last_error == "550 no such user"
    assert email.sent == []


async def test_a_dead_channel_does_not_hold_up_another_and_is_paused_by_its_breaker(
    store: Store,
) -> None:
    clock = Clock()
    dead = Recorder("pagerduty", failures=[TransientFailure("503")] * 100)
    slack = Recorder("slack")
    await store.enqueue([entry("pagerduty", at=clock() - 3 + i) for i in range(3)])
    await store.enqueue([entry("slack")])
    sender = OutboxSender(
        store,
        {"pagerduty": dead, "slack": slack},
        Metrics().notify,
        clock=clock,
        breaker_failures=3,
        quick=QuickRetries(attempts=1),  # one try a round: the outbox's backoff is under test
    )
    await sender.run_once()
    assert len(slack.sent) == 1  # not held up
    assert len(dead.failures) == 99  # one try: the others wait behind it, in order
    for wait in (11, 21):  # past each backoff: 10 s, then 20 s
        clock.advance(wait)
        await sender.run_once()
    assert len(dead.failures) == 97  # three failures: its breaker opens
    clock.advance(30)
    await sender.run_once()
    assert len(dead.failures) == 97  # paused, not hammered
    clock.advance(300)
    await sender.run_once()
    assert len(dead.failures) == 96  # tried again after the cooldown


async def test_a_message_waiting_its_turn_or_for_a_paused_channel_keeps_its_attempts(
    store: Store,
) -> None:
    """Only a send tried counts: a message held for hours behind a dead channel's first one
    still gets its full backoff and attempts once it is its turn."""
    clock = Clock()
    dead = Recorder("pagerduty", failures=[TransientFailure("503")] * 100)
    first, *waiting = [entry("pagerduty", at=clock() - 3 + i) for i in range(3)]
    first = replace(first, dedup_key="first")  # its own incident: the others wait in the lane
    await store.enqueue([first, *waiting])
    sender = OutboxSender(
        store,
        {"pagerduty": dead},
        Metrics().notify,
        clock=clock,
        breaker_failures=2,
        quick=QuickRetries(attempts=1),
    )
    # A minute a round: two tries, the breaker holds every message back for 300 s (the first
    # one is claimed meanwhile, due after its backoff), then two tries more.
    for _ in range(8):
        await sender.run_once()
        clock.advance(60)
    attempts = {e.id: e.attempts for e in await store.outbox_for("key")}
    attempts.update({e.id: e.attempts for e in await store.outbox_for("first")})
    assert 100 - len(dead.failures) == 4
    assert attempts == {first.id: 4, waiting[0].id: 0, waiting[1].id: 0}


async def test_a_message_still_unsent_a_day_after_it_was_queued_is_given_up_tried_or_not(
    store: Store,
) -> None:
    """Behind a message its dead channel keeps failing, another is never tried: it must not
    wait for ever, nor for each message ahead of it to use up its own 21 hours."""
    clock = Clock()
    dead = Recorder("pagerduty", failures=[TransientFailure("503")] * 1000)
    first, waiting = [entry("pagerduty", at=clock() - 2 + i) for i in range(2)]
    first = replace(first, dedup_key="first")
    await store.enqueue([first, waiting])
    quick = QuickRetries(attempts=1)
    sender = OutboxSender(store, {"pagerduty": dead}, Metrics().notify, clock=clock, quick=quick)
    for _ in range(25):  # an hour a round
        await sender.run_once()
        clock.advance(3600)
    [gone] = await store.outbox_for("key")
    [ahead] = await store.outbox_for("first")
    assert gone.failed_at is not None
    assert gone.sent_at is None
    assert gone.last_error == (
        "still unsent a day after it was queued: behind a message being retried"
    )
    assert ahead.last_error == "still unsent a day after it was queued: 503"  # tried all along


async def test_a_blip_is_retried_within_the_send_and_a_429_waits_for_its_time(
    store: Store,
) -> None:
    clock = Clock()
    flaky = Recorder("slack", failures=[TransientFailure("502"), TransientFailure("reset")])
    await store.enqueue([entry("slack")])
    metrics = Metrics()
    quick = QuickRetries(attempts=3, first_wait=0.001, max_wait=0.002)
    sender = OutboxSender(store, {"slack": flaky}, metrics.notify, clock=clock, quick=quick)
    assert await sender.run_once() == 1
    assert len(flaky.sent) == 1  # sent in this round, on its third attempt
    assert metrics.notify.notifications_sent.labels("slack", "retried")._value.get() == 2
    limited = Recorder("slack", failures=[TransientFailure("429", retry_after=30)])
    await store.enqueue([entry("slack")])
    sender = OutboxSender(store, {"slack": limited}, Metrics().notify, clock=clock, quick=quick)
    await sender.run_once()
    assert limited.sent == []  # not hammered: asked again after Retry-After, by the outbox
    clock.advance(30)
    await sender.run_once()
    assert len(limited.sent) == 1


async def test_an_unconfigured_channel_is_given_up_with_the_reason(store: Store) -> None:
    await store.enqueue([entry("pagerduty")])
    await OutboxSender(store, {}, Metrics().notify, clock=Clock()).run_once()
    [given_up] = await store.outbox_for("key")
    assert given_up.last_error == "channel pagerduty is not configured"


async def test_a_message_the_channel_cannot_compose_is_given_up_and_blocks_nothing(
    store: Store,
) -> None:
    clock = Clock()
    email = Recorder("email", failures=[ValueError("Header values may not contain linefeed")])
    first, second = entry("email", at=clock() - 1), entry("email")
    await store.enqueue([first, second])
    await OutboxSender(store, {"email": email}, Metrics().notify, clock=clock).run_once()
    assert [m.id for m in email.sent] == [second.id]
    [given_up] = [e for e in await store.outbox_for("key") if e.id == first.id]
    assert given_up.failed_at is not None
    assert given_up.last_error == "ValueError: Header values may not contain linefeed"


def test_the_backoff_keeps_trying_for_most_of_a_day() -> None:
    assert 18 * 3600 < sum(min(5.0 * 2**n, 3600.0) for n in range(MAX_ATTEMPTS)) < 24 * 3600


def _at(clock: Clock, plus: float = 0.0) -> datetime:
    return datetime.fromtimestamp(clock() + plus, UTC) + timedelta(0)


async def test_a_storm_on_one_target_is_one_message_per_outcome_not_one_per_alert(
    world: World,
) -> None:
    world.application.fix_status = 400  # every fix fails: two failures open the breaker
    for minute in range(6):  # six alerts (six pods, say) of the one target
        await world.post("firing", starts_at=f"2027-01-15T08:0{minute}:00Z")
        await world.dispatcher.run_once()
        world.clock.advance(60)
    outcomes = [r.outcome for r in await world.runs()]
    assert outcomes == ["failed", "failed", "blocked", "blocked", "blocked", "blocked"]
    sent = [
        (entry.channel, entry.message["outcome"])
        for entry in await world.store.outbox_for(KEY)
        if entry.channel == "slack"
    ]
    assert sent == [("slack", "failed"), ("slack", "blocked")]


def test_links_are_the_runbook_the_source_and_a_prefilled_silence() -> None:
    at = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    alert = AlertRecord(
        fingerprint="fp",
        alertname="HighErrorRate",
        status=AlertStatus.FIRING,
        labels={"alertname": "HighErrorRate", "pod": 'api-"7"\\x'},
        annotations={"runbook_url": "https://runbooks.example/high-error-rate"},
        starts_at=at,
        ends_at=None,
        first_received=at,
        last_received=at,
        deliveries=1,
        generator_url="http://prometheus:9090/graph?g0.expr=rate",
        external_url="http://alertmanager:9093/",
    )
    links = alert_links(alert)
    assert links["Runbook"] == "https://runbooks.example/high-error-rate"
    assert links["Source"] == "http://prometheus:9090/graph?g0.expr=rate"
    silence = urlsplit(links["Silence"])
    assert (silence.netloc, silence.fragment.split("?")[0]) == (
        "alertmanager:9093",
        "/silences/new",
    )
    [matchers] = parse_qs(silence.fragment.split("?", 1)[1])["filter"]
    assert matchers == '{alertname="HighErrorRate",pod="api-\\"7\\"\\\\x"}'
    hostile = replace(alert, annotations={"runbook_url": "javascript:alert(1)"}, external_url="")
    assert alert_links(hostile) == {"Source": "http://prometheus:9090/graph?g0.expr=rate"}


async def test_a_page_links_to_a_silence_on_the_alertmanager_that_sent_it(world: World) -> None:
    world.application.fix_status = 400
    await world.post("firing")
    await world.dispatcher.run_once()
    [entry, *_] = await world.store.outbox_for(KEY)
    assert entry.message["links"]["Silence"].startswith(
        "http://alertmanager/#/silences/new?filter=%7Balertname%3D%22AppDown%22%2Capp%3D%22shop"
    )


async def test_a_level_may_ask_for_no_email_when_the_incident_is_over(
    store: Store, tmp_path: Path
) -> None:
    policies = write_policies(tmp_path / "policies", POLICY)  # P2: slack and email
    matrix = policies / "escalation.yaml"
    text = matrix.read_text()
    rung = "    next: {after: 1h, level: P1}    # not answered within its response time: page\n"
    assert rung in text
    matrix.write_text(text.replace(rung, rung + "    resolved_email: false\n", 1))
    async with open_world(store, policies) as world:
        world.application.fix_status = 400
        await world.post("firing")
        await world.dispatcher.run_once()
        world.application.fix_status = 200
        await world.post("resolved")
        await world.dispatcher.run_once()
        assert await outbox(world.store, KEY) == [
            ("slack", "trigger"),
            ("email", "trigger"),
            ("ladder", "climb"),
            ("slack", "resolve"),  # and no email: this level did not ask for one
        ]
