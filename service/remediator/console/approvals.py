"""Approvals (`/ui/approvals`): the requests waiting for an answer, each with what it shows
its approvers (the change, the diagnostics so far, the guards' state), and Approve and Reject
for an operator. Every answer goes through the approval desk as `via=console`, the one rule
the API, the command line and Slack answer by: only a request's approvers approve or reject,
one approval a person, never after the request closed or expired; a refusal is recorded too.
Below them, the requests decided lately."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from remediator.console.people import Visitor
from remediator.console.sources import Sources
from remediator.remediation.approvals import UnknownApproval
from remediator.store import AnswerTaken, ApprovalState, Verdict

PENDING_SHOWN = 100
DECIDED_SHOWN = 20
MAX_NOTE = 500  # as the desk keeps it

# What the page says after an answer, by the code its address carries.
RESULTS = {
    "approved": "Approved: the run goes on.",
    "counted": "Your approval is counted; the request needs more approvers.",
    "rejected": "Rejected: the run makes no more changes.",
    "not-approver": "Refused: you are not an approver of this request (the refusal is recorded).",
    "already": "Refused: you have already answered this request.",
    "closed": "Refused: the request is closed or past its expiry.",
    "unknown": "No such request.",
    "bad": "Choose approve or reject (a note of at most 500 characters).",
}
_VERDICTS = {"approve": Verdict.APPROVE, "reject": Verdict.REJECT}


async def show(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    store = sources.store
    pending = await store.approvals(ApprovalState.PENDING, PENDING_SHOWN)
    decided = [r for r in await store.approvals(None, DECIDED_SHOWN * 2) if not r.state.open]
    result = request.query.get("result", "")
    return await sources.page(
        "approvals.html",
        visitor,
        title="Approvals",
        active="approvals",
        pending=pending,
        decided=decided[:DECIDED_SHOWN],
        result=RESULTS.get(result, ""),
        result_code=result if result in RESULTS else "",
        answered=request.query.get("answered", ""),
        max_note=MAX_NOTE,
    )


async def answer(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    approval_id = request.match_info["id"]
    fields = await sources.form(request)
    verdict = _VERDICTS.get(fields.get("decision", ""))
    note = fields.get("note", "").strip()
    if verdict is None or len(note) > MAX_NOTE or "\x00" in note + approval_id:
        return _answered(approval_id, "bad")
    try:
        taken = await sources.desk.answer(
            approval_id, visitor.identity.name, "console", verdict, note
        )
    except UnknownApproval:
        return _answered(approval_id, "unknown")
    return _answered(taken.request.id, _result(taken, visitor.identity.name, sources))


def _result(taken: AnswerTaken, who: str, sources: Sources) -> str:
    request = taken.request
    if who not in request.approvers:
        return "not-approver"
    if not taken.counted:
        closed = not request.state.open or request.expires_at <= sources.now()
        return "closed" if closed else "already"
    if request.state is ApprovalState.PENDING:
        return "counted"
    return "approved" if request.state is ApprovalState.APPROVED else "rejected"


def _answered(approval_id: str, result: str) -> web.Response:
    query = urlencode({"answered": approval_id, "result": result})
    return web.Response(
        status=303, headers={"Location": f"/ui/approvals?{query}", "Cache-Control": "no-store"}
    )
