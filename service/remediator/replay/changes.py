"""The alert state changes a replay runs through, in the order they happened.

From a file of Alertmanager webhook payloads (one payload, a JSON list of them, or JSON lines;
a payload as captured, under "body", is taken too) or from the store's alert log. Each state
of an alert episode (fingerprint, startsAt, firing or resolved) counts once, as the store
queues it once; its time is the alert's own: startsAt for firing, endsAt for resolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from remediator.alerts import Alert, AlertStatus, Notification
from remediator.store import AlertRecord


class PayloadError(Exception):
    """A payload file that cannot be read: the message names the file and where in it."""


@dataclass(frozen=True)
class AlertChange:
    """One state of one alert episode, at the alert's own time."""

    at: datetime
    alert: Alert

    @property
    def episode(self) -> tuple[str, datetime]:
        return self.alert.fingerprint, self.alert.starts_at

    @property
    def order(self) -> tuple[datetime, int, str, datetime]:
        """Time order; at one instant a resolution before a firing, then by fingerprint."""
        resolved = self.alert.status is AlertStatus.RESOLVED
        return self.at, 0 if resolved else 1, self.alert.fingerprint, self.alert.starts_at


def read_payloads(file: Path) -> list[Notification]:
    """Every webhook payload in the file; PayloadError naming the file and the payload."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PayloadError(f"{file}: cannot be read: {exc}") from exc
    notifications = []
    for where, raw in _documents(file, text):
        body = raw.get("body", raw) if isinstance(raw, dict) and "alerts" not in raw else raw
        try:
            notifications.append(Notification.from_webhook(json.dumps(body).encode()))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()[:5]
            )
            raise PayloadError(f"{file}: {where}: not a webhook payload: {problems}") from exc
    return notifications


def _documents(file: Path, text: str) -> Iterator[tuple[str, Any]]:
    """(where, value) for each payload: a whole-file JSON value, or one per line."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as whole_error:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise PayloadError(f"{file}: not JSON: {whole_error}") from whole_error
        for number, line in lines:
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise PayloadError(f"{file}: line {number}: not JSON: {exc}") from exc
        return
    if isinstance(whole, list):
        for index, item in enumerate(whole):
            yield f"payload [{index}]", item
    else:
        yield "payload", whole


def from_notifications(notifications: Iterable[Notification]) -> list[AlertChange]:
    """Each alert state once, in time order."""
    return _ordered(
        AlertChange(_time_of(alert), alert)
        for notification in notifications
        for alert in notification.alerts
    )


def from_records(records: Iterable[AlertRecord]) -> list[AlertChange]:
    """The stored alert episodes: each fired, and those resolved resolved at their endsAt."""
    changes = []
    for record in records:
        changes.append(AlertChange(record.starts_at, record.as_alert(AlertStatus.FIRING)))
        if record.status is AlertStatus.RESOLVED:
            resolved = record.as_alert(AlertStatus.RESOLVED)
            changes.append(AlertChange(_time_of(resolved), resolved))
    return _ordered(changes)


def _time_of(alert: Alert) -> datetime:
    if alert.status is AlertStatus.RESOLVED and alert.ends_at is not None:
        return max(alert.ends_at, alert.starts_at)
    return alert.starts_at


def _ordered(changes: Iterable[AlertChange]) -> list[AlertChange]:
    seen: dict[tuple[str, datetime, AlertStatus], AlertChange] = {}
    for change in changes:
        seen.setdefault((*change.episode, change.alert.status), change)
    return sorted(seen.values(), key=lambda change: change.order)


def span(changes: Sequence[AlertChange]) -> tuple[datetime, datetime] | None:
    """The first and last change's time."""
    return (changes[0].at, changes[-1].at) if changes else None
