"""`remediator notify test`: one message through a channel, or the reason it cannot be sent."""

from __future__ import annotations

import asyncio

import pytest

from remediator.cli import main
from tests.support.notify_recorder import Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES


def notify_test(channel: str) -> int:
    return main(["notify", "test", "--channel", channel, "--policies", str(SHIPPED_POLICIES)])


async def test_a_test_message_goes_through_the_configured_channel(
    slack_api: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    assert await asyncio.to_thread(notify_test, "slack") == 0
    [request] = slack_api.requests
    assert "Remediator test message" in request.json["text"]
    assert capsys.readouterr().out == (
        "sent a test message through slack: the webhook on 127.0.0.1"
        " (URL from $SLACK_WEBHOOK_URL)\n"
    )


async def test_a_missing_secret_or_a_refusal_is_said_plainly(
    slack_api: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    assert await asyncio.to_thread(notify_test, "pagerduty") == 1
    assert "PAGERDUTY_ROUTING_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    slack_api.answer_next(Answer(404, "no_service"))
    assert await asyncio.to_thread(notify_test, "slack") == 1
    assert "slack did not take the message" in capsys.readouterr().err
