"""A run (`/ui/runs/{id}`), the page every message links to: the alert as it fired (labels,
annotations), the decision and the guard's word, a timeline of the steps (duration, attempts,
what each read returned, the change each made or would make and its parameters), the approval
requests with every answer, the messages sent and how their delivery stands, and the policy
revision, linked to the file at that revision when REMEDIATOR_POLICY_REPOSITORY_URL is set.
Five look-ups, each by the run's id or its alert's key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from remediator.console.people import Visitor
from remediator.console.sources import Sources
from remediator.console.states import outcome_css
from remediator.engine.summary import PlanSummary
from remediator.notify.would_send import WOULD_SEND
from remediator.remediation.steps import PARAMS
from remediator.store import RunMessage, StepRecord

_STEP_CSS = {"ok": "state-remediated", "dry_run": "state-dry-run", "skipped": "state-skipped"}
DIRTY = "+dirty"  # a revision with local edits (runtime.live_policies.git_revision)


@dataclass(frozen=True)
class StepView:
    record: StepRecord
    change: bool  # a change (its parameters recorded beside it), else a read
    params: dict[str, Any] | None
    data: dict[str, Any]  # what it returned, the parameters aside

    @property
    def seconds(self) -> float:
        return (self.record.finished_at - self.record.started_at).total_seconds()

    @property
    def css(self) -> str:
        """Its outcome's badge: ok green, failed (or started, its answer never recorded) red,
        dry-run and skipped grey."""
        return _STEP_CSS.get(self.record.outcome, "state-escalated")


@dataclass(frozen=True)
class MessageView:
    message: RunMessage
    state: str  # queued, sent, would_send, folded, failed
    summary: str
    error: str


async def show(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    run_id = request.match_info["id"]
    store = sources.store
    run = await store.remediation(run_id) if "\x00" not in run_id else None
    if run is None:
        return await sources.page(
            "error.html", visitor, status=404, title="No such run", why=f"no run {run_id!r}"
        )
    steps = await store.steps(run.id)
    approvals = await store.approvals_of_run(run.id)
    messages = await store.run_messages(run.id)
    alert = await store.alert(run.fingerprint, run.starts_at)
    return await sources.page(
        "run.html",
        visitor,
        title=f"Run {run.id[:8]}",
        active="history",
        run=run,
        outcome_css=outcome_css(run.outcome),
        alert=alert,
        steps=[_step(step) for step in steps],
        approvals=approvals,
        messages=[_message(message) for message in messages],
        policy_link=policy_link(sources, run.policy, run.policy_revision),
        plan=plan_line(run.plan),
    )


def policy_link(sources: Sources, policy: str | None, revision: str | None) -> str | None:
    """The policy's file at the revision the run was decided by, when the repository's URL
    is set and the file is known (the policy in force names it)."""
    template = sources.settings.policy_repository_url
    if template is None or policy is None or not revision:
        return None
    file = sources.policies.current.files.get(policy)
    if file is None and "{file}" in template:
        return None
    commit = revision.removesuffix(DIRTY)
    return template.format(revision=quote(commit, safe=""), file=quote(file or "", safe=""))


def plan_line(plan: PlanSummary) -> str:
    """The plan in a line: `P2; steps: http.check, kubernetes.rollout_restart; verified
    within 10m; escalates to slack, email` (an escalation alone has no steps)."""
    parts = [str(plan.level)] if plan.level else []
    if plan.steps:
        parts.append(f"steps: {', '.join(plan.steps)}")
    if plan.verify_within:
        parts.append(f"verified within {plan.verify_within}")
    if plan.channels:
        parts.append(f"escalates to {', '.join(plan.channels)}")
    return "; ".join(parts) or "no plan"


def _step(step: StepRecord) -> StepView:
    data = dict(step.data)
    params = data.pop(PARAMS, None)
    change = isinstance(params, dict)
    return StepView(step, change, params if change else None, data)


def _message(message: RunMessage) -> MessageView:
    entry = message.entry
    if message.folded_at is not None:
        state = "folded"
    elif entry.sent_at is not None:
        state = "would send" if entry.last_error == WOULD_SEND else "sent"
    else:
        state = "failed" if entry.failed_at is not None else "queued"
    summary = entry.message.get("summary")
    error = "" if entry.last_error in (None, WOULD_SEND) else str(entry.last_error)
    return MessageView(message, state, summary if isinstance(summary, str) else "", error)
