"""What every store offers, and the rows it gives back."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pydantic_core

from remediator.alerts import Alert, AlertStatus, Notification
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary

# The claim's condition on a candidate event `e`: no earlier event of its alert is still to do.
NO_EARLIER_PENDING = (
    "NOT EXISTS (SELECT 1 FROM alert_events p"
    " WHERE p.fingerprint = e.fingerprint AND p.done_at IS NULL AND p.id < e.id)"
)


class StoreUnavailable(Exception):
    """The store cannot read or write now; intake answers 503 so Alertmanager retries."""


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


class Store(Protocol):
    async def record_notification(
        self, notification: Notification, body: bytes, received_at: datetime
    ) -> IntakeResult:
        """Durably write the raw body, every alert and the new events, in one transaction."""
        ...

    async def recent_alerts(self, limit: int) -> list[AlertRecord]: ...

    async def pending_events(self, limit: int) -> list[AlertEvent]: ...

    async def record_admission(self, run: RunRecord) -> None: ...

    async def record_finish(self, run_id: str, succeeded: bool, at: datetime) -> None: ...

    async def runs_since(self, since: datetime) -> list[RunRecord]:
        """Runs admitted at or after `since`, oldest first."""
        ...

    async def audit(
        self, kind: str, subject: str, detail: dict[str, object], at: datetime
    ) -> None: ...

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        """The newest entries first."""
        ...

    async def set_pause(self, pause: Pause | None) -> None:
        """Pause (the kill switch) with its reason, or resume with None."""
        ...

    async def pause(self) -> Pause | None: ...

    async def all_events(self, limit: int) -> list[AlertEvent]:
        """Events pending or done, oldest first: each alert state queued exactly once."""
        ...

    async def claim_events(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[AlertEvent]:
        """Pending events nobody holds (or whose holder's lease passed), oldest first, leased to
        this worker; several workers never get the same event, and an event is not claimed
        while an earlier one of the same alert (fingerprint) is not done: a resolution is
        handled after its firing, whichever worker has either."""
        ...

    async def renew_events(
        self, event_ids: Collection[int], worker: str, lease_until: datetime
    ) -> set[int]:
        """Extend this worker's claims; the ids still held (a claim another worker took over
        after it lapsed, or an event done, is not)."""
        ...

    async def complete_events(self, event_ids: Collection[int], worker: str, at: datetime) -> None:
        """Mark the events done, those this worker still holds: the next event of the same
        alert may be claimed from then."""
        ...

    async def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None: ...

    async def save_remediation(
        self, remediation: Remediation, messages: Sequence[OutboxEntry] = ()
    ) -> None:
        """Insert, or replace the row with the same id; and queue the messages about it, in
        the same transaction."""
        ...

    async def record_step(self, step: StepRecord) -> None: ...

    async def remediations_for(self, fingerprint: str, starts_at: datetime) -> list[Remediation]:
        """The alert episode's remediations, oldest first."""
        ...

    async def overdue_verifications(self, now: datetime) -> list[Remediation]: ...

    async def verifying(self) -> list[Remediation]:
        """Runs waiting for their verification, the soonest due first."""
        ...

    async def list_remediations(
        self, limit: int, alertname: str | None = None
    ) -> list[Remediation]:
        """Newest first."""
        ...

    async def remediation(self, remediation_id: str) -> Remediation | None: ...

    async def steps(self, remediation_id: str) -> list[StepRecord]: ...

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        """Queue them in one transaction; an entry whose id is already queued is left as it is."""
        ...

    async def claim_outbox(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        """Due messages nobody holds, oldest first, leased to this worker."""
        ...

    async def outbox_done(
        self,
        entry_id: str,
        *,
        sent_at: datetime | None = None,
        failed_at: datetime | None = None,
        retry_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Sent, given up, or to be tried again at retry_at."""
        ...

    async def outbox_put_back(
        self, entry_id: str, *, retry_at: datetime | None = None, error: str | None = None
    ) -> None:
        """Not tried this time (its channel paused, or an earlier message of its lane first):
        unclaimed, with the attempt its claim counted given back, so that waiting does not use
        up the attempts a message is sent with."""
        ...

    async def outbox_for(self, dedup_key: str) -> list[OutboxEntry]:
        """Every message of one incident, oldest first."""
        ...

    async def latest_outbox(self, dedup_key: str) -> list[OutboxEntry]:
        """The newest message of one incident per channel: its state, read in one indexed
        look-up however long the incident's history."""
        ...

    async def watch_events(self, wake: Callable[[], None]) -> None:
        """Have `wake` called when another process queues events; a call while already
        watching (or where one process is all, SQLite) does nothing. Never raises: without a
        watch the dispatcher's poll still finds the work."""
        ...

    async def prune(self, before: datetime, runs_before: datetime) -> dict[str, int]:
        """Delete what the retention period no longer keeps, in one transaction: alert
        episodes last heard of before `before` (none with a pending event) with their events,
        remediations and steps; raw bodies no event refers to; incidents whose last message is
        older; audit entries; and guard runs admitted before `runs_before`. Counts per table.
        """
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers now."""
        ...

    async def close(self) -> None: ...


def distinct_states(notification: Notification) -> list[Alert]:
    """The payload's alerts with repeats of the same state dropped.

    An alert state is its fingerprint, startsAt and status: what Alertmanager sends again on
    repeat_interval and from each HA peer. The last copy wins, as it is the newest. Sorted by
    state, so concurrent writers lock rows in one order (no deadlock) and an episode's firing
    is queued before its resolution.
    """
    latest: dict[tuple[str, datetime, AlertStatus], Alert] = {}
    for alert in notification.alerts:
        latest[(alert.fingerprint, alert.starts_at, alert.status)] = alert
    return [latest[state] for state in sorted(latest)]


def json_text(value: dict[str, str]) -> str:
    """Labels or annotations as compact JSON text, the same in every store.

    pydantic-core's encoder: several times faster than json.dumps, and called for every alert.
    """
    return pydantic_core.to_json(value).decode()
