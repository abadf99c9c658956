"""What a page says: it stands on its own (issue 18, "Messages").

Each case runs the alert through the real dispatcher and runner over a real store, and renders
the message the outbox holds as each channel sends it: the alert's summary and description,
where it is, the severity and why, each step with its outcome, what happens next, the run id
and a link to the run, each said once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.notify.base import Message
from remediator.notify.email import Email
from remediator.notify.escalator import dedup_key
from remediator.notify.outbox import message_of
from remediator.notify.pagerduty import PagerDuty
from remediator.notify.slack import Slack
from remediator.policy.schema import PagerDutyChannel, SlackChannel
from remediator.store import Store
from tests.support.escalation import KEY
from tests.support.mailbox import email_config
from tests.support.world import POLICY, World, open_world, write_policies

EXTERNAL = "https://remediator.example.com"
DISK = {"alertname": "DiskAlmostFull", "instance": "node-3", "severity": "critical"}
DISK_SAID = {"summary": "disk / at 93%", "description": "/ on node-3 fills within 4h"}


@pytest.fixture
async def linked_world(store: Store, tmp_path: Path) -> AsyncIterator[World]:
    """The world, with REMEDIATOR_EXTERNAL_URL set."""
    policies = write_policies(tmp_path / "policies", POLICY)
    async with open_world(store, policies, external_url=EXTERNAL) as world:
        yield world


@pytest.fixture
async def channels(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Slack, PagerDuty, Email]]:
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.example/services/T/B/x")
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    async with aiohttp.ClientSession() as session:
        yield (
            Slack(SlackChannel(webhook_url_env="SLACK_URL"), session),
            PagerDuty(PagerDutyChannel(routing_key_env="PD_KEY"), session),
            Email(email_config(25)),
        )


async def pages(world: World, key: str) -> list[Message]:
    """The triggers queued for the incident, as the channels are given them."""
    return [
        message_of(entry)
        for entry in await world.store.outbox_for(key)
        if entry.action == "trigger" and entry.channel in ("slack", "pagerduty", "email")
    ]


def plain(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert isinstance(text, str)
    return text


def slack_text(body: dict[str, Any]) -> str:
    """Everything a Slack message shows, its blocks' texts and fields, one a line (not its
    `text`, what a notification shows instead)."""
    texts = []
    for block in body["blocks"]:
        if isinstance(block.get("text"), dict):
            texts.append(block["text"]["text"])
        texts += [field["text"] for field in block.get("fields", [])]
        texts += [element["text"] for element in block.get("elements", [])]
    return "\n".join(texts)


async def test_a_page_for_an_alert_no_policy_matches_says_where_and_what_once(
    world: World, channels: tuple[Slack, PagerDuty, Email]
) -> None:
    """The issue's page was all of "[P1] DiskAlmostFull: DiskAlmostFull: no policy matches: no
    policy matches: escalate only": no instance, no summary, and everything twice."""
    slack, pagerduty, email = channels
    await world.post_alert(DISK, annotations=DISK_SAID)
    await world.dispatcher.run_once()
    [run] = await world.runs()
    [message, *_] = await pages(world, dedup_key(run))

    headline = "DiskAlmostFull on node-3: disk / at 93% — no policy matches: escalate only"
    body = slack.body(message)
    assert body["text"] == f"[P1] {headline}"
    event = pagerduty.event(message)["payload"]
    assert event["summary"] == headline
    assert email.compose(message)["Subject"] == f"[P1] {headline}"
    shown = slack_text(body)
    assert shown.count("no policy matches") == 1
    assert "/ on node-3 fills within 4h" in shown  # the description
    assert "*Instance*\nnode-3" in shown
    why = "no policy matched: the alert's severity label 'critical' maps to P1"
    assert f"*Severity*\nP1 ({why})" in shown
    assert "Next: paging P1: a person must act" in shown
    assert f"*Run*\n{run.id}" in shown
    details = event["custom_details"]
    assert details["summary"] == "disk / at 93%"
    assert details["description"] == "/ on node-3 fills within 4h"
    assert details["instance"] == "node-3"
    assert details["severity"] == f"P1 ({why})"
    assert details["next"] == "paging P1: a person must act"
    assert details["run_id"] == run.id


async def test_a_page_carries_the_alert_s_summary_and_each_step_with_its_outcome(
    world: World, channels: tuple[Slack, PagerDuty, Email]
) -> None:
    """The ApplicationDown page lacked "claude-manager is down"."""
    slack, pagerduty, email = channels
    world.application.fix_status = 400
    await world.post("firing", annotations={"summary": "claude-manager is down"})
    await world.dispatcher.run_once()

    [slack_page, email_page] = await pages(world, KEY)
    body = slack.body(slack_page)
    assert body["text"] == (
        "[P2] AppDown on Application/-/shop: claude-manager is down — remediation failed: "
        f"http.request: PUT http://{world.instance}/admin/fix answered 400"
    )
    assert "• http.check: failed — " in slack_text(body)
    text = plain(email.compose(email_page))
    assert text.startswith("[P2] AppDown on Application/-/shop: claude-manager is down — ")
    assert "  - http.request: failed — PUT " in text
    assert "Severity: P2 (policy probe-and-fix sets severity P2)" in text
    assert (
        "Next: paging P2: a person must act; climbs to P1 1h after the first page if still open"
    ) in text
    summary = pagerduty.event(email_page)["payload"]["summary"]
    assert "claude-manager is down" in summary


async def test_a_page_links_its_run_at_the_external_url(
    linked_world: World, channels: tuple[Slack, PagerDuty, Email]
) -> None:
    slack, pagerduty, email = channels
    linked_world.application.fix_status = 400
    await linked_world.post("firing")
    await linked_world.dispatcher.run_once()
    [run] = await linked_world.runs()

    link = f"{EXTERNAL}/ui/runs/{run.id}"
    [slack_page, email_page] = await pages(linked_world, KEY)
    assert f"<{link}|Run>" in slack_text(slack.body(slack_page))
    assert f"Run: {link}" in plain(email.compose(email_page))
    event = pagerduty.event(email_page)
    assert {"href": link, "text": "Run"} in event["links"]
    assert event["payload"]["custom_details"]["run_url"] == link


async def test_a_page_while_a_fix_is_verified_says_until_when(
    store: Store, tmp_path: Path, channels: tuple[Slack, PagerDuty, Email]
) -> None:
    """A P1 pages while the fix runs, and is updated once the fix is applied: it says how
    long it is verified for, and what happens then."""
    slack, _, _ = channels
    policies = write_policies(tmp_path / "policies", POLICY.replace("severity: P2", "severity: P1"))
    async with open_world(store, policies) as world:
        await world.post("firing", annotations={"summary": "claude-manager is down"})
        await world.dispatcher.run_once()
        [run] = await world.runs()
        verifying, *_ = [m for m in await pages(world, KEY) if m.outcome == "verifying"]

    assert run.verify_until is not None
    until = run.verify_until.strftime("%H:%M UTC")
    assert verifying.next == (
        f"verifying until {until}: resolved when the alert clears; "
        "paged as failed if it still fires then"
    )
    assert f"Next: {verifying.next}" in slack_text(slack.body(verifying))


async def test_the_resolve_says_nothing_more_happens(world: World) -> None:
    world.application.fix_status = 400
    await world.post("firing")
    await world.dispatcher.run_once()
    world.application.fix_status = 200
    await world.post("resolved")
    await world.dispatcher.run_once()

    entries = await world.store.outbox_for(KEY)
    [resolve, *_] = [message_of(entry) for entry in entries if entry.action == "resolve"]
    assert resolve.next == "nothing more: the incident is closed"
