"""The embedded store's event queue: its statements (claims under the database's write lock)."""

from __future__ import annotations

from collections.abc import Callable

from remediator.store import statements
from remediator.store.portable import PortableEventQueue
from remediator.store.sqlite.connection import SQLiteConnection, qmarks


class SQLiteEventQueue(PortableEventQueue, SQLiteConnection):
    _CLAIM_EVENTS = qmarks(statements.claim_events(lock=""))  # under the write lock
    # The ids travel as one JSON array.
    _RENEW_EVENTS = (
        "UPDATE alert_events SET lease_until = $3 WHERE id IN (SELECT value FROM json_each($1))"
        " AND claimed_by = $2 AND done_at IS NULL RETURNING id"
    )
    _COMPLETE_EVENTS = (
        "UPDATE alert_events SET done_at = $3 WHERE id IN (SELECT value FROM json_each($1))"
        " AND claimed_by = $2 AND done_at IS NULL"
    )

    async def watch_events(self, wake: Callable[[], None]) -> None:
        """One process: its intake wakes its dispatcher directly."""
