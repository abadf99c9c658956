"""The channels the severity matrix names, built from its configuration and the environment.

A channel whose secret is missing is reported when the service starts and on /health, so a
broken configuration is found at deploy time rather than by the first incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from remediator.notify.base import Channel
from remediator.notify.channel_support import ChannelNotConfigured
from remediator.notify.email import Email
from remediator.notify.pagerduty import PagerDuty
from remediator.notify.slack import Slack
from remediator.policy.schema import EscalationMatrix


@dataclass
class ChannelSet:
    channels: dict[str, Channel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # channel -> why it cannot send

    def health(self) -> dict[str, str]:
        if not self.problems:
            return {"status": "ok", "channels": ", ".join(sorted(self.channels)) or "none"}
        return {"status": "degraded", "detail": "; ".join(self.problems.values())}

    def describe(self) -> dict[str, Any]:
        return {name: channel.describe() for name, channel in self.channels.items()}


def open_channels(matrix: EscalationMatrix, session: aiohttp.ClientSession) -> ChannelSet:
    found = ChannelSet()
    used = {channel for route in matrix.levels.values() for channel in route.channels}
    for name in ("pagerduty", "slack", "email"):
        try:
            channel = _build(name, matrix, session)
        except ChannelNotConfigured as exc:
            found.problems[name] = str(exc)
            continue
        if channel is not None:
            found.channels[name] = channel
        elif name in used:
            found.problems[name] = f"{name}: used by the matrix but not configured"
    return found


def _build(name: str, matrix: EscalationMatrix, session: aiohttp.ClientSession) -> Channel | None:
    config = matrix.channels
    if name == "pagerduty" and config.pagerduty is not None:
        pagerduty = config.pagerduty
        timeout = pagerduty.timeout.total_seconds()
        return PagerDuty(pagerduty, session, url=pagerduty.events_url, timeout=timeout)
    if name == "slack" and config.slack is not None:
        return Slack(config.slack, session, timeout=config.slack.timeout.total_seconds())
    if name == "email" and config.email is not None:
        return Email(config.email, timeout=config.email.timeout.total_seconds())
    return None
