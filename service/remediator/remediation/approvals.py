"""The approval desk: one rule for every way an answer comes (Slack, the API, the CLI, the
console). Someone not listed as an approver is refused, and the refusal recorded; one person
gives one approval; the request is bound to its expiry. The store takes each answer in one
transaction, so two replicas answering at once count each approval once, and a request that
leaves `pending` queues its run's event again for the runner to go on or end the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from remediator.store import (
    AnswerTaken,
    ApprovalAnswer,
    ApprovalRequest,
    Approvals,
    ApprovalState,
    Verdict,
)

log = structlog.get_logger(__name__)

SHORT_ID = 8  # characters of an id a person types


class UnknownApproval(LookupError):
    """No request has that id (or the prefix names none, or more than one)."""


class ApprovalDesk:
    def __init__(
        self,
        store: Approvals,
        *,
        clock: Callable[[], float] = time.time,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._wake = wake  # the local dispatcher: a request closed queued its event again

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def find(self, approval_id: str) -> ApprovalRequest:
        """The request by its id or an unambiguous prefix of it (at least 4 characters)."""
        exact = await self._store.approval(approval_id)
        if exact is not None:
            return exact
        if len(approval_id) < 4:
            raise UnknownApproval(f"no approval request {approval_id!r}")
        found = await self._store.approvals_by_prefix(approval_id, 2)
        if not found:
            raise UnknownApproval(f"no approval request {approval_id!r}")
        if len(found) > 1:
            raise UnknownApproval(f"{approval_id!r} names more than one request: give more of it")
        return found[0]

    async def pending(self, limit: int = 100) -> list[ApprovalRequest]:
        return await self._store.approvals(ApprovalState.PENDING, limit)

    async def answer(
        self, approval_id: str, who: str, via: str, verdict: Verdict, note: str = ""
    ) -> AnswerTaken:
        """Take `who`'s answer through `via`. Approve and reject are for the request's
        approvers; cancel for any operator (the caller has checked the role)."""
        request = await self.find(approval_id)
        answer = ApprovalAnswer(request.id, who, via, verdict, note[:500], self._now())
        if verdict in (Verdict.APPROVE, Verdict.REJECT) and who not in request.approvers:
            why = f"{who} is not an approver of this request (approvers: {_listed(request)})"
            refused = ApprovalAnswer(
                request.id, who, via, Verdict.REFUSED, f"{verdict}: {why}", answer.at
            )
            await self._store.record_answer(refused)
            log.warning("approval answer refused", approval=request.id, who=who, why=why)
            return AnswerTaken(request, False, why)
        taken = await self._store.answer_approval(request.id, answer, request.min_approvals)
        log.info(
            "approval answered",
            approval=request.id,
            who=who,
            via=via,
            verdict=verdict.value,
            counted=taken.counted,
            state=taken.request.state.value,
        )
        if taken.request.state is not ApprovalState.PENDING:
            self._wake()
        return taken


def _listed(request: ApprovalRequest) -> str:
    return ", ".join(request.approvers)
