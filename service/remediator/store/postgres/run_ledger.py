"""The production store's run ledger: a remediation and its messages in one statement."""

from __future__ import annotations

from collections.abc import Sequence

from remediator.store import rows, statements
from remediator.store.portable import PortableRunLedger
from remediator.store.postgres.connection import PostgresConnection
from remediator.store.postgres.outbox import enqueue_from, outbox_columns
from remediator.store.records import OutboxEntry, Remediation

# The messages go in as columns of arrays, with the remediation whose turn they tell of (none:
# empty arrays).
SAVE_REMEDIATION = f"WITH saved AS ({statements.SAVE_REMEDIATION}) {enqueue_from(19)}"


def saved(remediation: Remediation, messages: Sequence[OutboxEntry]) -> tuple[object, ...]:
    """SAVE_REMEDIATION's arguments: the remediation's row, then its messages' columns."""
    return (*rows.remediation_row(remediation), *outbox_columns(messages))


class PostgresRunLedger(PortableRunLedger, PostgresConnection):
    async def save_remediation(
        self, remediation: Remediation, messages: Sequence[OutboxEntry] = ()
    ) -> None:
        await self._execute(SAVE_REMEDIATION, *saved(remediation, messages))
