"""What every store offers, and the rows it gives back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pydantic_core

from remediator.alerts import Alert, AlertStatus, Notification


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


@dataclass(frozen=True)
class AlertEvent:
    """A queued state change of an alert episode, for the engine to claim."""

    id: int
    fingerprint: str
    starts_at: datetime
    kind: AlertStatus
    notification_id: int
    enqueued_at: datetime


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
