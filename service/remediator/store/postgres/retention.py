"""The production store's retention: an episode's rows in one statement, then the rest."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from remediator.store import statements
from remediator.store.postgres.connection import PostgresConnection

if TYPE_CHECKING:
    from remediator.store.postgres.connection import Connection

_PRUNE_EPISODES = f"""
WITH gone AS (
    DELETE FROM alerts WHERE (fingerprint, starts_at) IN ({statements.OLD_EPISODES})
    RETURNING fingerprint, starts_at
), events AS (
    DELETE FROM alert_events e USING gone g
    WHERE e.fingerprint = g.fingerprint AND e.starts_at = g.starts_at RETURNING 1
), remediations AS (
    DELETE FROM remediations r USING gone g
    WHERE r.fingerprint = g.fingerprint AND r.starts_at = g.starts_at RETURNING r.id
), steps AS (
    DELETE FROM remediation_steps s USING remediations r WHERE s.remediation_id = r.id
    RETURNING 1
), approvals AS (
    DELETE FROM approvals a USING gone g
    WHERE a.fingerprint = g.fingerprint AND a.starts_at = g.starts_at RETURNING a.id
), answers AS (
    DELETE FROM approval_answers x USING approvals a WHERE x.approval_id = a.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS alerts, (SELECT count(*) FROM events) AS alert_events,
       (SELECT count(*) FROM remediations) AS remediations,
       (SELECT count(*) FROM steps) AS remediation_steps,
       (SELECT count(*) FROM approvals) AS approvals,
       (SELECT count(*) FROM answers) AS approval_answers
"""


class PostgresRetention(PostgresConnection):
    async def prune(
        self, before: datetime, runs_before: datetime, seen_before: datetime
    ) -> dict[str, int]:
        async def delete(db: Connection) -> dict[str, int]:
            async with db.transaction():
                row = await db.fetchrow(_PRUNE_EPISODES, before)
                counts: dict[str, int] = dict(row) if row is not None else {}
                for table, statement in statements.PRUNE_REST:  # a table twice: its stray rows
                    deleted = _deleted(await db.execute(statement, before))
                    counts[table] = counts.get(table, 0) + deleted
                counts["runs"] = _deleted(await db.execute(statements.PRUNE_RUNS, runs_before))
                seen = await db.execute(statements.PRUNE_SEEN, seen_before)
                counts["seen_requests"] = _deleted(seen)
                return counts

        return await self._run(delete)


def _deleted(status: str) -> int:
    """asyncpg's command status, `DELETE 3`, as the number."""
    return int(status.rpartition(" ")[2] or 0)
