"""Every message within its channel's documented limits, whatever the alert: normal, hostile
and oversized alerts (tests/support/hostile_alerts.py) go over the wire to real stand-ins, and
what arrives is checked against the limits (tests/support/channel_limits.py names their
sources). A page a channel refuses all the same reaches the matrix's fallback, saying so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from remediator.metrics import Metrics
from remediator.notify.base import Message
from remediator.notify.channel_support import is_web_url, truncate
from remediator.notify.email import subject
from remediator.notify.escalator import FALLBACK
from remediator.notify.mail_headers import encoded_words
from remediator.notify.outbox import OutboxSender
from remediator.notify.pagerduty import PagerDuty
from remediator.notify.slack import Slack
from remediator.policy.schema import PagerDutyChannel, SlackChannel
from remediator.store import OutboxEntry, Store
from tests.support.channel_limits import (
    ENCODED_LINE,
    ENCODED_WORD,
    ENCODED_WORD_PATTERN,
    decoded_subject,
    email_problems,
    header_names,
    longest_slack_text,
    pagerduty_problems,
    raw_header,
    slack_problems,
)
from tests.support.clocks import Clock
from tests.support.hostile_alerts import CASES, HOSTILE_URL, KB, NON_ASCII, alert, page, resolve
from tests.support.mailbox import Mailbox, plain_email
from tests.support.notify_recorder import Recorder

ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"
EVERY_CASE = [
    pytest.param(make(CASES[name]), id=f"{name}, {action}")
    for name in CASES
    for action, make in (("trigger", page), ("resolve", lambda record: resolve(page(record))))
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def pagerduty(
    pagerduty_api: Recorder, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> PagerDuty:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    config = PagerDutyChannel(routing_key_env="PD_ROUTING_KEY")
    return PagerDuty(config, session, url=f"{pagerduty_api.url}/v2/enqueue", timeout=5)


@pytest.fixture
def slack(
    slack_api: Recorder, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> Slack:
    monkeypatch.setenv("SLACK_WEBHOOK", f"{slack_api.url}/services/T000/B000/s3cret")
    return Slack(SlackChannel(webhook_url_env="SLACK_WEBHOOK"), session, timeout=5)


# Slack


@pytest.mark.parametrize("message", EVERY_CASE)
async def test_slack_keeps_every_message_within_block_kit_limits(
    slack: Slack, slack_api: Recorder, message: Message
) -> None:
    await slack.send(message)

    [request] = slack_api.requests
    assert slack_problems(request.json) == []


async def test_slack_leaves_out_a_silence_link_too_long_for_a_text_object_saying_so(
    slack: Slack, slack_api: Recorder
) -> None:
    await slack.send(page(CASES["200 labels"]))

    body = slack_api.requests[0].json
    assert longest_slack_text(body) <= 3000  # was 14,150: the silence link, every label in it
    [context] = [block for block in body["blocks"] if block["type"] == "context"]
    texts = [element["text"] for element in context["elements"]]
    assert texts[0] == "<https://runbooks.example/high-error-rate|Runbook>"
    assert texts[2].startswith("Silence: the link is 1")
    assert texts[2].endswith(" characters, too long for a Slack message")


async def test_slack_links_only_to_well_formed_urls(slack: Slack, slack_api: Recorder) -> None:
    await slack.send(page(CASES["a hostile generatorURL"]))

    [context] = [b for b in slack_api.requests[0].json["blocks"] if b["type"] == "context"]
    source = context["elements"][1]["text"]
    assert source == "Source: not a well-formed URL, left out"
    assert "x.example" not in str(slack_api.requests[0].json)


# PagerDuty


@pytest.mark.parametrize("message", EVERY_CASE)
async def test_pagerduty_keeps_every_event_within_its_limits(
    pagerduty: PagerDuty, pagerduty_api: Recorder, message: Message
) -> None:
    await pagerduty.send(message)

    [request] = pagerduty_api.requests
    assert pagerduty_problems(request.json, len(request.text.encode())) == []


async def test_pagerduty_cuts_the_largest_values_to_fit_the_event_in_512_kb(
    pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    big = alert(annotations={"description": "d" * 600 * KB, "summary": "s" * 100 * KB})
    await pagerduty.send(page(big))

    [request] = pagerduty_api.requests
    assert len(request.text.encode()) <= 512 * 1024  # was 600,556 bytes with one 600 KB value
    details = request.json["payload"]["custom_details"]
    description = details["annotations"]["description"]
    assert description.startswith("d" * 1000)
    assert description.endswith(" characters cut)")
    assert "… (truncated: " in description
    assert details["annotations"]["summary"] == "s" * 100 * KB  # the largest goes first
    assert details["labels"] == big.labels


async def test_pagerduty_sends_only_well_formed_links_and_says_which_it_left_out(
    pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    await pagerduty.send(page(CASES["a hostile generatorURL"]))

    event = pagerduty_api.requests[0].json
    assert [link["text"] for link in event["links"]] == ["Runbook", "Silence"]
    assert HOSTILE_URL not in str(event)
    assert event["payload"]["custom_details"]["links_left_out"] == {
        "Source": "not a well-formed http(s) URL"
    }


# Email


@pytest.mark.parametrize("message", EVERY_CASE)
async def test_email_keeps_every_message_within_its_limits(
    mailbox: tuple[Mailbox, int], message: Message
) -> None:
    box, port = mailbox
    await plain_email(port).send(message)

    raw = box.received[0][0].content
    assert isinstance(raw, bytes)
    assert email_problems(raw) == []
    assert decoded_subject(raw) == subject(message)
    assert sorted(header_names(raw)) == sorted(
        [
            "subject",
            "from",
            "to",
            "date",
            "message-id",
            "in-reply-to",
            "references",
            "auto-submitted",
            "content-type",
            "mime-version",
        ]
    )


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(page(alert(alertname="A" * 2000)), id="a 2,000-character ASCII name"),
        pytest.param(resolve(page(alert(alertname=NON_ASCII))), id="a non-ASCII resolve"),
        pytest.param(page(alert(alertname=f"{NON_ASCII} " * 8)), id="a long non-ASCII name"),
        pytest.param(page(alert(alertname="X\r\nBcc: victim@example.com")), id="CR/LF"),
    ],
)
async def test_email_subject_keeps_rfc_2047_limits_and_decodes_to_itself(
    mailbox: tuple[Mailbox, int], message: Message
) -> None:
    box, port = mailbox
    await plain_email(port).send(message)

    raw = box.received[0][0].content
    assert isinstance(raw, bytes)
    lines = raw_header(raw, "Subject")
    words = [word for line in lines for word in ENCODED_WORD_PATTERN.findall(line)]
    # Before: encoded-words of 77 characters on lines of 78 (python/cpython#85725).
    assert max((len(word) for word in words), default=0) <= ENCODED_WORD
    assert max(len(line) for line in lines) <= ENCODED_LINE
    assert decoded_subject(raw) == subject(message)
    assert "bcc" not in header_names(raw)


async def test_email_is_capped_at_1_mb_saying_what_was_cut(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    await plain_email(port).send(page(CASES["a 600 KB annotation"]))

    _, mail = box.mail()
    raw = box.received[0][0].content
    assert isinstance(raw, bytes)
    assert len(raw) <= 1_000_000  # was 1.6 MB: the annotation twice (text and HTML), encoded
    plain = mail.get_body(("plain",))
    assert plain is not None
    assert " characters cut)" in plain.get_content()


# A refusal


async def test_a_page_slack_refuses_as_malformed_reaches_the_matrix_fallback_saying_so(
    store: Store, slack: Slack, slack_api: Recorder, pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    clock = Clock()
    slack_api.answer_next(400, "invalid_blocks")
    refused = _outbox_entry("slack", page(CASES["normal"]), clock, fallback=["pagerduty"])
    await store.enqueue([refused])
    sender = OutboxSender(
        store, {"slack": slack, "pagerduty": pagerduty}, Metrics().notify, clock=clock
    )

    with capture_logs() as logs:
        await sender.run_once()
        await sender.run_once()

    [slack_entry] = [e for e in await store.outbox_for(refused.dedup_key) if e.channel == "slack"]
    assert slack_entry.failed_at is not None
    assert "400: invalid_blocks" in (slack_entry.last_error or "")
    [event] = [request.json for request in pagerduty_api.requests]
    assert event["payload"]["summary"].startswith(
        "Slack refused this P1 page (Slack trigger remediator/restart-api/Deployment/shop/api "
        "answered 400: invalid_blocks): it may have reached nobody there. "
    )
    [said] = [entry for entry in logs if entry["event"] == "page refused; sent to the fallback"]
    assert (said["channel"], said["fallback"], said["log_level"]) == (
        "slack",
        ["pagerduty"],
        "error",
    )


def _outbox_entry(channel: str, message: Message, clock: Clock, fallback: list[str]) -> OutboxEntry:
    text: dict[str, Any] = dataclasses.asdict(message)
    text["steps"] = list(text["steps"])
    text[FALLBACK] = fallback
    when = datetime.fromtimestamp(clock(), UTC)
    return OutboxEntry(
        message.id, channel, message.action, message.dedup_key, None, text, when, when
    )


# The shared pieces


@pytest.mark.parametrize(
    ("href", "sent"),
    [
        ("https://runbooks.example/high-error-rate", True),
        ("http://alertmanager:9093/#/silences/new?filter=%7Bpod%3D%22a%22%7D", True),
        ("http://[::1]:9090/graph?g0.expr=up", True),
        (HOSTILE_URL, False),
        ("https://x.example/a b", False),
        ("https://x.example/a\r\nb", False),
        ("https://x.example/100%", False),
        ("javascript:alert(1)", False),
        ("https:///no-host", False),
        ("http://[::1/", False),
        ("https://ноде.example/", False),
    ],
)
def test_only_well_formed_http_urls_are_sent_as_links(href: str, sent: bool) -> None:
    assert is_web_url(href) is sent


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("x" * 5000, 100, "x" * 99 + "…"),  # too short a limit to say more
        ("x" * 5000, 1000, "x" * 965 + "… (truncated: 4,035 characters cut)"),
    ],
)
def test_a_cut_text_says_how_much_was_cut(text: str, limit: int, expected: str) -> None:
    assert truncate(text, limit) == expected
    assert len(truncate(text, limit)) <= limit


def test_encoded_words_split_between_characters_and_decode_to_the_text() -> None:
    text = "✓" * 30 + "𝄞" * 30 + NON_ASCII
    lines = encoded_words(text, "Subject").split("\n")
    assert len("Subject: " + lines[0]) <= ENCODED_LINE
    assert all(len(line) <= ENCODED_LINE for line in lines)
    assert str(make_header(decode_header("".join(lines)))) == text
