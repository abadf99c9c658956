"""The embedded store's retention: the deletes in one transaction, an episode's rows first."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from remediator.store import statements
from remediator.store.sqlite.connection import SQLiteConnection, bound, qmarks, transaction

_EPISODES = f"(fingerprint, starts_at) IN ({statements.OLD_EPISODES})"
# An alert episode's rows, those that refer to it first; each by the retention period's cutoff.
_PRUNE_EPISODES = [
    (
        "approval_answers",
        "DELETE FROM approval_answers WHERE approval_id IN"
        f" (SELECT id FROM approvals WHERE {_EPISODES})",
    ),
    ("approvals", f"DELETE FROM approvals WHERE {_EPISODES}"),
    (
        "remediation_steps",
        "DELETE FROM remediation_steps WHERE remediation_id IN"
        f" (SELECT id FROM remediations WHERE {_EPISODES})",
    ),
    ("remediations", f"DELETE FROM remediations WHERE {_EPISODES}"),
    ("alert_events", f"DELETE FROM alert_events WHERE {_EPISODES}"),
    ("alerts", f"DELETE FROM alerts WHERE {_EPISODES}"),
]


class SQLiteRetention(SQLiteConnection):
    async def prune(
        self, before: datetime, runs_before: datetime, seen_before: datetime
    ) -> dict[str, int]:
        cutoff = bound((before,))
        deletes = [
            *((table, qmarks(sql), cutoff) for table, sql in _PRUNE_EPISODES),
            *((table, qmarks(sql), cutoff) for table, sql in statements.PRUNE_REST),
            ("runs", qmarks(statements.PRUNE_RUNS), bound((runs_before,))),
            ("seen_requests", qmarks(statements.PRUNE_SEEN), bound((seen_before,))),
        ]

        def delete(db: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            with transaction(db):
                for table, sql, values in deletes:  # a table twice: its stray rows after
                    counts[table] = counts.get(table, 0) + db.execute(sql, values).rowcount
            return counts

        return await self._run(delete)
