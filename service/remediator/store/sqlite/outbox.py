"""The embedded store's outbox: messages queued in one transaction, claimed under its lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from remediator.store import rows, statements
from remediator.store.portable import PortableOutbox
from remediator.store.records import OutboxEntry
from remediator.store.sqlite.connection import SQLiteConnection, bound, qmarks, transaction

ENQUEUE = statements.ENQUEUE.format(rows="VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_CLAIM_OUTBOX = qmarks(statements.claim_outbox(lock=""))  # under the write lock


class SQLiteOutbox(PortableOutbox, SQLiteConnection):
    _CLAIM_OUTBOX = _CLAIM_OUTBOX
    _LATEST_OUTBOX = (
        f"SELECT {rows.OUTBOX_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY"
        " channel ORDER BY created_at DESC, id DESC) AS newest FROM outbox"
        " WHERE dedup_key = $1) WHERE newest = 1 ORDER BY created_at, id"
    )

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        values = [bound(row) for row in rows.outbox_rows(entries)]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany(ENQUEUE, values)

        await self._run(write)
