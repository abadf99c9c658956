"""The embedded store's run ledger: a remediation saved with its messages in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from remediator.store import rows, statements
from remediator.store.portable import PortableRunLedger
from remediator.store.records import OutboxEntry, Remediation
from remediator.store.sqlite.connection import SQLiteConnection, bound, qmarks, transaction
from remediator.store.sqlite.outbox import ENQUEUE

_SAVE_REMEDIATION = qmarks(statements.SAVE_REMEDIATION)


def write_remediation(
    db: sqlite3.Connection, remediation: Remediation, messages: Sequence[OutboxEntry]
) -> None:
    """The remediation and the messages about it, in the caller's transaction."""
    db.execute(_SAVE_REMEDIATION, bound(rows.remediation_row(remediation)))
    db.executemany(ENQUEUE, [bound(row) for row in rows.outbox_rows(messages)])


class SQLiteRunLedger(PortableRunLedger, SQLiteConnection):
    async def save_remediation(
        self, remediation: Remediation, messages: Sequence[OutboxEntry] = ()
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                write_remediation(db, remediation, messages)

        await self._run(write)
