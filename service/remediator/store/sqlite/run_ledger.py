"""The embedded store's run ledger: a remediation saved with its messages in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from remediator.store import rows, statements
from remediator.store.portable import PortableRunLedger
from remediator.store.records import OutboxEntry, Remediation
from remediator.store.sqlite.connection import SQLiteConnection, bound, qmarks, transaction
from remediator.store.sqlite.outbox import ENQUEUE

SAVE_REMEDIATION = qmarks(statements.SAVE_REMEDIATION)


class SQLiteRunLedger(PortableRunLedger, SQLiteConnection):
    async def save_remediation(
        self, remediation: Remediation, messages: Sequence[OutboxEntry] = ()
    ) -> None:
        saved = bound(rows.remediation_row(remediation))
        queued = [bound(row) for row in rows.outbox_rows(messages)]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute(SAVE_REMEDIATION, saved)
                db.executemany(ENQUEUE, queued)

        await self._run(write)
