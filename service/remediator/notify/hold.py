"""Held resolves: a resolve sent only once its alert has stayed resolved for the hold time.

The escalator queues one entry on the outbox's `hold` channel, due the matrix's `resolve_after`
after the alert resolved, in the same transaction as the remediation's turn. The sender hands
it here when it falls due, like any other message: unless an episode resumed the incident
since (a newer entry on the same channel), the resolve goes to each channel the incident is
still open on. Those entries are named after the held one, so a hand-over repeated after a
crash (the sender died before marking it done) queues nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from remediator.notify.base import Message, TransientFailure
from remediator.notify.escalator import HOLD, Incident, outbox_entries
from remediator.policy.schema import EscalationMatrix
from remediator.store import Outbox

log = structlog.get_logger(__name__)


class HeldResolves:
    name = HOLD

    def __init__(
        self,
        store: Outbox,
        matrix: Callable[[], EscalationMatrix],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._matrix = matrix
        self._clock = clock

    def describe(self) -> dict[str, Any]:
        return {"channel": self.name}

    async def send(self, message: Message) -> None:
        try:
            await self._release(message)
        except Exception as exc:  # the store: tried again, as a channel that did not answer
            raise TransientFailure(f"held resolve not released: {exc}") from exc

    async def _release(self, message: Message) -> None:
        key = message.dedup_key
        incident = Incident.of(await self._store.latest_outbox(key))
        held = incident.held
        if held is None or held.id != message.id:
            log.info(
                "held resolve superseded: the incident resumed, or holds a newer", dedup_key=key
            )
            return
        matrix = self._matrix()
        route = matrix.levels.get(held.message["level"])
        quiet = route is not None and not route.resolved_email
        channels = [c for c in incident.paged if not (quiet and c == "email")]
        text = {**held.message, "action": "resolve"}
        entries = outbox_entries(
            matrix,
            text,
            channels,
            remediation_id=held.remediation_id,
            now=datetime.fromtimestamp(self._clock(), UTC),
            opening=False,
            entry_id=lambda channel: f"{held.id}/{channel}",
        )
        await self._store.enqueue(entries)
        log.info("incident stayed resolved", dedup_key=key, channels=channels)
