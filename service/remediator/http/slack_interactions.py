"""POST /slack/interactions: Slack's Interactivity Request URL, where a click on a message's
Approve or Reject button lands.

Anyone who finds the URL can post to it, so nothing in a request is believed before its
signature: Slack signs each request with the app's signing secret (version v0: HMAC-SHA256 of
`v0:<X-Slack-Request-Timestamp>:<the raw body>`), a timestamp more than 5 minutes from now is
stale, and a signature seen before, by any replica (the store remembers it), is a replay. Such
a request is answered 401 and recorded in the audit log.

A verified click is one answer to the approval desk, by the Slack user who clicked: the desk
refuses (and records) someone who is not an approver, and the store counts each approver once.
Slack hears 200 at once; the message is updated afterwards through the click's response_url,
and only when that URL is Slack's own (REMEDIATOR_SLACK_RESPONSE_URL_PREFIX), so a signed
payload cannot aim the service anywhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from remediator import answers
from remediator.config import Settings, read_tokens
from remediator.http.bodies import BodyRefused, bounded_body, error_answer
from remediator.notify.channel_support import TIMEOUT, describe_error, is_web_url, truncate
from remediator.notify.slack import (
    ACTIONS_BLOCK,
    APPROVE_ACTION,
    BLOCKS_LIMIT,
    MESSAGE_TEXT_LIMIT,
    REJECT_ACTION,
    SECTION_LIMIT,
    STATUS_BLOCK,
    approval_buttons,
    fit,
    mention,
    people,
)
from remediator.remediation.approvals import ApprovalDesk, UnknownApproval
from remediator.store import (
    AnswerTaken,
    ApprovalRequest,
    ApprovalState,
    StoreUnavailable,
    Verdict,
)

log = structlog.get_logger("remediator.http.slack")

PATH = "/slack/interactions"
STALE_AFTER = 5 * 60  # seconds a request's timestamp may be from now, either way
# A signature is fresh for 5 minutes either side of its timestamp: remembered that long, it
# cannot come back while it would still pass.
REMEMBER_SIGNATURE = timedelta(minutes=10)
AUDIT_PER_MINUTE = 60  # refusals recorded a minute; past that, logged and counted only
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_VERDICTS = {APPROVE_ACTION: Verdict.APPROVE, REJECT_ACTION: Verdict.REJECT}
_ANSWER = {Verdict.APPROVE: "approval", Verdict.REJECT: "rejection"}
_WHY_TEXT = 1000


class SlackStore(Protocol):
    """What the route needs of the store: the signatures seen, and the audit log."""

    async def first_seen(self, key: str, at: datetime, keep: timedelta) -> bool: ...

    async def audit(
        self, kind: str, subject: str, detail: dict[str, object], at: datetime
    ) -> None: ...


class SigningSecrets:
    """The signing secret of REMEDIATOR_SLACK_SIGNING_SECRET, or each line of
    REMEDIATOR_SLACK_SIGNING_SECRET_FILE (two during a rotation), read again when the file
    changes; a file gone or empty accepts nothing."""

    def __init__(self, secret: str | None, file: Path | None = None) -> None:
        self._fixed = (secret.encode(),) if secret else ()
        self._file = file
        self._version: tuple[int, ...] | None = None
        self._read: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningSecrets:
        secret = settings.slack_signing_secret
        return cls(
            secret.get_secret_value() if secret else None, settings.slack_signing_secret_file
        )

    @property
    def configured(self) -> bool:
        return bool(self._fixed) or self._file is not None

    def current(self) -> tuple[bytes, ...]:
        if self._file is None:
            return self._fixed
        try:
            stat = self._file.stat()
            version: tuple[int, ...] = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            version = ()
        if version != self._version:
            self._version = version
            self._read = self._load(self._file)
        return self._read

    @staticmethod
    def _load(file: Path) -> tuple[bytes, ...]:
        try:
            return tuple(line.encode() for line in read_tokens(file))
        except ValueError as exc:
            log.error("Slack signing secret file unusable: refusing every click", problem=str(exc))
            return ()


class Refused(StrEnum):
    UNSIGNED = "unsigned"
    STALE = "stale"
    FORGED = "forged"
    REPLAYED = "replayed"


@dataclass(frozen=True)
class Refusal:
    kind: Refused
    reason: str  # the 401's short answer


def check_signature(
    secrets: tuple[bytes, ...],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
) -> Refusal | None:
    """None when `signature` is Slack's v0 signature of `body` sent at `timestamp`, fresh at
    `now`, with one of `secrets`; else why not. Purely computational."""
    if not timestamp or not signature:
        return Refusal(
            Refused.UNSIGNED,
            "unsigned: X-Slack-Signature and X-Slack-Request-Timestamp are required",
        )
    if not _TIMESTAMP.fullmatch(timestamp):
        return Refusal(Refused.FORGED, "forged: X-Slack-Request-Timestamp is not a Unix time")
    if abs(now - int(timestamp)) > STALE_AFTER:
        return Refusal(
            Refused.STALE, "stale: X-Slack-Request-Timestamp is more than 5 minutes from now"
        )
    signed = b"v0:" + timestamp.encode() + b":" + body
    given = signature.encode(errors="replace")
    # Every secret is compared, each in constant time.
    matches = [
        hmac.compare_digest(
            given, b"v0=" + hmac.new(s, signed, hashlib.sha256).hexdigest().encode()
        )
        for s in secrets
    ]
    if True not in matches:
        return Refusal(Refused.FORGED, "forged: the signature does not match")
    return None


class AuditBudget:
    """At most `per_minute` refusals recorded in the audit log a minute: a flood of forged
    requests must not fill it. The refusals past it are logged only, and the next entry
    recorded says how many there were."""

    def __init__(self, per_minute: int = AUDIT_PER_MINUTE) -> None:
        self._per_minute = per_minute
        self._minute = -1
        self._taken = 0
        self._skipped = 0

    def take(self, now: float) -> int | None:
        """The refusals left unrecorded since the last entry, or None: leave this one out."""
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._taken = minute, 0
        if self._taken >= self._per_minute:
            self._skipped += 1
            return None
        self._taken += 1
        skipped, self._skipped = self._skipped, 0
        return skipped


# The part of Slack's block_actions payload read here
# (https://api.slack.com/reference/interaction-payloads/block-actions).
class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _User(_Part):
    id: str = Field(min_length=1, max_length=100)
    username: str = Field("", max_length=200)


class _Action(_Part):
    action_id: str = Field(max_length=255)
    value: str = Field("", max_length=2000)


class _Message(_Part):
    blocks: list[dict[str, Any]] = Field(default_factory=list)


class _Payload(_Part):
    type: str
    user: _User | None = None
    actions: list[_Action] = Field(default_factory=list)
    response_url: str | None = None
    message: _Message | None = None


class BadPayload(ValueError):
    """Not the form Slack sends: one field, `payload`, holding its JSON."""


@dataclass(frozen=True)
class Click:
    """A click on Approve or Reject: by whom, on which request, and where to answer."""

    who: str  # the Slack user id
    username: str
    verdict: Verdict
    approval_id: str
    response_url: str | None
    blocks: tuple[dict[str, Any], ...]  # the message as Slack holds it: kept in the update


def click_of(body: bytes) -> Click | None:
    """The click a verified body holds; None for an interaction that is not one of ours."""
    try:
        fields = parse_qs(body.decode(), strict_parsing=True, max_num_fields=20)
        [text] = fields["payload"]
        payload = _Payload.model_validate(json.loads(text))
    except (ValueError, KeyError) as exc:  # a pydantic ValidationError is a ValueError
        raise BadPayload(
            "expected a form field `payload` holding Slack's JSON interaction payload"
        ) from exc
    if payload.type != "block_actions" or not payload.actions:
        return None
    action = payload.actions[0]
    verdict = _VERDICTS.get(action.action_id)
    if verdict is None or not action.value:
        return None
    if payload.user is None:
        raise BadPayload("a block_actions payload without its user")
    blocks = tuple(payload.message.blocks) if payload.message else ()
    user = payload.user
    return Click(user.id, user.username, verdict, action.value, payload.response_url, blocks)


@dataclass(frozen=True)
class Said:
    """What the updated message says of the request, and whether it still takes answers."""

    text: str  # mrkdwn
    open: bool


def said_of(click: Click, taken: AnswerTaken) -> Said:
    state = state_text(taken.request)
    if taken.counted:
        return Said(state, taken.request.state.open)
    why = fit(taken.why, _WHY_TEXT)
    refused = f"{mention(click.who)}'s {_ANSWER[click.verdict]} was not taken: {why}"
    return Said(f"{refused}\n{state}", taken.request.state.open)


def state_text(request: ApprovalRequest) -> str:
    """The request's state in a line: who approved (of how many), who rejected, or how it
    ended."""
    approved = request.approved_by
    if request.state is ApprovalState.PENDING:
        if not approved:
            needed = request.min_approvals
            return f"*Pending:* {needed} approval{'s' if needed > 1 else ''} needed"
        waiting = request.min_approvals - len(approved)
        return (
            f"*Pending:* approved by {people(approved, 800)}"
            f" ({len(approved)} of {request.min_approvals}); waiting for {waiting} more"
        )
    if request.state is ApprovalState.APPROVED:
        return f"*Approved* by {people(approved, 800)}: the run goes on"
    if request.state is ApprovalState.REJECTED:
        rejected = [a.who for a in request.answers if a.verdict is Verdict.REJECT]
        return f"*Rejected* by {people(rejected, 800)}: the change is not made"
    return f"*{request.state.value.capitalize()}*: the change is not made"


def update_of(click: Click, said: Said) -> dict[str, Any]:
    """The message as it was, with the request's state below its approval and the buttons
    kept only while it takes answers (Slack's response_url: replace_original)."""
    status = {
        "type": "section",
        "block_id": STATUS_BLOCK,
        "text": {"type": "mrkdwn", "text": truncate(said.text, SECTION_LIMIT)},
    }
    blocks: list[dict[str, Any]] = []
    placed = False
    for block in click.blocks:
        if block.get("block_id") == STATUS_BLOCK:
            continue
        if block.get("block_id") == ACTIONS_BLOCK:
            blocks += [status, block] if said.open else [status]
            placed = True
            continue
        blocks.append(block)
    if not placed:
        blocks.append(status)
        if said.open:
            blocks.append(approval_buttons(click.approval_id, confirm=click.approval_id))
    while len(blocks) > BLOCKS_LIMIT:  # ours are kept: the others are cut from the end
        ours = (STATUS_BLOCK, ACTIONS_BLOCK)
        last = max(n for n, block in enumerate(blocks) if block.get("block_id") not in ours)
        del blocks[last]
    text = truncate(said.text, MESSAGE_TEXT_LIMIT)
    return {"replace_original": True, "text": text, "blocks": blocks}


class SlackInteractions:
    def __init__(
        self,
        desk: ApprovalDesk,
        store: SlackStore,
        secrets: SigningSecrets,
        *,
        response_url_prefix: str,
        max_body_bytes: int,
        body_timeout: float,
        clock: Callable[[], float] = time.time,
        update_timeout: float = TIMEOUT,
    ) -> None:
        self._desk = desk
        self._store = store
        self._secrets = secrets
        self._prefix = response_url_prefix
        self._max_body_bytes = max_body_bytes
        self._body_timeout = body_timeout
        self._clock = clock
        self._update_timeout = aiohttp.ClientTimeout(total=update_timeout)
        self._audit_budget = AuditBudget()
        self._session: aiohttp.ClientSession | None = None
        self._updates: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls, settings: Settings, desk: ApprovalDesk, store: SlackStore
    ) -> SlackInteractions:
        return cls(
            desk,
            store,
            SigningSecrets.from_settings(settings),
            response_url_prefix=settings.slack_response_url_prefix,
            max_body_bytes=settings.max_body_bytes,
            body_timeout=settings.body_timeout_seconds,
        )

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.handle)]

    async def lifetime(self, _: web.Application) -> AsyncIterator[None]:
        """The client that updates messages, open while the application runs; at its stop,
        the updates under way finish (each within its timeout)."""
        async with aiohttp.ClientSession() as session:
            self._session = session
            yield
            if self._updates:
                await asyncio.wait(set(self._updates), timeout=self._update_timeout.total)
            late = set(self._updates)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            self._session = None

    async def handle(self, request: web.Request) -> web.Response:
        if not self._secrets.configured:
            return error_answer(404, "Slack interactivity is not configured")
        try:
            body = await bounded_body(request, self._max_body_bytes, self._body_timeout)
        except BodyRefused as refused:
            return refused.answer()
        now = self._clock()
        try:
            return await self._answer(request, body, now)
        except StoreUnavailable as exc:
            log.error("Slack click not taken: the store is unavailable", error=str(exc))
            return error_answer(503, "store unavailable: click again in a moment")

    async def _answer(self, request: web.Request, body: bytes, now: float) -> web.Response:
        signature = request.headers.get("X-Slack-Signature")
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        at = datetime.fromtimestamp(now, UTC)
        refusal = check_signature(self._secrets.current(), timestamp, signature, body, now)
        if refusal is None and not await self._first(signature, at):
            refusal = Refusal(Refused.REPLAYED, "replayed: this signed request came before")
        if refusal is not None:
            await self._record(request, refusal, at, now)
            return error_answer(401, refusal.reason)
        if request.content_type != "application/x-www-form-urlencoded":
            return error_answer(415, "expected Content-Type application/x-www-form-urlencoded")
        try:
            click = click_of(body)
        except BadPayload as exc:
            log.warning("Slack interaction payload invalid", problem=str(exc))
            return error_answer(400, str(exc))
        if click is None:
            return web.Response(status=200)
        said = await self._take(click)
        self._update_later(click, update_of(click, said))
        return web.Response(status=200)

    async def _first(self, signature: str | None, at: datetime) -> bool:
        """Whether no replica has seen this (verified) signature before."""
        return await self._store.first_seen(f"slack:{signature}", at, REMEMBER_SIGNATURE)

    async def _take(self, click: Click) -> Said:
        """The click as one answer to the desk, and what the message is to say of it."""
        note = f"Slack user {click.username}" if click.username else ""
        try:
            taken = await self._desk.answer(
                click.approval_id, who=click.who, via="slack", verdict=click.verdict, note=note
            )
        except UnknownApproval as exc:
            answer = _ANSWER[click.verdict]
            text = f"{mention(click.who)}'s {answer} was not taken: {fit(str(exc), 500)}"
            return Said(text, open=False)
        return said_of(click, taken)

    async def _record(
        self, request: web.Request, refusal: Refusal, at: datetime, now: float
    ) -> None:
        log.warning("Slack request refused", kind=refusal.kind.value, reason=refusal.reason)
        unrecorded = self._audit_budget.take(now)
        if unrecorded is None:
            return
        detail: dict[str, object] = {
            "reason": refusal.reason,
            "remote": request.remote or "",
            "user_agent": request.headers.get("User-Agent", "")[:200],
        }
        if unrecorded:
            detail["unrecorded_before"] = unrecorded
        await self._store.audit("slack_refused", refusal.kind.value, detail, at)

    def _update_later(self, click: Click, update: dict[str, Any]) -> None:
        url = click.response_url
        if url is None:
            return
        if not (url.startswith(self._prefix) and is_web_url(url)):
            log.warning(
                "Slack response_url outside REMEDIATOR_SLACK_RESPONSE_URL_PREFIX: not called",
                host=_host(url),
            )
            return
        task = asyncio.create_task(self._update(url, update))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def _update(self, url: str, update: dict[str, Any]) -> None:
        """POST the update; a failure is logged (the request's state is in the store)."""
        if self._session is None:
            log.warning("Slack message not updated: the service is stopping")
            return
        try:
            async with self._session.post(
                url, json=update, timeout=self._update_timeout, allow_redirects=False
            ) as response:
                answer = await answers.read(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack message not updated", host=_host(url), error=describe_error(exc))
            return
        if answer.status != 200:
            excerpt = truncate(answer.text().strip(), 300)
            log.warning("Slack refused the update", status=answer.status, answer=excerpt)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
