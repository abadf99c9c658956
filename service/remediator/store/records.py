"""The store's rows as values: what every role of the store takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from remediator.alerts import Alert, AlertStatus
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary


@dataclass(frozen=True)
class IntakeResult:
    accepted: int  # alert states seen for the first time, each queued as one event
    duplicates: int  # alert states delivered before (repeat_interval, HA peers)


@dataclass(frozen=True)
class AlertRecord:
    """One episode of an alert: a fingerprint and the startsAt of that firing."""

    fingerprint: str
    alertname: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    first_received: datetime
    last_received: datetime
    deliveries: int
    generator_url: str = ""  # the Prometheus expression that fired it
    external_url: str = ""  # the Alertmanager that sent it

    def as_alert(self, status: AlertStatus) -> Alert:
        """The episode as the engine decides it, in the state an event brought."""
        return Alert(
            status=status,
            labels=self.labels,
            annotations=self.annotations,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            fingerprint=self.fingerprint,
        )


@dataclass(frozen=True)
class AlertEvent:
    """A queued state change of an alert episode, for the engine to claim."""

    id: int
    fingerprint: str
    starts_at: datetime
    kind: AlertStatus
    notification_id: int
    enqueued_at: datetime
    attempts: int = 0  # claims so far: above 1, an earlier worker did not finish it
    # Queued again at this resume of the kill switch: what was recorded for it before does
    # not count as having handled it (statements.DECIDE_AGAIN).
    decide_again_at: datetime | None = None


@dataclass(frozen=True)
class RunRecord:
    """A remediation run as the guards admitted it, and how it ended."""

    id: str
    policy: str
    fingerprint: str
    target: str
    limit_keys: tuple[str, ...]
    breaker_key: str
    breaker_failures: int
    breaker_window: float  # seconds
    breaker_cooldown: float
    admitted_at: datetime
    finished_at: datetime | None = None
    succeeded: bool | None = None
    reach_keys: tuple[str, ...] = ()  # the blast radii its target counted in


@dataclass(frozen=True)
class ChannelBacklog:
    """A channel's messages due and not yet sent (retries included), and since when the oldest
    of them is due: a retried message since it was queued, one never tried since it fell due
    (a digest's email waits for its hour without counting)."""

    channel: str
    messages: int
    oldest_due: datetime


@dataclass(frozen=True)
class Backlog:
    """What the service has still to do, as /metrics shows it: read in a few indexed look-ups."""

    events: int  # queued alert state changes not yet done
    oldest_event: datetime | None  # when the oldest of them was queued
    channels: tuple[ChannelBacklog, ...]  # by channel name; the outbox's own ones left out
    # waiting, running, verifying, awaiting_approval: how many
    in_flight: tuple[tuple[RunOutcome, int], ...]
    paused_at: datetime | None  # the kill switch, since when it is on


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    kind: str  # breaker, pause, resume, ...
    subject: str
    detail: dict[str, object]


@dataclass(frozen=True)
class Pause:
    reason: str
    paused_by: str
    paused_at: datetime


@dataclass(frozen=True)
class Remediation:
    """What happened for one alert event: the decision, a block, or a run and its end."""

    id: str
    event_id: int
    fingerprint: str
    starts_at: datetime
    alertname: str
    kind: str  # the event: firing or resolved
    policy: str | None
    policy_revision: str | None
    outcome: RunOutcome
    guard: str | None
    reason: str
    run_id: str | None
    target: str | None
    plan: PlanSummary
    started_at: datetime
    verify_until: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class FiringAlert:
    """An alert episode still firing, with the latest remediation of it (None: not decided
    yet): what the console's Now page shows."""

    alert: AlertRecord
    latest: Remediation | None


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list, newest first: each filter set narrows, `after` pages on from the
    (started_at, id) of the last run of the page before."""

    limit: int = 50
    alertname: str | None = None
    outcome: str | None = None
    policy: str | None = None
    target: str | None = None
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class StepRecord:
    remediation_id: str
    phase: str  # steps, on_resolved, verify
    position: int
    step_id: str | None
    action: str
    outcome: str
    message: str
    data: dict[str, Any]
    attempts: int
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class OutboxEntry:
    """One message for one channel, from queued to sent (or given up)."""

    id: str
    channel: str
    action: str  # trigger or resolve
    dedup_key: str
    remediation_id: str | None
    message: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class RunMessage:
    """A message about a run, as its outbox row stands; `folded_at` set: folded past its
    channel's budget, not sent."""

    entry: OutboxEntry
    folded_at: datetime | None


@dataclass(frozen=True)
class FoldedMessage:
    """A message not sent past its channel's budget, folded into a summary (`folded_into`,
    None until the summary is sent and takes it in)."""

    id: str
    channel: str
    action: str
    dedup_key: str
    alertname: str
    level: str
    created_at: datetime
    folded_at: datetime
    folded_into: str | None


@dataclass(frozen=True)
class Fold:
    """A summary and how many messages it folds (`summary` None: folded, not yet summarised)."""

    summary: str | None
    channel: str
    messages: int
    sent_at: datetime | None


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    VOID = "void"  # what it was bound to changed (a reload, a new alert state) or resolved

    @property
    def open(self) -> bool:
        return self is ApprovalState.PENDING


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    REFUSED = "refused"  # an answer not taken: not an approver, already answered, too late


@dataclass(frozen=True)
class ApprovalAnswer:
    """One answer to an approval request, as given: who, through what, when, and what."""

    approval_id: str
    who: str
    via: str  # slack, api, cli, console, timeout
    verdict: Verdict
    note: str
    at: datetime


@dataclass(frozen=True)
class ApprovalRequest:
    """A run stopped before a change until `min_approvals` of `approvers` approve it, bound to
    `digest` (the policy, step, action, target and parameters as rendered)."""

    id: str
    remediation_id: str
    event_id: int
    fingerprint: str
    starts_at: datetime
    alertname: str
    policy: str
    position: int  # the step's place in the policy's steps
    step: str  # its id, else its action
    action: str
    target: str
    params: dict[str, Any]
    digest: str
    approvers: tuple[str, ...]
    min_approvals: int
    on_timeout: str
    requested_at: datetime
    expires_at: datetime
    state: ApprovalState = ApprovalState.PENDING
    # What the request shows: the change it would make (its dry-run), the diagnostics so far,
    # the guards' state.
    shown: dict[str, Any] = field(default_factory=dict)
    decided_at: datetime | None = None
    answers: tuple[ApprovalAnswer, ...] = ()

    @property
    def approved_by(self) -> tuple[str, ...]:
        return tuple(a.who for a in self.answers if a.verdict is Verdict.APPROVE)


@dataclass(frozen=True)
class AnswerTaken:
    """What `answer_approval` did: the request after it, and whether the answer counted."""

    request: ApprovalRequest
    counted: bool
    why: str  # why not, when it did not count


@dataclass(frozen=True)
class Demotion:
    """A policy whose runs kept failing to fix its alert: its changes ask first, until it is
    promoted again or a new revision of it is loaded."""

    policy: str
    revision: str  # the policy's own digest when it was demoted
    reason: str
    demoted_at: datetime
    promoted_at: datetime | None = None
    promoted_by: str | None = None

    @property
    def in_force(self) -> bool:
        return self.promoted_at is None
