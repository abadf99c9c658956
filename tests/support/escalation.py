"""What escalation sends: a channel that records it, and the outbox of the world's incident."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediator.notify.base import Message
from remediator.store import Store

# The incident of the world's policy (tests/support/world.py) on its application.
KEY = "remediator/probe-and-fix/Application/-/shop"


async def outbox(store: Store, key: str) -> list[tuple[str, str]]:
    return [(entry.channel, entry.action) for entry in await store.outbox_for(key)]


@dataclass
class Recorder:
    """A channel that keeps what it was given, and fails when told to."""

    name: str
    sent: list[Message] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)

    def describe(self) -> dict[str, Any]:
        return {"channel": self.name}
