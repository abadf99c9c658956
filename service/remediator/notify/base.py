"""What a channel is given to send, and how it says a send failed.

A message carries everything a person needs to act without opening Remediator: the alert, its
level, what was checked and tried with each result, and the links. Channels render it their way
(an Events API v2 payload, Block Kit, a plain-text and HTML email); the outbox decides when and
how often to send it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Action = Literal["trigger", "resolve"]


@dataclass(frozen=True)
class StepLine:
    action: str
    outcome: str  # ok, failed, skipped, dry_run
    message: str


@dataclass(frozen=True)
class ApprovalAsk:
    """A run waits for a person to approve its next change: what to answer, and to whom."""

    id: str  # the request: POST /api/v1/approvals/<id>, remediator approvals approve <id>
    step: str  # the step's id, else its action
    action: str
    change: str  # what the change would do: its dry-run's words
    approvers: tuple[str, ...]
    min_approvals: int
    expires_at: str  # ISO 8601
    on_timeout: str  # reject or approve

    def as_json(self) -> dict[str, Any]:
        return {**vars(self), "approvers": list(self.approvers)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApprovalAsk:
        return cls(**{**data, "approvers": tuple(data["approvers"])})


@dataclass(frozen=True)
class Message:
    id: str  # the outbox entry: a channel may use it as an idempotency key
    action: Action  # trigger: open or update the incident; resolve: close it
    dedup_key: str  # the same for every message about one incident, on every replica
    level: str  # P1..P4
    summary: str  # one line: what is wrong and what Remediator did
    alertname: str
    status: str  # firing or resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    policy: str | None
    target: str | None
    outcome: str  # the remediation's: failed, blocked, no_match, verifying, succeeded, ...
    reason: str
    steps: tuple[StepLine, ...] = ()
    links: dict[str, str] = field(default_factory=dict)  # runbook, alert source, silence
    # What diagnostic steps read; its text instead when cut to fit a channel's limits.
    diagnostics: dict[str, Any] | str = field(default_factory=dict)
    run_id: str | None = None  # the remediation: /ui/runs/<run_id> (and /api/v1/runs/...)
    run_url: str | None = None  # that, at REMEDIATOR_EXTERNAL_URL (also in `links`)
    severity_why: str = ""  # why this level: the policy's severity or the alert's label
    next: str = ""  # what happens next: verifying until 14:05 UTC, paging P1, nothing more
    started_at: str | None = None  # when the alert started firing (ISO 8601)
    approval: ApprovalAsk | None = None  # the run waits for this approval


# The labels that say where an alert is, as a message shows them.
KEY_LABELS = (("instance", "Instance"), ("namespace", "Namespace"), ("target", "Target"))


def headline(message: Message) -> str:
    """The message's one line: its summary, which names the alert (unless it begins with what
    happened to the page, a fallback or a climb: then the alert's name first)."""
    if message.summary.startswith(message.alertname):
        return message.summary
    return f"{message.alertname}: {message.summary}"


def key_facts(message: Message) -> list[tuple[str, str]]:
    """Where the alert is (instance, namespace, the target acted on) and the run: what a
    responder reads before the details."""
    facts = [("Status", message.status), ("Severity", severity_text(message))]
    facts += [("Outcome", message.outcome), ("Policy", message.policy or "—")]
    target = message.target or message.labels.get("target")
    facts += [
        (title, value)
        for name, title in KEY_LABELS
        if (value := target if name == "target" else message.labels.get(name))
    ]
    if message.started_at:
        facts.append(("Started", message.started_at))
    if message.run_id:
        facts.append(("Run", message.run_id))
    return facts


def severity_text(message: Message) -> str:
    return f"{message.level} ({message.severity_why})" if message.severity_why else message.level


def incident_lines(message: Message) -> list[tuple[str, str]]:
    """What the incident templates open with, each said once: the alert's summary and
    description, the reason (unless the headline says them already), and what happens next."""
    said = headline(message)
    lines = [
        (title, text)
        for title, text in (
            ("Summary", message.annotations.get("summary", "")),
            ("Description", message.annotations.get("description", "")),
            ("Reason", message.reason),
        )
        if text and " ".join(text.split()) not in said
    ]
    if message.next:
        lines.append(("Next", message.next))
    return lines


def diagnostics_text(message: Message) -> str:
    """The diagnostics as indented JSON: plain, exact, and readable in any channel."""
    if isinstance(message.diagnostics, str):
        return message.diagnostics
    return json.dumps(message.diagnostics, indent=2, sort_keys=True, default=str)


class PermanentFailure(Exception):
    """The channel refused the message (e.g. 400): sending it again would fail again."""


class TransientFailure(Exception):
    """Worth another try later (timeout, 429, 5xx); `retry_after` when the channel said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    async def send(self, message: Message) -> None:
        """Deliver once; raise TransientFailure or PermanentFailure."""
        ...

    def describe(self) -> dict[str, Any]:
        """What it sends to, secrets left out: for /health and the start-up log."""
        ...


@runtime_checkable
class DigestChannel(Channel, Protocol):
    async def send_digest(self, messages: list[Message]) -> None:
        """Deliver many messages as one (a daily digest); raise as `send` does."""
        ...
