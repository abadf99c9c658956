"""The escalation ladder: an incident nobody closed climbs to the next level of the matrix.

Opening an incident queues a climb in the outbox, due when the level's `next.after` has passed.
The sender hands it here like any other message: if the incident is still open (its alert has
not resolved, no fix has worked, no resolve held) and has not been closed and opened again
(or resumed) since, the next level's channels are paged, and a further climb is queued when
that level has a next rung too. The entries it queues are named after the climb, so a climb
repeated after a crash queues nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from remediator.notify.base import Message
from remediator.notify.escalator import FALLBACK_FOR, LADDER, Incident, outbox_entries
from remediator.policy.durations import format_duration
from remediator.policy.schema import EscalationMatrix
from remediator.store import Outbox, OutboxEntry

log = structlog.get_logger(__name__)


class Ladder:
    name = LADDER

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
        key = message.dedup_key
        incident = await self._store.latest_outbox(key)
        newest_climb = next((e.id for e in incident if e.channel == LADDER), None)
        # Closed since (nothing paged, or its resolve held), or closed and opened again (which
        # queued a newer climb).
        if not Incident.of(incident).open or newest_climb != message.id:
            log.info("incident closed before it climbed", dedup_key=key)
            return
        matrix = self._matrix()
        route = matrix.levels.get(message.level)  # type: ignore[call-overload]
        if route is None or route.next is None:
            log.info("the matrix no longer climbs from this level", level=message.level)
            return
        rung = route.next
        triggers = [e for e in incident if e.action == "trigger" and e.channel != LADDER]
        # The page itself, not a fallback's copy of it (which says a channel did not take it).
        pages = [e for e in triggers if FALLBACK_FOR not in e.message] or triggers
        latest = max(pages, key=_order)
        opened_with = latest.message.get("opened_with", latest.message["summary"])
        text = {
            **latest.message,
            "action": "trigger",
            "level": rung.level,
            "summary": (
                f"still open {format_duration(rung.after)} after the {message.level} page, "
                f"escalated to {rung.level}: {opened_with}"
            )[:1024],
            "opened_with": opened_with,
            "severity_why": (
                f"climbed from {message.level}: still open {format_duration(rung.after)} "
                "after its page"
            ),
            "next": f"paging {rung.level}: a person must act",
        }
        text.pop("digest", None)
        now = datetime.fromtimestamp(self._clock(), UTC)
        entries = outbox_entries(
            matrix,
            text,
            matrix.levels[rung.level].channels,
            remediation_id=latest.remediation_id,
            now=now,
            opening=True,  # the next rung's own climb
            entry_id=lambda channel: f"{message.id}/{channel}",
        )
        await self._store.enqueue(entries)
        log.warning(
            "incident climbed the ladder",
            dedup_key=key,
            from_level=message.level,
            to_level=rung.level,
            channels=[e.channel for e in entries if e.channel != LADDER],
        )


def _order(entry: OutboxEntry) -> tuple[datetime, str]:
    return entry.created_at, entry.id
