"""The embedded store's approvals: an answer taken, or a request closed, in one transaction
under the database's write lock (BEGIN IMMEDIATE), so no other writer reads the request
between the rule's read and its writes. A request is written in one transaction with the run
that waits for it and the messages asking."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from remediator.store import rows, statements
from remediator.store.portable import PortableApprovals, queues_event, take_answer
from remediator.store.records import (
    AnswerTaken,
    ApprovalAnswer,
    ApprovalRequest,
    ApprovalState,
    OutboxEntry,
    Remediation,
)
from remediator.store.sqlite.connection import SQLiteConnection, bound, qmarks, transaction
from remediator.store.sqlite.run_ledger import write_remediation

_REQUEST_APPROVAL = qmarks(statements.REQUEST_APPROVAL)
_APPROVAL = qmarks(statements.APPROVAL)
_ANSWERS = qmarks(statements.ANSWERS)
_RECORD_ANSWER = qmarks(statements.RECORD_ANSWER)
_CLOSE_APPROVAL = qmarks(statements.CLOSE_APPROVAL)
_QUEUE_ANSWERED = qmarks(statements.QUEUE_ANSWERED)


class SQLiteApprovals(PortableApprovals, SQLiteConnection):
    _ANSWERS_OF = statements.answers_of("SELECT value FROM json_each($1)")

    async def answer_approval(
        self, approval_id: str, answer: ApprovalAnswer, min_approvals: int
    ) -> AnswerTaken:
        def take(db: sqlite3.Connection) -> AnswerTaken:
            with transaction(db):
                request = _request(db, approval_id)
                taking = take_answer(request, answer, min_approvals)
                db.execute(_RECORD_ANSWER, bound(rows.answer_row(taking.recorded)))
                if taking.closes is not None:
                    _close(db, approval_id, taking.closes, taking.recorded.at)
                return AnswerTaken(_request(db, approval_id), taking.counted, taking.why)

        return await self._run(take)

    async def request_approval(
        self,
        request: ApprovalRequest,
        asking: Remediation | None = None,
        messages: Sequence[OutboxEntry] = (),
    ) -> None:
        asked = bound(rows.approval_row(request))

        def ask(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.execute(_REQUEST_APPROVAL, asked)
                if asking is not None:
                    write_remediation(db, asking, messages)

        await self._run(ask)

    async def close_approval(
        self, approval_id: str, state: ApprovalState, at: datetime, answer: ApprovalAnswer | None
    ) -> bool:
        def close(db: sqlite3.Connection) -> bool:
            with transaction(db):
                if not _close(db, approval_id, state, at):
                    return False
                if answer is not None:
                    db.execute(_RECORD_ANSWER, bound(rows.answer_row(answer)))
                return True

        return await self._run(close)


def _request(db: sqlite3.Connection, approval_id: str) -> ApprovalRequest:
    found = db.execute(_APPROVAL, (approval_id,)).fetchone()
    if found is None:
        raise LookupError(f"no approval request {approval_id}")
    return rows.approval_request(found, db.execute(_ANSWERS, (approval_id,)).fetchall())


def _close(db: sqlite3.Connection, approval_id: str, state: ApprovalState, at: datetime) -> bool:
    """Close the request if pending, its event queued again (`queues_event`); whether it was."""
    closed = db.execute(_CLOSE_APPROVAL, bound((approval_id, state, at))).fetchall()
    if closed and queues_event(state):
        db.execute(_QUEUE_ANSWERED, closed[0])
    return bool(closed)
