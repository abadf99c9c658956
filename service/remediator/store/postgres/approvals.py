"""The production store's approvals: an answer taken, or a request closed, in one transaction
holding the request's row (`SELECT ... FOR UPDATE`), so answers given at once on several
replicas are taken one after the other; an approved request's event wakes the replicas. A
request is written in one transaction with the run that waits for it and the messages asking."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from remediator.store import rows, statements
from remediator.store.portable import PortableApprovals, queues_event, take_answer
from remediator.store.postgres.run_ledger import SAVE_REMEDIATION, saved
from remediator.store.postgres.wakes import PostgresWakes
from remediator.store.records import (
    AnswerTaken,
    ApprovalAnswer,
    ApprovalRequest,
    ApprovalState,
    OutboxEntry,
    Remediation,
)

if TYPE_CHECKING:
    from remediator.store.postgres.connection import Connection

_HOLD_APPROVAL = f"{statements.APPROVAL} FOR UPDATE"


class PostgresApprovals(PortableApprovals, PostgresWakes):
    _ANSWERS_OF = statements.answers_of("SELECT unnest($1::text[])")

    async def answer_approval(
        self, approval_id: str, answer: ApprovalAnswer, min_approvals: int
    ) -> AnswerTaken:
        async def take(db: Connection) -> tuple[AnswerTaken, bool]:
            async with db.transaction():
                request = await _request(db, approval_id, _HOLD_APPROVAL)
                taking = take_answer(request, answer, min_approvals)
                await db.execute(statements.RECORD_ANSWER, *rows.answer_row(taking.recorded))
                if taking.closes is not None:
                    await _close(db, approval_id, taking.closes, taking.recorded.at)
                after = await _request(db, approval_id, statements.APPROVAL)
                return AnswerTaken(after, taking.counted, taking.why), taking.queues_event

        taken, queued = await self._run(take)
        if queued:  # after the commit: the replicas' claim finds it at once
            self._wake_replicas()
        return taken

    async def request_approval(
        self,
        request: ApprovalRequest,
        asking: Remediation | None = None,
        messages: Sequence[OutboxEntry] = (),
    ) -> None:
        async def ask(db: Connection) -> None:
            async with db.transaction():
                await db.execute(statements.REQUEST_APPROVAL, *rows.approval_row(request))
                if asking is not None:
                    await db.execute(SAVE_REMEDIATION, *saved(asking, messages))

        await self._run(ask)

    async def close_approval(
        self, approval_id: str, state: ApprovalState, at: datetime, answer: ApprovalAnswer | None
    ) -> bool:
        async def close(db: Connection) -> bool:
            async with db.transaction():
                if not await _close(db, approval_id, state, at):
                    return False
                if answer is not None:
                    await db.execute(statements.RECORD_ANSWER, *rows.answer_row(answer))
                return True

        closed = await self._run(close)
        if closed and queues_event(state):
            self._wake_replicas()
        return closed


async def _request(db: Connection, approval_id: str, sql: str) -> ApprovalRequest:
    found = await db.fetchrow(sql, approval_id)
    if found is None:
        raise LookupError(f"no approval request {approval_id}")
    answers = await db.fetch(statements.ANSWERS, approval_id)
    return rows.approval_request(tuple(found), [tuple(answer) for answer in answers])


async def _close(db: Connection, approval_id: str, state: ApprovalState, at: datetime) -> bool:
    """Close the request if pending, its event queued again (`queues_event`); whether it was."""
    event_id = await db.fetchval(statements.CLOSE_APPROVAL, approval_id, state, at)
    if event_id is not None and queues_event(state):
        await db.execute(statements.QUEUE_ANSWERED, event_id)
    return event_id is not None
