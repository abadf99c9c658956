"""The service's own metrics: `remediator_policy_runs_total` when a firing run of a policy
ends, and the backlog read from the store at each scrape (events queued, messages unsent per
channel, runs in flight, the kill switch), with the oldest one's age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from remediator.alerts import Notification
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary
from remediator.store import OutboxEntry, Pause, Remediation, Store
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import World

Client = TestClient[Any, Any]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Each sample of an exposition, by name and its labels (sorted)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def policy_runs(world: World) -> dict[tuple[str, str], float]:
    found = {}
    for family in world.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "remediator_policy_runs_total":
                found[(sample.labels["policy"], sample.labels["outcome"])] = sample.value
    return found


async def test_a_policy_run_is_counted_by_its_outcome_when_it_ends(world: World) -> None:
    world.application.healthy = False
    await world.post("firing", "2027-01-15T08:00:00Z")
    await world.dispatcher.run_once()
    assert policy_runs(world) == {}  # verifying: not ended yet
    world.clock.advance(120)
    await world.post("resolved", "2027-01-15T08:00:00Z")
    await world.dispatcher.run_once()
    # The on_resolved undo is not a run of the policy's fix: not counted.
    assert policy_runs(world) == {("probe-and-fix", "succeeded"): 1.0}

    world.application.fix_status = 500
    await world.post("firing", "2027-01-15T09:00:00Z")
    await world.dispatcher.run_once()
    assert policy_runs(world) == {
        ("probe-and-fix", "succeeded"): 1.0,
        ("probe-and-fix", "failed"): 1.0,
    }


def message(entry_id: str, channel: str, due: datetime, **state: Any) -> OutboxEntry:
    text = {"action": "trigger", "summary": entry_id}
    return OutboxEntry(entry_id, channel, "trigger", "k", None, text, due, due, **state)


def running(remediation_id: str, outcome: RunOutcome, at: datetime) -> Remediation:
    return Remediation(
        remediation_id, 1, "fp", at, "AppDown", "firing", "p", None, outcome, None, "", None,
        "t", PlanSummary(), at,
    )  # fmt: skip


async def test_metrics_show_the_backlog_and_the_oldest_age(client: Client, store: Store) -> None:
    now = datetime.now(UTC)
    starts = "2027-01-15T08:00:00Z"
    labels = [{"alertname": "A", "n": str(n)} for n in range(3)]
    alerts = [webhook_alert(one, fingerprint=one["n"], starts_at=starts) for one in labels]
    body = Notification.model_validate(webhook(*alerts))
    await store.record_notification(body, b"{}", now - timedelta(minutes=5))
    await store.enqueue(
        [
            message("p1", "pagerduty", now - timedelta(minutes=20)),
            message("p2", "pagerduty", now - timedelta(minutes=1)),
            message("s1", "slack", now - timedelta(minutes=3), attempts=2),
            message("digest", "email", now + timedelta(hours=3)),  # waits for its hour
            message("climb", "ladder", now - timedelta(hours=1)),  # the outbox's own
        ]
    )
    await store.outbox_done("p2", sent_at=now)
    for n, outcome in enumerate([RunOutcome.RUNNING, RunOutcome.VERIFYING, RunOutcome.FAILED]):
        await store.save_remediation(running(f"r{n}", outcome, now))
    await store.set_pause(Pause("db migration", "alice", now - timedelta(hours=2)))

    found = samples(await (await client.get("/metrics")).text())

    assert found[("remediator_events_pending", ())] == 3
    assert 300 <= found[("remediator_events_oldest_pending_seconds", ())] < 360
    unsent = {
        labels[0][1]: value
        for (name, labels), value in found.items()
        if name == "remediator_messages_unsent"
    }
    assert unsent == {"pagerduty": 1, "slack": 1}
    age = "remediator_messages_oldest_unsent_seconds"
    assert 1200 <= found[(age, (("channel", "pagerduty"),))] < 1260
    assert 180 <= found[(age, (("channel", "slack"),))] < 240
    flying = "remediator_runs_in_flight"
    assert found[(flying, (("state", "running"),))] == 1
    assert found[(flying, (("state", "verifying"),))] == 1
    assert found[(flying, (("state", "waiting"),))] == 0
    assert found[("remediator_paused", ())] == 1
    assert 7200 <= found[("remediator_paused_seconds", ())] < 7260

    await store.outbox_done("p1", sent_at=now)  # sent: its channel's gauges go back to 0
    await store.set_pause(None)
    found = samples(await (await client.get("/metrics")).text())
    assert found[("remediator_messages_unsent", (("channel", "pagerduty"),))] == 0
    assert found[(age, (("channel", "pagerduty"),))] == 0
    assert (found[("remediator_paused", ())], found[("remediator_paused_seconds", ())]) == (0, 0)
