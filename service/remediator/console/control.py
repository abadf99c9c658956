"""Control (`/ui/control`): the kill switch. Whether remediation is paused, by whom, since
when and why, the pauses and resumes before, and (for an operator) the forms that pause with
a reason and resume: through the guards, as the API's do, recorded with the person's name."""

from __future__ import annotations

from aiohttp import web

from remediator.console.people import Visitor
from remediator.console.sources import Sources
from remediator.store import AuditEntry

MAX_REASON = 500  # as the API takes: shown in every blocked run's reason and its escalation
AUDIT_READ = 200  # the audit log's newest entries read for the pauses and resumes among them
SHOWN = 20


async def show(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    entries = await sources.store.audit_log(AUDIT_READ)
    switches = [entry for entry in entries if entry.kind in ("pause", "resume")][:SHOWN]
    return await sources.page(
        "control.html",
        visitor,
        title="Control",
        active="control",
        switches=[_switch(entry) for entry in switches],
        problem=PROBLEM if request.query.get("problem") == "reason" else "",
        max_reason=MAX_REASON,
    )


PROBLEM = f"Give a reason for the pause (at most {MAX_REASON} characters)."


async def pause(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    fields = await sources.form(request)
    reason = fields.get("reason", "").strip()
    if not reason or len(reason) > MAX_REASON or "\x00" in reason:
        return _see_other("/ui/control?problem=reason")
    await sources.guards.pause(reason, visitor.identity.name)
    return _see_other("/ui/control")


async def resume(sources: Sources, _: web.Request, visitor: Visitor) -> web.Response:
    await sources.guards.resume(visitor.identity.name)
    return _see_other("/ui/control")


def _switch(entry: AuditEntry) -> dict[str, object]:
    detail = entry.detail
    return {
        "at": entry.at,
        "kind": entry.kind,
        "by": str(detail.get("by", "")),
        "reason": str(detail.get("reason", "")),
        "again": detail.get("decided_again"),
    }


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
