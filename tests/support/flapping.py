"""A flapping alert and the real channels that hear it: PagerDuty and Slack through the HTTP
stand-ins (tests/support/notify_recorder.py), email through the aiosmtpd mailbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from remediator.alerts import Notification
from remediator.metrics import Metrics
from remediator.notify.base import Channel
from remediator.notify.hold import HeldResolves
from remediator.notify.ladder import Ladder
from remediator.notify.outbox import OutboxSender
from remediator.notify.pagerduty import PagerDuty
from remediator.notify.slack import Slack
from remediator.policy.schema import PagerDutyChannel, SlackChannel
from tests.support.mailbox import Mailbox, plain_email
from tests.support.notify_recorder import Recorder
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import World

MINUTE = 60.0
PD_KEY_ENV, SLACK_URL_ENV = "FLAP_PD_ROUTING_KEY", "FLAP_SLACK_WEBHOOK"


def every_channel_at_p2(matrix: str) -> str:
    """The shipped matrix with P2 paging PagerDuty as well: one policy reaches all three."""
    p2 = "  P2:\n    channels: [slack, email]\n"
    assert p2 in matrix
    return matrix.replace(p2, "  P2:\n    channels: [pagerduty, slack, email]\n")


async def post(world: World, status: str, episode: int) -> None:
    """Episode `episode` (from 1) of one alert: the same fingerprint, its own startsAt."""
    labels = {"alertname": "AppDown", "app": "shop", "instance": world.instance}
    starts_at = f"2027-01-15T08:{2 * episode - 2:02d}:00Z"
    alert = webhook_alert(labels, fingerprint="fp-flapping", starts_at=starts_at, status=status)
    if status == "resolved":
        alert["endsAt"] = f"2027-01-15T08:{2 * episode - 1:02d}:00Z"
    body = webhook(alert, group_key='{}:{alertname="AppDown"}')
    received = datetime.fromtimestamp(world.clock(), UTC)
    await world.store.record_notification(Notification.model_validate(body), b"{}", received)


@dataclass
class Heard:
    """What each channel's real server received, in order."""

    pagerduty: Recorder
    slack: Recorder
    mailbox: Mailbox

    def pagerduty_events(self) -> list[tuple[str, str]]:
        return [(r.json["event_action"], r.json["dedup_key"]) for r in self.pagerduty.requests]

    def slack_texts(self) -> list[str]:
        return [str(r.json["text"]) for r in self.slack.requests]

    def subjects(self) -> list[str]:
        return [str(self.mailbox.mail(n)[1]["Subject"]) for n in range(len(self.mailbox.received))]

    def counts(self) -> dict[str, int]:
        return {
            "pagerduty": len(self.pagerduty.requests),
            "slack": len(self.slack.requests),
            "email": len(self.mailbox.received),
        }


def real_channels(
    session: aiohttp.ClientSession, pagerduty: Recorder, slack: Recorder, smtp_port: int
) -> dict[str, Channel]:
    """PagerDuty, Slack and email over the stand-ins; their secrets named by FLAP_* variables,
    which the caller sets."""
    return {
        "pagerduty": PagerDuty(
            PagerDutyChannel(routing_key_env=PD_KEY_ENV),
            session,
            url=f"{pagerduty.url}/v2/enqueue",
            timeout=5,
        ),
        "slack": Slack(SlackChannel(webhook_url_env=SLACK_URL_ENV), session, timeout=5),
        "email": plain_email(smtp_port),
    }


def sender(world: World, channels: Mapping[str, Channel]) -> OutboxSender:
    """The world's outbox sender over the channels, and the outbox's own: the ladder and the
    held resolves."""
    matrix = lambda: world.live.current.matrix  # noqa: E731
    ladder = Ladder(world.store, matrix, clock=world.clock)
    held = HeldResolves(world.store, matrix, clock=world.clock)
    own = {ladder.name: ladder, held.name: held}
    return OutboxSender(world.store, {**channels, **own}, Metrics().notify, clock=world.clock)


def secrets(slack: Recorder) -> dict[str, str]:
    """The environment the channels read their secrets from."""
    return {PD_KEY_ENV: "routing-key-1", SLACK_URL_ENV: f"{slack.url}/services/T0/B0/secret"}
