"""The production store's outbox: messages queued as columns of arrays, claims shared safely."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remediator.store import rows, statements
from remediator.store.portable import PortableOutbox
from remediator.store.postgres.connection import PostgresConnection
from remediator.store.records import OutboxEntry


def enqueue_from(first: int) -> str:
    """The outbox insert whose rows are eight array parameters from `$first` on, one per
    column (`outbox_columns`): one statement, so one round trip and one transaction."""
    arrays = ", ".join(
        f"${first + n}::{kind}[]" for n, kind in enumerate(["text"] * 6 + ["timestamptz"] * 2)
    )
    return statements.ENQUEUE.format(
        rows=f"SELECT i, c, a, d, r, m::json, ca, na FROM unnest({arrays})"
        " AS u(i, c, a, d, r, m, ca, na)"
    )


def outbox_columns(entries: Sequence[OutboxEntry]) -> list[list[Any]]:
    """The entries as one array per column, for `enqueue_from`."""
    return [list(column) for column in zip(*rows.outbox_rows(entries), strict=True)] or [[]] * 8


_ENQUEUE = enqueue_from(1)
_CLAIM_OUTBOX = statements.claim_outbox(lock="FOR UPDATE SKIP LOCKED")


class PostgresOutbox(PortableOutbox, PostgresConnection):
    _CLAIM_OUTBOX = _CLAIM_OUTBOX
    _LATEST_OUTBOX = (
        f"SELECT * FROM (SELECT DISTINCT ON (channel) {rows.OUTBOX_COLUMNS} FROM outbox"
        " WHERE dedup_key = $1 ORDER BY channel, created_at DESC, id DESC) AS newest"
        " ORDER BY created_at, id"
    )

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        await self._execute(_ENQUEUE, *outbox_columns(entries))
