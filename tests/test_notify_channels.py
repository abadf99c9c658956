"""The PagerDuty, Slack and email channels against real servers: what goes over the wire.

PagerDuty and Slack post to a recording aiohttp server (tests/support/notify_recorder.py);
email goes to a real aiosmtpd server on loopback (tests/support/mailbox.py). The exact Events
API v2 bodies are asserted, since PagerDuty deduplicates on them; failures are sorted into "try
again later" and "never" as the outbox needs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import LoginPassword
from structlog.testing import capture_logs

from remediator.notify.base import Message, PermanentFailure, StepLine, TransientFailure
from remediator.notify.channel_support import ChannelNotConfigured, retry_after
from remediator.notify.email import Email
from remediator.notify.pagerduty import PagerDuty
from remediator.notify.slack import SECTION_LIMIT, Slack
from remediator.policy.schema import PagerDutyChannel, SlackChannel
from tests.support.mailbox import Mailbox, email_config, plain_email
from tests.support.notify_recorder import Recorder
from tests.support.services import free_port

ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"


def message(**changes: Any) -> Message:
    base = Message(
        id="0b6f3c1e-7d7e-4c43-9d7a-1f0e2b9f4a10",
        action="trigger",
        dedup_key="remediator/restart-api/Deployment/shop/api",
        level="P2",
        summary="HighErrorRate on shop/api: restart failed, still 12% errors",
        alertname="HighErrorRate",
        status="firing",
        labels={"alertname": "HighErrorRate", "namespace": "shop", "instance": "api-0:8080"},
        annotations={"description": "5xx above 5% for 10m"},
        policy="restart-api",
        target="Deployment/shop/api",
        outcome="failed",
        reason="error rate still above threshold after restart",
        steps=(
            StepLine("http.check", "failed", "https://api.shop/healthz answered 503"),
            StepLine("kubernetes.rollout_restart", "ok", "restarted deployment shop/api"),
        ),
        links={"Runbook": "https://runbooks.example/high-error-rate"},
    )
    return dataclasses.replace(base, **changes)


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
    return PagerDuty(config, session, url=f"{pagerduty_api.url}/v2/enqueue", timeout=2)


@pytest.fixture
def slack(
    slack_api: Recorder, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> Slack:
    monkeypatch.setenv("SLACK_WEBHOOK", f"{slack_api.url}/services/T000/B000/s3cret")
    return Slack(SlackChannel(webhook_url_env="SLACK_WEBHOOK"), session, timeout=2)


# PagerDuty


async def test_pagerduty_trigger_is_an_events_api_v2_event(
    pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    await pagerduty.send(message())

    [request] = pagerduty_api.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "remediator/restart-api/Deployment/shop/api",
        "payload": {
            "summary": "HighErrorRate on shop/api: restart failed, still 12% errors",
            "source": "Deployment/shop/api",
            "severity": "error",
            "component": "Deployment/shop/api",
            "group": "restart-api",
            "class": "HighErrorRate",
            "custom_details": {
                "description": "5xx above 5% for 10m",
                "instance": "api-0:8080",
                "namespace": "shop",
                "target": "Deployment/shop/api",
                "severity": "P2",
                "outcome": "failed",
                "reason": "error rate still above threshold after restart",
                "steps": [
                    {
                        "action": "http.check",
                        "outcome": "failed",
                        "message": "https://api.shop/healthz answered 503",
                    },
                    {
                        "action": "kubernetes.rollout_restart",
                        "outcome": "ok",
                        "message": "restarted deployment shop/api",
                    },
                ],
                "labels": {
                    "alertname": "HighErrorRate",
                    "namespace": "shop",
                    "instance": "api-0:8080",
                },
                "annotations": {"description": "5xx above 5% for 10m"},
            },
        },
        "links": [{"href": "https://runbooks.example/high-error-rate", "text": "Runbook"}],
        "client": "Remediator",
    }


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_pagerduty_takes_any_2xx_as_sent(
    pagerduty: PagerDuty, pagerduty_api: Recorder, status: int
) -> None:
    """PagerDuty documents 202; a proxy or another region may answer 200 or 201: sent."""
    pagerduty_api.answer_next(status, {"status": "success", "message": "Event processed"})
    await pagerduty.send(message())  # raises for an answer it does not take

    assert len(pagerduty_api.requests) == 1


async def test_pagerduty_resolve_names_only_the_incident(
    pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    await pagerduty.send(message(action="resolve", status="resolved", outcome="succeeded"))

    assert [r.json for r in pagerduty_api.requests] == [
        {
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "remediator/restart-api/Deployment/shop/api",
        }
    ]


async def test_every_replica_sends_the_same_dedup_key(
    pagerduty: PagerDuty, pagerduty_api: Recorder, session: aiohttp.ClientSession
) -> None:
    other_replica = PagerDuty(
        PagerDutyChannel(routing_key_env="PD_ROUTING_KEY"),
        session,
        url=f"{pagerduty_api.url}/v2/enqueue",
    )
    long_key = "remediator/" + "very-long-policy-name/" * 20
    await pagerduty.send(message(id="first"))
    await other_replica.send(message(id="second", summary="restart failed again"))
    await pagerduty.send(message(dedup_key=long_key))
    await other_replica.send(message(dedup_key=long_key, action="resolve"))
    await pagerduty.send(message(dedup_key="remediator/alert/DiskFull/abc123"))

    keys = [r.json["dedup_key"] for r in pagerduty_api.requests]
    assert keys[0] == keys[1] == "remediator/restart-api/Deployment/shop/api"
    assert keys[2] == keys[3] != keys[0]
    assert len(keys[2]) <= 255  # PagerDuty's limit: cut, but the same on every replica
    assert keys[4] == "remediator/alert/DiskFull/abc123"
    await pagerduty.send(message(dedup_key="k" * 255))
    assert pagerduty_api.requests[-1].json["dedup_key"] == "k" * 255  # fits: kept as it is


@pytest.mark.parametrize(
    ("level", "severity"),
    [("P1", "critical"), ("P2", "error"), ("P3", "warning"), ("P4", "info")],
)
async def test_pagerduty_severity_follows_the_level(
    pagerduty: PagerDuty, pagerduty_api: Recorder, level: str, severity: str
) -> None:
    await pagerduty.send(message(level=level))

    assert pagerduty_api.requests[0].json["payload"]["severity"] == severity


@pytest.mark.parametrize(
    ("target", "labels", "source"),
    [
        ("Deployment/shop/api", {"instance": "api-0:8080", "job": "api"}, "Deployment/shop/api"),
        (None, {"instance": "api-0:8080", "job": "api"}, "api-0:8080"),
        (None, {"job": "api"}, "api"),
        (None, {}, "HighErrorRate"),
    ],
)
async def test_pagerduty_source_is_the_target_or_the_alerts_instance(
    pagerduty: PagerDuty,
    pagerduty_api: Recorder,
    target: str | None,
    labels: dict[str, str],
    source: str,
) -> None:
    await pagerduty.send(message(target=target, policy=None, labels=labels))

    payload = pagerduty_api.requests[0].json["payload"]
    assert payload["source"] == source
    assert "group" not in payload  # no policy matched: no null for PagerDuty to refuse
    assert ("component" in payload) is (target is not None)


async def test_pagerduty_summary_is_cut_to_1024_characters(
    pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    await pagerduty.send(message(summary="x" * 5000))

    summary = pagerduty_api.requests[0].json["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("x… (truncated: 4,011 characters cut)")  # it says how much


async def test_pagerduty_refusal_is_permanent_and_says_why(
    pagerduty: PagerDuty, pagerduty_api: Recorder
) -> None:
    pagerduty_api.answer_next(
        400,
        {
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
        },
    )

    with pytest.raises(PermanentFailure) as failure:
        await pagerduty.send(message())
    assert str(failure.value) == (
        "PagerDuty trigger remediator/restart-api/Deployment/shop/api answered 400: "
        "Event object is invalid; Length of 'routing_key' is incorrect (should be 32 characters)"
    )


async def test_slow_pagerduty_is_a_transient_failure(
    session: aiohttp.ClientSession, pagerduty_api: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    config = PagerDutyChannel(routing_key_env="PD_ROUTING_KEY")
    impatient = PagerDuty(config, session, url=f"{pagerduty_api.url}/v2/enqueue", timeout=0.2)
    pagerduty_api.hold_next()

    with pytest.raises(TransientFailure) as failure:
        await impatient.send(message())
    assert failure.value.retry_after is None


# Slack


async def test_slack_posts_block_kit_to_the_webhook(slack: Slack, slack_api: Recorder) -> None:
    await slack.send(message())

    [request] = slack_api.requests
    assert (request.method, request.path) == ("POST", "/services/T000/B000/s3cret")
    body = request.json
    assert body["text"] == "[P2] HighErrorRate on shop/api: restart failed, still 12% errors"
    header, summary, steps, links = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "P2 HighErrorRate", "emoji": True},
    }
    assert summary["type"] == "section"
    assert summary["text"]["text"] == (
        "HighErrorRate on shop/api: restart failed, still 12% errors\n"
        "Description: 5xx above 5% for 10m\n"
        "Reason: error rate still above threshold after restart"
    )
    assert [field["text"] for field in summary["fields"]] == [
        "*Severity*\nP2",
        "*Outcome*\nfailed",
        "*Policy*\nrestart-api",
        "*Instance*\napi-0:8080",
        "*Namespace*\nshop",
        "*Target*\nDeployment/shop/api",
    ]
    assert steps == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Steps*\n"
            "• http.check: failed — https://api.shop/healthz answered 503\n"
            "• kubernetes.rollout_restart: ok — restarted deployment shop/api",
        },
    }
    assert links == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "<https://runbooks.example/high-error-rate|Runbook>"}
        ],
    }


async def test_slack_escapes_what_could_mention_or_link(slack: Slack, slack_api: Recorder) -> None:
    await slack.send(
        message(
            summary="ping <!channel> & <https://evil.example|click>",
            steps=(StepLine("http.check", "failed", "<script>alert(1)</script>"),),
        )
    )

    sent = slack_api.requests[0].text
    assert "<!channel>" not in sent
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in sent
    assert "&lt;script&gt;" in sent


async def test_slack_resolve_is_a_new_message(slack: Slack, slack_api: Recorder) -> None:
    await slack.send(message(action="resolve", status="resolved", outcome="succeeded", steps=()))

    body = slack_api.requests[0].json
    assert body["text"].startswith("Resolved: [P2] HighErrorRate on shop/api: ")
    assert body["blocks"][0]["text"]["text"] == "Resolved: P2 HighErrorRate"
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "context"]


async def test_slack_keeps_within_its_block_limits(slack: Slack, slack_api: Recorder) -> None:
    many = tuple(StepLine(f"step-{n}", "failed", "e" * 200) for n in range(40))
    await slack.send(message(alertname="A" * 400, summary="s" * 4000, steps=many))

    header, summary, steps, _ = slack_api.requests[0].json["blocks"]
    assert len(header["text"]["text"]) == 150
    assert len(summary["text"]["text"]) <= SECTION_LIMIT
    text = steps["text"]["text"]
    assert len(text) <= SECTION_LIMIT
    assert "• step-0: failed" in text
    shown = text.count("• step-")
    assert 0 < shown < 40
    assert text.endswith(f"… and {40 - shown} more")


async def test_slack_rate_limit_carries_retry_after(slack: Slack, slack_api: Recorder) -> None:
    slack_api.answer_next(429, "rate_limited", headers={"Retry-After": "7"})

    with pytest.raises(TransientFailure) as failure:
        await slack.send(message())
    assert failure.value.retry_after == 7


async def test_slack_refusal_is_permanent_with_slacks_reason(
    slack: Slack, slack_api: Recorder
) -> None:
    slack_api.answer_next(400, "invalid_blocks")

    with pytest.raises(PermanentFailure, match="400: invalid_blocks"):
        await slack.send(message())


async def test_slack_failures_do_not_reveal_the_webhook(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK", f"http://127.0.0.1:{free_port()}/services/T/B/s3cret")
    slack = Slack(SlackChannel(webhook_url_env="SLACK_WEBHOOK"), session)

    with pytest.raises(TransientFailure) as failure:
        await slack.send(message())
    assert "s3cret" not in str(failure.value)
    assert "s3cret" not in str(slack.describe())


# Both HTTP channels


@pytest.fixture(params=["pagerduty", "slack"])
def http_channel(request: pytest.FixtureRequest) -> tuple[PagerDuty | Slack, Recorder]:
    recorder: Recorder = request.getfixturevalue(f"{request.param}_api")
    channel: PagerDuty | Slack = request.getfixturevalue(request.param)
    return channel, recorder


@pytest.mark.parametrize(
    ("status", "headers", "retry"),
    [
        (429, {"Retry-After": "7"}, 7.0),
        (429, {}, None),
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0.0),
    ],
)
async def test_try_again_later(
    http_channel: tuple[PagerDuty | Slack, Recorder],
    status: int,
    headers: dict[str, str],
    retry: float | None,
) -> None:
    channel, recorder = http_channel
    recorder.answer_next(status, "busy", headers=headers)

    with pytest.raises(TransientFailure, match=f"answered {status}") as failure:
        await channel.send(message())
    if status == 429:
        assert failure.value.retry_after == retry
    await channel.send(message())  # one attempt each: the next one goes through
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(("status", "body"), [(400, "invalid_payload"), (404, "no_service")])
async def test_never_again(
    http_channel: tuple[PagerDuty | Slack, Recorder], status: int, body: str
) -> None:
    channel, recorder = http_channel
    recorder.answer_next(status, body)

    with pytest.raises(PermanentFailure, match=f"{status}: {body}"):
        await channel.send(message())
    assert len(recorder.requests) == 1


async def test_closed_port_is_a_transient_failure(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    closed = f"http://127.0.0.1:{free_port()}/v2/enqueue"
    channel = PagerDuty(PagerDutyChannel(routing_key_env="PD_ROUTING_KEY"), session, url=closed)

    with pytest.raises(TransientFailure, match="Cannot connect"):
        await channel.send(message())


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("7") == 7
    assert retry_after("1.5") == 1.5
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past: now
    assert 3590 < (retry_after(_http_date_in(3600)) or 0) <= 3600
    assert retry_after("soon") is None
    assert retry_after(None) is None


def _http_date_in(seconds: int) -> str:
    from email.utils import formatdate
    from time import time

    return formatdate(time() + seconds, usegmt=True)


# Configuration


async def test_a_missing_secret_names_its_variable(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("PD_KEY", "SLACK_URL", "SMTP_USER"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SMTP_PASSWORD", "pw")

    with pytest.raises(ChannelNotConfigured, match="PD_KEY"):
        PagerDuty(PagerDutyChannel(routing_key_env="PD_KEY"), session)
    with pytest.raises(ChannelNotConfigured, match="SLACK_URL"):
        Slack(SlackChannel(webhook_url_env="SLACK_URL"), session)
    with pytest.raises(ChannelNotConfigured, match="SMTP_USER"):
        Email(email_config(587, username_env="SMTP_USER", password_env="SMTP_PASSWORD"))
    monkeypatch.setenv("SLACK_URL", "hooks.slack.com/services/T/B/x")
    with pytest.raises(ChannelNotConfigured, match="SLACK_URL is not a URL"):
        Slack(SlackChannel(webhook_url_env="SLACK_URL"), session)
    assert issubclass(ChannelNotConfigured, ValueError)


def test_describe_leaves_secrets_out(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.com/services/T/B/s3cret")
    monkeypatch.setenv("SMTP_USER", "remediator")
    monkeypatch.setenv("SMTP_PASSWORD", "pa55word")

    described = [
        PagerDuty(PagerDutyChannel(routing_key_env="PD_KEY"), session).describe(),
        Slack(SlackChannel(webhook_url_env="SLACK_URL"), session).describe(),
        Email(email_config(587, username_env="SMTP_USER", password_env="SMTP_PASSWORD")).describe(),
    ]
    text = repr(described)
    for secret in (ROUTING_KEY, "s3cret", "pa55word"):
        assert secret not in text
    assert described[0]["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert described[1]["host"] == "hooks.slack.com"
    assert described[2]["tls"] == "starttls"  # port 587
    assert Email(email_config(465)).describe()["tls"] == "tls"
    assert Email(email_config(25)).describe()["tls"] == "none"


# Email


async def test_email_carries_the_same_content_as_text_and_html(
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    labels = {"alertname": "HighErrorRate", "pod": "<script>alert(1)</script>"}
    steps = (*message().steps, StepLine("http.request", "failed", "answered <b>502</b> & died"))
    await plain_email(port).send(message(labels=labels, steps=steps))

    envelope, mail = box.mail()
    assert envelope.mail_from == "remediator@example.com"
    assert envelope.rcpt_tos == ["oncall@example.com", "sre@example.com"]
    assert mail["From"] == "Remediator <remediator@example.com>"
    assert mail["To"] == "oncall@example.com, sre@example.com"
    assert mail["Subject"] == "[P2] HighErrorRate on shop/api: restart failed, still 12% errors"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(("plain",))
    rich = mail.get_body(("html",))
    assert plain is not None
    assert rich is not None
    text, markup = plain.get_content(), rich.get_content()
    for content in (text, markup):
        assert "restart failed, still 12% errors" in content
        assert "error rate still above threshold after restart" in content
        assert "kubernetes.rollout_restart" in content
        assert "restarted deployment shop/api" in content
        assert "5xx above 5% for 10m" in content
        assert "https://runbooks.example/high-error-rate" in content
    assert "pod: <script>alert(1)</script>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "answered <b>502</b> & died" in text
    assert "answered &lt;b&gt;502&lt;/b&gt; &amp; died" in markup
    assert "<script>" not in markup
    assert "<b>502" not in markup
    assert '<a href="https://runbooks.example/high-error-rate">Runbook</a>' in markup


async def test_email_threads_trigger_and_resolve(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    channel = plain_email(port)
    trigger = message()
    await channel.send(trigger)
    await channel.send(trigger)  # the outbox re-sending an entry
    await channel.send(message(id="resolve-1", action="resolve", status="resolved"))
    await channel.send(message(id="other", dedup_key="remediator/other/x"))

    mails = [box.mail(n)[1] for n in range(4)]
    first, again, resolved, unrelated = mails
    assert first["Message-ID"] == f"<{trigger.id}.notify@example.com>"
    assert again["Message-ID"] == first["Message-ID"]
    assert resolved["Message-ID"] == "<resolve-1.notify@example.com>"
    # folded onto a second line (over 78 characters): unfolded, it begins with a space
    assert resolved["Subject"].lstrip().startswith("[resolved] HighErrorRate on shop/api: ")
    thread = first["References"]
    assert thread.endswith(".incident@example.com>")
    assert first["In-Reply-To"] == thread
    assert resolved["In-Reply-To"] == resolved["References"] == thread
    assert unrelated["References"] != thread
    assert channel.message_id(message(id="")) != channel.message_id(message(id=""))


async def test_email_logs_in_when_configured(
    mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = mailbox
    monkeypatch.setenv("SMTP_USER", "remediator")
    monkeypatch.setenv("SMTP_PASSWORD", "pa55word")

    await plain_email(port).send(message())
    await plain_email(port, username_env="SMTP_USER", password_env="SMTP_PASSWORD").send(message())

    assert box.logins == [LoginPassword(b"remediator", b"pa55word")]
    assert [authenticated for _, authenticated in box.received] == [False, True]


async def test_email_with_a_wrong_password_is_refused(
    mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = mailbox
    monkeypatch.setenv("SMTP_USER", "remediator")
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    channel = plain_email(port, username_env="SMTP_USER", password_env="SMTP_PASSWORD")

    with pytest.raises(PermanentFailure, match="535"):
        await channel.send(message())


@pytest.mark.parametrize(
    ("to", "failure", "code"),
    [
        (["gone@example.com"], PermanentFailure, "550"),
        (["full@example.com"], TransientFailure, "452"),
        (["full@example.com", "gone@example.com"], PermanentFailure, "550"),
    ],
)
async def test_email_refused_recipients(
    mailbox: tuple[Mailbox, int], to: list[str], failure: type[Exception], code: str
) -> None:
    box, port = mailbox

    with pytest.raises(failure, match=code):
        await plain_email(port, to=to).send(message())
    assert box.received == []


async def test_email_refused_for_some_is_delivered_to_the_others(
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox

    with capture_logs() as logs:
        await plain_email(port, to=["gone@example.com", "sre@example.com"]).send(message())

    assert box.mail()[0].rcpt_tos == ["sre@example.com"]
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert list(warning["refused"]) == ["gone@example.com"]


async def test_email_starttls_is_required_when_asked(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    channel = Email(email_config(port), start_tls=True, local_hostname="remediator.test")

    with pytest.raises(PermanentFailure, match="STARTTLS"):
        await channel.send(message())
    assert box.received == []


async def test_email_to_a_closed_port_is_a_transient_failure() -> None:
    with pytest.raises(TransientFailure):
        await plain_email(free_port()).send(message())


DIAGNOSED = {
    "diagnose": {
        "pods": [{"name": "api-7d9f-q8m2z", "phase": "Running", "restarts": 7}],
        "events": [{"reason": "OOMKilled", "message": "<container> api used 512Mi"}],
    }
}


async def test_what_diagnostic_steps_read_rides_along_in_every_channel(
    pagerduty: PagerDuty,
    pagerduty_api: Recorder,
    slack: Slack,
    slack_api: Recorder,
    mailbox: tuple[Mailbox, int],
) -> None:
    diagnosed = message(diagnostics=DIAGNOSED)
    await pagerduty.send(diagnosed)
    await slack.send(diagnosed)
    box, port = mailbox
    await plain_email(port).send(diagnosed)

    [event] = pagerduty_api.requests
    assert event.json["payload"]["custom_details"]["diagnostics"] == DIAGNOSED
    [posted] = slack_api.requests
    [section] = [b for b in posted.json["blocks"] if "Diagnostics" in str(b.get("text"))]
    assert "OOMKilled" in section["text"]["text"]
    assert "&lt;container&gt;" in section["text"]["text"]  # escaped: no fake mention or link
    _, mail = box.mail()
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None
    assert rich is not None
    assert '"restarts": 7' in plain.get_content()
    assert "&lt;container&gt; api used 512Mi" in rich.get_content()
    await pagerduty.send(message())  # no diagnostic step: no empty section either
    assert "diagnostics" not in pagerduty_api.requests[1].json["payload"]["custom_details"]


def test_diagnostics_too_large_for_an_event_are_cut_not_refused(pagerduty: PagerDuty) -> None:
    fits = {"diagnose": {"events": ["x" * 1000] * 400}}  # 400 KB: the event may carry 512 KB
    whole = pagerduty.event(message(diagnostics=fits))["payload"]["custom_details"]
    assert whole["diagnostics"] == fits
    huge = {"diagnose": {"events": ["x" * 1000] * 600}}
    event = pagerduty.event(message(diagnostics=huge))
    cut = event["payload"]["custom_details"]["diagnostics"]
    assert isinstance(cut, str)
    assert cut.startswith('{\n  "diagnose": {')
    assert cut.endswith(" characters cut)")
    assert len(json.dumps(event).encode()) <= 512 * 1024
