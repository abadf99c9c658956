"""Channel budgets: at most N messages a channel sends per window, the rest folded into one
summary that lists them; a P1 of another alertname still goes at once; across replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.config import Settings
from remediator.metrics import Metrics
from remediator.notify.budget import ChannelBudgets
from remediator.notify.outbox import OutboxSender
from remediator.policy.loader import PolicyErrors, load_policies
from remediator.policy.schema import EscalationMatrix
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import Parts
from remediator.store import Store
from tests.support.budgets import budget_matrix, budget_matrix_text, page
from tests.support.clocks import Clock
from tests.support.escalation import Recorder
from tests.support.policies import SHIPPED_POLICIES


def sender(
    store: Store, matrix: EscalationMatrix, clock: Clock, *channels: Recorder, worker: str = "a"
) -> OutboxSender:
    metrics = Metrics().notify
    budgets = ChannelBudgets(store, lambda: matrix, metrics, clock=clock)
    named = {channel.name: channel for channel in channels}
    return OutboxSender(store, named, metrics, clock=clock, budgets=budgets, worker=worker)


async def test_past_its_budget_a_channel_folds_the_rest_into_one_summary_that_lists_them(
    store: Store,
) -> None:
    clock, slack = Clock(), Recorder("slack")
    matrix = budget_matrix(slack="3/1m")
    flood = [page("slack", "ApplicationDown", at=clock() - 1 + i / 1000) for i in range(9)]
    flood.append(page("slack", "DiskFull", at=clock() - 0.5))
    await store.enqueue(flood)
    out = sender(store, matrix, clock, slack)
    await out.run_once()
    assert [m.alertname for m in slack.sent] == ["ApplicationDown"] * 3
    clock.advance(30)
    later = [page("slack", "DiskFull", at=clock() - 1 + i / 1000) for i in range(3)]
    await store.enqueue(later)  # folded together: the channel is known to be full
    await out.run_once()
    assert len(slack.sent) == 3  # the summary waits for the budget
    clock.advance(30)
    await out.run_once()
    summary = slack.sent[-1]
    assert len(slack.sent) == 4
    assert summary.summary == (
        "ApplicationDown and 9 more folded past the Slack budget (3/1m): ApplicationDown 6,"
        " DiskFull 4"
    )
    assert summary.level == "P2"
    folds = await store.folds(10)
    assert [(f.summary, f.channel, f.messages) for f in folds] == [(summary.id, "slack", 10)]
    listed = await store.folded_into(summary.id)
    assert [m.id for m in listed] == [e.id for e in [*flood[3:], *later]]
    clock.advance(3600)
    await out.run_once()
    assert len(slack.sent) == 4  # each folded message is done: never sent, nor summarised again


async def test_a_p1_of_another_alertname_goes_at_once_past_the_budget_and_the_fold_is_a_p1(
    store: Store,
) -> None:
    clock, pagerduty = Clock(), Recorder("pagerduty")
    matrix = budget_matrix(pagerduty="2/1m")
    flood = [page("pagerduty", "Flood", level="P1", at=clock() - 1 + i / 1000) for i in range(20)]
    await store.enqueue(flood)
    out = sender(store, matrix, clock, pagerduty)
    await out.run_once()
    clock.advance(5)
    real = page("pagerduty", "DatabaseDown", level="P1", at=clock())
    await store.enqueue([real])
    await out.run_once()
    # Two within the budget, the flood's first page past it, then the real incident at once.
    assert [m.alertname for m in pagerduty.sent] == ["Flood", "Flood", "Flood", "DatabaseDown"]
    clock.advance(60)
    await out.run_once()
    summary = pagerduty.sent[-1]
    assert summary.level == "P1"
    assert summary.summary.startswith("Flood and 16 more folded past the PagerDuty budget (2/1m)")
    sent_ids = {m.id for m in pagerduty.sent}
    folded = {m.id for m in await store.folded_into(summary.id)}
    assert sent_ids | folded == {e.id for e in [*flood, real]} | {summary.id}
    assert not sent_ids & folded


async def test_the_budget_holds_across_replicas_and_each_message_is_sent_or_folded_once(
    store: Store,
) -> None:
    clock = Clock()
    matrix = budget_matrix(slack="5/1m")
    flood = [page("slack", "Flood", at=clock() - 1 + i / 1000) for i in range(60)]
    await store.enqueue(flood)
    replicas = [Recorder("slack") for _ in range(3)]
    senders = [
        sender(store, matrix, clock, slack, worker=f"replica-{n}")
        for n, slack in enumerate(replicas)
    ]
    for _ in range(3):
        await asyncio.gather(*(out.run_once() for out in senders))
    sent = [m for slack in replicas for m in slack.sent]
    assert len(sent) == 5
    clock.advance(60)
    for _ in range(2):
        await asyncio.gather(*(out.run_once() for out in senders))
    summaries = [m for slack in replicas for m in slack.sent if m.outcome == "folded"]
    assert len(summaries) == 1
    folded = [m.id for m in await store.folded_into(summaries[0].id)]
    assert len(folded) == 55
    assert sorted([m.id for m in sent] + folded) == sorted(e.id for e in flood)


async def test_a_fold_that_a_crash_left_without_its_summary_is_taken_in_by_the_next(
    store: Store,
) -> None:
    clock, slack = Clock(), Recorder("slack")
    matrix = budget_matrix(slack="1/1m")
    first, second = (page("slack", "Flood", at=clock() - 1 + i / 1000) for i in range(2))
    await store.enqueue([first, second])
    # A folded message whose summary was never queued (the replica died in between).
    folded = await store.fold([second.id], first.created_at, "folded past the Slack budget")
    assert folded == {second.id}
    await sender(store, matrix, clock, slack).run_once()
    late = page("slack", "Flood", at=clock() + 1)
    await store.enqueue([late])
    clock.advance(2)
    await sender(store, matrix, clock, slack).run_once()
    clock.advance(60)
    await sender(store, matrix, clock, slack).run_once()
    assert [m.outcome for m in slack.sent] == ["no_match", "folded"]
    listed = await store.folded_into(slack.sent[-1].id)
    assert {m.id for m in listed} == {second.id, late.id}


@pytest.mark.parametrize(
    ("budget", "error"),
    [
        ("lots", "channels.slack.budget: expected a budget such as 30/1m"),
        ("0/1m", "channels.slack.budget.count: Input should be greater than or equal to 1"),
        ("30/2h", "channels.slack.budget.per: a budget's window lasts from 1s to 1h"),
    ],
)
def test_a_bad_budget_is_refused_naming_the_file_and_line(
    tmp_path: Path, budget: str, error: str
) -> None:
    directory = tmp_path
    for policy in SHIPPED_POLICIES.iterdir():
        if policy.suffix == ".yaml":
            (directory / policy.name).write_text(policy.read_text())
    (directory / "escalation.yaml").write_text(budget_matrix_text(slack=budget))
    with pytest.raises(PolicyErrors) as raised:
        load_policies(directory)
    text = str(raised.value)
    assert "escalation.yaml:" in text
    assert error in text


async def test_the_api_lists_the_folds_and_every_message_of_one(
    database_url: str, store: Store, live_policies: LivePolicies
) -> None:
    clock, slack = Clock(), Recorder("slack")
    flood = [page("slack", "ApplicationDown", at=clock() - 1 + i / 1000) for i in range(5)]
    await store.enqueue(flood)
    out = sender(store, budget_matrix(slack="2/1m"), clock, slack)
    await out.run_once()
    settings = Settings(database_url=database_url, webhook_token="w", api_token="ops")
    token = {"Authorization": "Bearer ops"}
    app = Parts.of(settings, store, live_policies, Metrics()).application()
    async with TestClient(TestServer(app)) as api:
        pending = await (await api.get("/api/v1/folds", headers=token)).json()
        assert pending == {
            "folds": [{"summary": None, "channel": "slack", "messages": 3, "sent": None}]
        }
        clock.advance(60)
        await out.run_once()
        [summary] = [m.id for m in slack.sent if m.outcome == "folded"]
        [fold] = (await (await api.get("/api/v1/folds", headers=token)).json())["folds"]
        assert (fold["summary"], fold["messages"]) == (summary, 3)
        answer = await api.get(f"/api/v1/folds/{summary}?limit=2&offset=1", headers=token)
        listed = (await answer.json())["messages"]
        assert [m["id"] for m in listed] == [e.id for e in flood[3:]]
        assert {m["alertname"] for m in listed} == {"ApplicationDown"}
        assert (await api.get("/api/v1/folds/nope", headers=token)).status == 404
        assert (await api.get("/api/v1/folds?limt=3", headers=token)).status == 400
        assert (await api.get("/api/v1/folds", headers={})).status == 401
