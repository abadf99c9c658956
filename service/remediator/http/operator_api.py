"""The operator API: the kill switch, the guards' state, the remediation history and the
approval requests, behind REMEDIATOR_API_TOKEN and the users of REMEDIATOR_USERS_FILE (see
`OperatorAuth`): a viewer reads, an operator also pauses, resumes and answers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, WithJsonSchema
from typing_extensions import TypedDict  # pydantic documents these; typing's needs 3.12

from remediator.alerts import NO_NUL
from remediator.engine.outcome import RunOutcome
from remediator.guards.base import BreakerState, GuardsUnavailable, Snapshot
from remediator.guards.guards import Guards
from remediator.http.auth import OperatorAuth
from remediator.http.bodies import BodyTimedOut, read_body
from remediator.identities import Identity, Role
from remediator.notify.would_send import WOULD_SEND
from remediator.policy.policyset import PoliciesInForce
from remediator.remediation.approvals import ApprovalDesk, UnknownApproval
from remediator.store import (
    AlertLog,
    AlertRecord,
    AnswerTaken,
    ApprovalAnswer,
    ApprovalRequest,
    Approvals,
    ApprovalState,
    BudgetLedger,
    Fold,
    FoldedMessage,
    Outbox,
    Pause,
    Remediation,
    RunLedger,
    RunMessage,
    RunQuery,
    StepRecord,
    StoreUnavailable,
    Verdict,
)

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An RFC 3339 time, as datetime.isoformat() writes it."""


MAX_PAUSE_REASON = 500
"""The longest pause reason accepted: it is shown by `guards`, in every blocked run's reason
and in escalations."""
MAX_OPERATOR_NAME = 200


_NO_NUL = "^[^\\x00]*$"
Reason = Annotated[
    str,
    StringConstraints(max_length=MAX_PAUSE_REASON),
    NO_NUL,
    WithJsonSchema({"type": "string", "pattern": _NO_NUL, "maxLength": MAX_PAUSE_REASON}),
]
OperatorName = Annotated[
    str,
    StringConstraints(max_length=MAX_OPERATOR_NAME),
    NO_NUL,
    WithJsonSchema({"type": "string", "pattern": _NO_NUL, "maxLength": MAX_OPERATOR_NAME}),
]


class PauseRequest(BaseModel):
    """POST /api/v1/pause; both optional, an empty body too."""

    model_config = ConfigDict(frozen=True, strict=True)
    reason: Reason | None = None  # default: "paused through the API"
    by: OperatorName | None = None  # default: the caller's address


class ResumeRequest(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True)
    by: OperatorName | None = None


MAX_NOTE = 500
"""The longest note an answer to an approval request carries, as the desk keeps it."""
Note = Annotated[
    str,
    StringConstraints(max_length=MAX_NOTE),
    NO_NUL,
    WithJsonSchema({"type": "string", "pattern": _NO_NUL, "maxLength": MAX_NOTE}),
]
CLIENT_HEADER = "X-Remediator-Client"
"""`cli` from `remediator approvals`: the audit says an answer came through the command line."""


class AnswerRequest(BaseModel):
    """POST /api/v1/approvals/{id}: approve or reject (an approver of the request), or cancel
    (any operator); a field this API does not know is refused, never ignored."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")
    decision: Literal["approve", "reject", "cancel"]
    note: Note = ""


class PauseJson(TypedDict):
    reason: str
    by: str
    at: Timestamp


class PauseState(TypedDict):
    """The kill switch: null while remediation runs."""

    paused: PauseJson | None


class RunJson(TypedDict):
    id: str
    alertname: str
    fingerprint: str
    startsAt: Timestamp
    event: str
    policy: str | None
    policyRevision: str | None
    outcome: str
    guard: str | None
    reason: str
    run: str | None
    target: str | None
    plan: dict[str, Any]
    started: Timestamp
    verifyUntil: Timestamp | None
    finished: Timestamp | None


class StepJson(TypedDict):
    phase: str
    position: int
    id: str | None
    action: str
    outcome: str
    message: str
    data: dict[str, Any]
    attempts: int
    started: Timestamp
    finished: Timestamp


class RunList(TypedDict):
    """A page of runs, newest first; `next`: the cursor of the page after (null: the last)."""

    runs: list[RunJson]
    next: str | None


DeliveryState = Literal["queued", "sent", "would_send", "folded", "failed"]


class MessageJson(TypedDict):
    """A message about a run and how its delivery stands: queued (not sent yet, retried while
    it fails), sent, would_send (dry-run: recorded, not delivered), folded (past its channel's
    budget, into a summary) or failed (given up)."""

    id: str
    channel: str
    action: str
    dedupKey: str
    state: DeliveryState
    summary: str | None
    attempts: int
    created: Timestamp
    sent: Timestamp | None
    failed: Timestamp | None
    folded: Timestamp | None
    error: str | None


class MessageList(TypedDict):
    run: str
    messages: list[MessageJson]


class AlertJson(TypedDict):
    fingerprint: str
    alertname: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: Timestamp
    endsAt: Timestamp | None
    firstReceived: Timestamp
    lastReceived: Timestamp
    deliveries: int


class AlertList(TypedDict):
    """The alerts last received, newest first."""

    alerts: list[AlertJson]


class AnswerJson(TypedDict):
    """One answer as given: `refused` when it did not count, its note saying why."""

    who: str
    via: str  # slack, api, cli, console, timeout
    verdict: Verdict
    note: str
    at: Timestamp


class ApprovalJson(TypedDict):
    """A run stopped before a change until `minApprovals` of `approvers` approve it; bound to
    `digest` (the policy, step, action, target and parameters as rendered). `params` are the
    step's, as the policy names them."""

    id: str
    run: str
    event: int
    fingerprint: str
    alertname: str
    startsAt: Timestamp
    policy: str
    position: int
    step: str
    action: str
    target: str
    params: dict[str, Any]
    digest: str
    approvers: list[str]
    minApprovals: int
    approvedBy: list[str]
    onTimeout: str
    state: ApprovalState
    requested: Timestamp
    expires: Timestamp
    decided: Timestamp | None


class ApprovalList(TypedDict):
    """Approval requests, newest first."""

    approvals: list[ApprovalJson]


class ApprovalAudit(ApprovalJson):
    """A request with every answer to it, oldest first."""

    answers: list[AnswerJson]


class ApprovalDetail(ApprovalAudit):
    """... and what it shows its approvers: the change (its dry-run), the diagnostics so far,
    the guards' state."""

    shown: dict[str, Any]


class ApprovalAnswered(ApprovalDetail):
    """The request after an answer; `counted` false with `why` for an answer not taken (an
    approver approving twice)."""

    counted: bool
    why: str


class RunDetail(RunJson):
    steps: list[StepJson]
    approvals: list[ApprovalAudit]


class FoldJson(TypedDict):
    """A summary of the messages a channel folded past its budget (`summary` null: folded,
    waiting for their summary)."""

    summary: str | None
    channel: str
    messages: int
    sent: Timestamp | None


class FoldList(TypedDict):
    folds: list[FoldJson]


class FoldedJson(TypedDict):
    id: str
    channel: str
    action: str
    dedupKey: str
    alertname: str
    level: str
    created: Timestamp
    folded: Timestamp


class FoldDetail(TypedDict):
    """Every message one summary folded, oldest first (a page of them: limit, offset)."""

    summary: str
    messages: list[FoldedJson]


class BreakerJson(TypedDict):
    key: str
    state: BreakerState
    recent_failures: int
    opened_at: float | None
    trial_until: float | None


class WindowJson(TypedDict):
    max: int
    per_seconds: float
    used: int
    remaining: int


class RateLimitJson(TypedDict):
    key: str
    windows: list[WindowJson]


class ChangedTargetJson(TypedDict):
    target: str
    changed_at: float


class BlastRadiusJson(TypedDict):
    """A blast radius (`max_targets`): the distinct targets changed in its window, oldest first."""

    key: str  # the policy, or "(all policies)" for the guard rails' own
    count: int
    per_seconds: float
    remaining: int
    changed: list[ChangedTargetJson]


class LeaseJson(TypedDict):
    target: str
    run: str
    token: int
    expires_in_seconds: float


class GuardSnapshot(TypedDict):
    breakers: list[BreakerJson]
    rate_limits: list[RateLimitJson]
    blast_radii: list[BlastRadiusJson]
    leases: list[LeaseJson]
    runs_in_flight: int


class GuardState(GuardSnapshot):
    """The kill switch, breakers, rate-limit budgets, blast radii, target leases and runs in
    flight."""

    paused: PauseJson | None
    max_concurrent_runs: int


class OperatorStore(AlertLog, RunLedger, Outbox, BudgetLedger, Approvals, Protocol):
    """The alerts, the runs and their messages, the messages folded past the channels'
    budgets, and the approval requests."""


class OperatorApi:
    def __init__(
        self,
        store: OperatorStore,
        guards: Guards,
        policies: PoliciesInForce,
        auth: OperatorAuth,
        body_timeout: float = 10.0,
        *,
        desk: ApprovalDesk | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._body_timeout = body_timeout
        self._store = store
        self._guards = guards
        self._policies = policies
        self._auth = auth
        self._authorize = auth.authorize
        self._desk = desk or ApprovalDesk(store, clock=clock)
        self._clock = clock  # the desk's: whether a request is past its expiry

    def is_operator(self, request: web.Request) -> bool:
        """Whether the request carries the operator token: /health shows such a caller its
        checks."""
        return self._auth.allows(request)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/guards", self.guards),
            web.post("/api/v1/pause", self.pause),
            web.post("/api/v1/resume", self.resume),
            web.get("/api/v1/runs", self.runs),
            web.get("/api/v1/runs/{id}", self.run),
            web.get("/api/v1/runs/{id}/messages", self.messages),
            web.get("/api/v1/alerts", self.alerts),
            web.get("/api/v1/folds", self.folds),
            web.get("/api/v1/folds/{id}", self.fold),
            web.get("/api/v1/approvals", self.approvals),
            web.get("/api/v1/approvals/{id}", self.approval),
            web.post("/api/v1/approvals/{id}", self.answer),
        ]

    async def runs(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        # A typo (`?alert=`) must not quietly list every run.
        _known(request, *RUN_FILTERS)
        limit = _whole(request, "limit", 50, 1, 1000)
        query = RunQuery(
            limit=limit + 1,  # one more: whether there is a page after
            alertname=_text(request.query.get("alertname"), "alertname"),
            outcome=_outcome(request.query.get("outcome")),
            policy=_text(request.query.get("policy"), "policy"),
            target=_text(request.query.get("target"), "target"),
            since=_moment(request, "since"),
            until=_moment(request, "until"),
            after=_cursor(request.query.get("cursor")),
        )
        with _unavailable_as_503():
            found = await self._store.find_remediations(query)
        page, more = found[:limit], len(found) > limit
        following = _cursor_of(page[-1]) if more else None
        return web.json_response(RunList(runs=[_run_json(r) for r in page], next=following))

    async def messages(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        remediation_id = request.match_info["id"]
        _text(remediation_id, "the run id")
        _known(request)
        with _unavailable_as_503():
            found = await self._store.remediation(remediation_id)
            messages = await self._store.run_messages(remediation_id) if found else []
        if found is None:
            raise web.HTTPNotFound(reason=f"no run {remediation_id!r}")
        listed = [_message_json(message) for message in messages]
        return web.json_response(MessageList(run=remediation_id, messages=listed))

    async def alerts(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        _known(request, "limit")
        limit = _whole(request, "limit", 50, 1, 1000)
        with _unavailable_as_503():
            found = await self._store.recent_alerts(limit)
        return web.json_response(AlertList(alerts=[alert_json(record) for record in found]))

    async def run(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        remediation_id = request.match_info["id"]
        _text(remediation_id, "the run id")
        with _unavailable_as_503():
            found = await self._store.remediation(remediation_id)
            steps = await self._store.steps(remediation_id) if found else []
            approvals = await self._store.approvals_of_run(remediation_id) if found else []
        if found is None:
            raise web.HTTPNotFound(reason=f"no run {remediation_id!r}")
        detail = RunDetail(
            **_run_json(found),
            steps=[_step_json(step) for step in steps],
            approvals=[_approval_audit(approval) for approval in approvals],
        )
        return web.json_response(detail)

    async def folds(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        _known(request, "limit")
        limit = _whole(request, "limit", 50, 1, 1000)
        with _unavailable_as_503():
            found = await self._store.folds(limit)
        return web.json_response(FoldList(folds=[_fold_json(fold) for fold in found]))

    async def fold(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        summary = request.match_info["id"]
        _text(summary, "the summary id")
        _known(request, "limit", "offset")
        limit = _whole(request, "limit", 1000, 1, 10_000)
        offset = _whole(request, "offset", 0, 0, 10**9)
        with _unavailable_as_503():
            found = await self._store.folded_into(summary, limit, offset)
        if not found and offset == 0:
            raise web.HTTPNotFound(reason=f"no summary {summary!r} with messages folded into it")
        detail = FoldDetail(summary=summary, messages=[_folded_json(m) for m in found])
        return web.json_response(detail)

    async def guards(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        with _unavailable_as_503():
            paused = await self._guards.paused()
            snapshot = await self._guards.snapshot(self._policies.current)
        state = GuardState(
            paused=_pause(paused),
            **_snapshot(snapshot),
            max_concurrent_runs=self._policies.current.guardrails.max_concurrent_runs,
        )
        return web.json_response(state)

    async def pause(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.OPERATOR)
        body = await _parsed(request, PauseRequest, self._body_timeout)
        reason = body.reason or "paused through the API"
        by = body.by or request.remote or "api"
        with _unavailable_as_503():
            pause = await self._guards.pause(reason, by)
        return web.json_response(PauseState(paused=_pause(pause)))

    async def resume(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.OPERATOR)
        body = await _parsed(request, ResumeRequest, self._body_timeout)
        by = body.by or request.remote or "api"
        with _unavailable_as_503():
            await self._guards.resume(by)
        return web.json_response(PauseState(paused=None))

    async def approvals(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        _known(request, "state", "limit")
        state = _approval_state(request.query.get("state", ApprovalState.PENDING.value))
        limit = _whole(request, "limit", 50, 1, 1000)
        with _unavailable_as_503():
            found = await self._store.approvals(state, limit)
        return web.json_response(ApprovalList(approvals=[_approval_json(a) for a in found]))

    async def approval(self, request: web.Request) -> web.Response:
        self._authorize(request, Role.VIEWER)
        approval_id = request.match_info["id"]
        _text(approval_id, "the approval id")
        _known(request)
        with _unavailable_as_503(), _unknown_as_404():
            found = await self._desk.find(approval_id)
        return web.json_response(_approval_detail(found))

    async def answer(self, request: web.Request) -> web.Response:
        """Approve, reject or cancel, as the caller: the desk applies the one rule every
        channel's answers go through, and records an answer it refuses."""
        identity = self._authorize(request, Role.OPERATOR)
        approval_id = request.match_info["id"]
        _text(approval_id, "the approval id")
        _known(request)
        body = await _parsed(request, AnswerRequest, self._body_timeout)
        verdict = Verdict(body.decision)
        with _unavailable_as_503(), _unknown_as_404():
            taken = await self._desk.answer(
                approval_id, identity.name, _via(request), verdict, body.note
            )
        status = _answered_status(taken, identity, verdict, self._now())
        if status != 200:
            return web.json_response({"error": taken.why}, status=status)
        answered = ApprovalAnswered(
            **_approval_detail(taken.request), counted=taken.counted, why=taken.why
        )
        return web.json_response(answered)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _via(request: web.Request) -> str:
    client = request.headers.get(CLIENT_HEADER, "")
    return "cli" if client.strip().lower() == "cli" else "api"


def _answered_status(taken: AnswerTaken, who: Identity, verdict: Verdict, now: datetime) -> int:
    """403: not an approver (the desk recorded the refusal); 409: the request is closed or
    past its expiry (the store recorded the refusal); 200 otherwise, counted or not."""
    request = taken.request
    if verdict in (Verdict.APPROVE, Verdict.REJECT) and who.name not in request.approvers:
        return 403
    if not taken.counted and (not request.state.open or request.expires_at <= now):
        return 409
    return 200


@contextlib.contextmanager
def _unknown_as_404() -> Iterator[None]:
    try:
        yield
    except UnknownApproval as exc:
        raise web.HTTPNotFound(reason=str(exc)) from None


APPROVAL_STATES = (*(state.value for state in ApprovalState), "all")


def _approval_state(value: str) -> ApprovalState | None:
    """?state=: one state, or `all` (None)."""
    if value not in APPROVAL_STATES:
        raise _bad_request(f"state: unknown state {value!r} (known: {', '.join(APPROVAL_STATES)})")
    return None if value == "all" else ApprovalState(value)


Body = TypeVar("Body", PauseRequest, ResumeRequest, AnswerRequest)


async def _parsed(request: web.Request, model: type[Body], within: float) -> Body:
    """The body as its model, an absent or empty body as the defaults; a 400 naming what is
    wrong otherwise (pydantic's parser bounds nesting and numbers, so no input is a 500), a
    408 when it does not arrive `within` seconds."""
    try:
        body = await read_body(request, within) if request.can_read_body else b""
    except BodyTimedOut as exc:
        raise web.HTTPRequestTimeout(reason=str(exc), headers={"Connection": "close"}) from None
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        [first, *_] = exc.errors(include_url=False, include_input=False)
        if first["type"] == "json_invalid":
            raise _bad_request(f"the body is not JSON: {first['msg']}") from None
        if first["type"] == "model_type":
            raise _bad_request("the body must be a JSON object") from None
        field = ".".join(str(part) for part in first["loc"])
        raise _bad_request(f"{field}: {first['msg']}") from None


def _text(value: str | None, what: str) -> str | None:
    """A query or path value the store can look up: PostgreSQL text holds no NUL."""
    if value is not None and "\x00" in value:
        raise _bad_request(f"{what} must not contain a NUL character")
    return value


def _known(request: web.Request, *known: str) -> None:
    """A typo in a query parameter is refused, not quietly ignored."""
    unknown = sorted(set(request.query) - set(known))
    if unknown:
        raise _bad_request(f"unknown query parameter {unknown[0]!r} (known: {', '.join(known)})")


def _whole(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(request.query.get(name, str(default)))
    except ValueError:
        raise _bad_request(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise _bad_request(f"{name} must be from {low} to {high}")
    return value


RUN_FILTERS = ("limit", "cursor", "alertname", "outcome", "policy", "target", "since", "until")


def _outcome(value: str | None) -> str | None:
    if value is not None and value not in set(RunOutcome):
        known = ", ".join(outcome.value for outcome in RunOutcome)
        raise _bad_request(f"outcome: unknown outcome {value!r} (known: {known})")
    return value


def _moment(request: web.Request, name: str) -> datetime | None:
    """A time filter: RFC 3339 with its offset (2027-01-15T08:00:00Z)."""
    text = request.query.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _bad_request(f"{name}: expected an RFC 3339 time with its offset, got {text!r}")
    return moment


def _cursor_of(run: Remediation) -> str:
    """Opaque to clients: where the next page starts, after this run."""
    raw = json.dumps([run.started_at.isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(text: str | None) -> tuple[datetime, str] | None:
    if text is None:
        return None
    try:
        started, run_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return datetime.fromisoformat(started), str(run_id)
    except (ValueError, TypeError):
        raise _bad_request("cursor: not a cursor this API gave (use `next` as it is)") from None


def _delivery_state(message: RunMessage) -> DeliveryState:
    entry = message.entry
    if message.folded_at is not None:
        return "folded"
    if entry.sent_at is not None:
        return "would_send" if entry.last_error == WOULD_SEND else "sent"
    return "failed" if entry.failed_at is not None else "queued"


def _message_json(message: RunMessage) -> MessageJson:
    entry = message.entry
    summary = entry.message.get("summary")
    return MessageJson(
        id=entry.id,
        channel=entry.channel,
        action=entry.action,
        dedupKey=entry.dedup_key,
        state=_delivery_state(message),
        summary=summary if isinstance(summary, str) else None,
        attempts=entry.attempts,
        created=entry.created_at.isoformat(),
        sent=_iso(entry.sent_at),
        failed=_iso(entry.failed_at),
        folded=_iso(message.folded_at),
        error=None if entry.last_error == WOULD_SEND else entry.last_error,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def alert_json(record: AlertRecord) -> AlertJson:
    """An alert as the API shows it, for the command line's `alerts --json` too."""
    return AlertJson(
        fingerprint=record.fingerprint,
        alertname=record.alertname,
        status=record.status.value,
        labels=record.labels,
        annotations=record.annotations,
        startsAt=record.starts_at.isoformat(),
        endsAt=_iso(record.ends_at),
        firstReceived=record.first_received.isoformat(),
        lastReceived=record.last_received.isoformat(),
        deliveries=record.deliveries,
    )


def _camel(value: Any) -> Any:
    """Keys in camelCase all the way down, as everywhere in the API (a plan is stored with
    snake_case keys)."""
    if isinstance(value, dict):
        return {_camel_key(key): _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _fold_json(fold: Fold) -> FoldJson:
    sent = fold.sent_at.isoformat() if fold.sent_at else None
    return FoldJson(summary=fold.summary, channel=fold.channel, messages=fold.messages, sent=sent)


def _folded_json(m: FoldedMessage) -> FoldedJson:
    return FoldedJson(
        id=m.id,
        channel=m.channel,
        action=m.action,
        dedupKey=m.dedup_key,
        alertname=m.alertname,
        level=m.level,
        created=m.created_at.isoformat(),
        folded=m.folded_at.isoformat(),
    )


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=reason)


@contextlib.contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """The store or the guard state out of reach: 503, saying which, for the client to retry."""
    try:
        yield
    except StoreUnavailable as exc:
        raise web.HTTPServiceUnavailable(reason=f"store unavailable: {exc}") from exc
    except GuardsUnavailable as exc:
        raise web.HTTPServiceUnavailable(reason=f"guard state unavailable: {exc}") from exc


def remediation_json(remediation: Remediation) -> dict[str, Any]:
    """A run as the API shows it, for the command line's `history --json` too."""
    return dict(_run_json(remediation))


def step_json(step: StepRecord) -> dict[str, Any]:
    return dict(_step_json(step))


def _run_json(r: Remediation) -> RunJson:
    return RunJson(
        id=r.id,
        alertname=r.alertname,
        fingerprint=r.fingerprint,
        startsAt=r.starts_at.isoformat(),
        event=r.kind,
        policy=r.policy,
        policyRevision=r.policy_revision,
        outcome=r.outcome,
        guard=r.guard,
        reason=r.reason,
        run=r.run_id,
        target=r.target,
        plan=_camel(r.plan.as_json()),
        started=r.started_at.isoformat(),
        verifyUntil=r.verify_until.isoformat() if r.verify_until else None,
        finished=r.finished_at.isoformat() if r.finished_at else None,
    )


def _step_json(step: StepRecord) -> StepJson:
    return StepJson(
        phase=step.phase,
        position=step.position,
        id=step.step_id,
        action=step.action,
        outcome=step.outcome,
        message=step.message,
        data=step.data,
        attempts=step.attempts,
        started=step.started_at.isoformat(),
        finished=step.finished_at.isoformat(),
    )


def _approval_json(r: ApprovalRequest) -> ApprovalJson:
    return ApprovalJson(
        id=r.id,
        run=r.remediation_id,
        event=r.event_id,
        fingerprint=r.fingerprint,
        alertname=r.alertname,
        startsAt=r.starts_at.isoformat(),
        policy=r.policy,
        position=r.position,
        step=r.step,
        action=r.action,
        target=r.target,
        params=r.params,
        digest=r.digest,
        approvers=list(r.approvers),
        minApprovals=r.min_approvals,
        approvedBy=list(r.approved_by),
        onTimeout=r.on_timeout,
        state=r.state,
        requested=r.requested_at.isoformat(),
        expires=r.expires_at.isoformat(),
        decided=_iso(r.decided_at),
    )


def _answer_json(answer: ApprovalAnswer) -> AnswerJson:
    return AnswerJson(
        who=answer.who,
        via=answer.via,
        verdict=answer.verdict,
        note=answer.note,
        at=answer.at.isoformat(),
    )


def _approval_audit(r: ApprovalRequest) -> ApprovalAudit:
    return ApprovalAudit(**_approval_json(r), answers=[_answer_json(a) for a in r.answers])


def _approval_detail(r: ApprovalRequest) -> ApprovalDetail:
    return ApprovalDetail(**_approval_audit(r), shown=r.shown)


def approval_audit_json(request: ApprovalRequest) -> dict[str, Any]:
    """A request with its answers as the API shows it, for `history --run` too."""
    return dict(_approval_audit(request))


def _pause(pause: Pause | None) -> PauseJson | None:
    if pause is None:
        return None
    return PauseJson(reason=pause.reason, by=pause.paused_by, at=pause.paused_at.isoformat())


def _snapshot(snapshot: Snapshot) -> GuardSnapshot:
    return GuardSnapshot(
        breakers=[
            BreakerJson(
                key=key,
                state=view.state,
                recent_failures=view.recent_failures,
                opened_at=view.opened_at,
                trial_until=view.trial_until,
            )
            for key, view in sorted(snapshot.breakers.items())
        ],
        rate_limits=[
            RateLimitJson(
                key=key,
                windows=[
                    WindowJson(
                        max=budget.window.max,
                        per_seconds=budget.window.per,
                        used=budget.used,
                        remaining=budget.remaining,
                    )
                    for budget in budgets
                ],
            )
            for key, budgets in sorted(snapshot.budgets.items())
        ],
        blast_radii=[
            BlastRadiusJson(
                key=key,
                count=view.reach.count,
                per_seconds=view.reach.per,
                remaining=view.remaining,
                changed=[
                    ChangedTargetJson(target=target, changed_at=at) for target, at in view.changed
                ],
            )
            for key, view in sorted(snapshot.reaches.items())
        ],
        leases=[
            LeaseJson(
                target=lease.target,
                run=lease.owner,
                token=lease.token,
                expires_in_seconds=round(lease.expires_at - snapshot.now, 1),
            )
            for lease in snapshot.leases
        ],
        runs_in_flight=snapshot.runs_in_flight,
    )
