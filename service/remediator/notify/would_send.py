"""Dry-run sends nothing: a channel's messages are recorded as what it would have sent.

A new install runs in dry-run beside the team's own Alertmanager receivers; a page from it
too would be a double page. In dry-run every channel but those named in
REMEDIATOR_DRY_RUN_CHANNELS (a test Slack channel, say) is wrapped in `WouldSend`: the outbox
goes through its usual path (budgets, folds, incidents, the ladder) and marks each message
done with the note WOULD_SEND instead of delivering it. `remediator notify test` still sends.
"""

from __future__ import annotations

from typing import Any

import structlog

from remediator.notify.base import Channel, Message

log = structlog.get_logger(__name__)

WOULD_SEND = "dry-run: would send, not delivered"


class WouldSend:
    """A channel in dry-run: it records what it would send, and delivers nothing."""

    def __init__(self, channel: Channel) -> None:
        self.name = channel.name
        self._channel = channel

    async def send(self, message: Message) -> None:
        log.info(
            "dry-run: would send",
            channel=self.name,
            action=message.action,
            key=message.dedup_key,
            summary=message.summary,
        )

    async def send_digest(self, messages: list[Message]) -> None:
        log.info("dry-run: would send a digest", channel=self.name, messages=len(messages))

    def describe(self) -> dict[str, Any]:
        return {**self._channel.describe(), "dry_run": WOULD_SEND}


def in_dry_run(channels: dict[str, Channel], delivering: frozenset[str]) -> dict[str, Channel]:
    """The channels as dry-run uses them: those named still deliver, the others would send."""
    return {
        name: channel if name in delivering else WouldSend(channel)
        for name, channel in channels.items()
    }
