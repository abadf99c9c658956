"""The embedded store's alert log: a notification written in one transaction."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from remediator.alerts import Alert, AlertStatus, Notification
from remediator.store import statements
from remediator.store.portable import PortableAlertLog
from remediator.store.records import IntakeResult
from remediator.store.rows import distinct_states, json_text
from remediator.store.sqlite.connection import SQLiteConnection, iso, qmarks, transaction

_UPSERT_ALERT = qmarks(
    "INSERT INTO alerts AS a (fingerprint, starts_at, alertname, status, labels, annotations,"
    " ends_at, generator_url, first_received, last_received, deliveries, external_url)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, 1, $10)" + statements.ALERT_HEARD_AGAIN
)
_QUEUE_EVENT = qmarks(
    "INSERT INTO alert_events (fingerprint, starts_at, kind, notification_id, enqueued_at, turn)"
    f" VALUES ($1, $2, $3, $4, $5, $6) {statements.EVENT_QUEUED_ONCE}"
)
# The payload's resolutions travel as one JSON array of [fingerprint, startsAt, endsAt].
_OVERTAKEN = qmarks(
    "WITH incoming (fingerprint, starts_at, status, ends_at) AS ("
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'resolved',"
    " json_extract(value, '$[2]') FROM json_each($1)),"
    f" {statements.OVERTAKEN}"
    " SELECT fingerprint, starts_at, origin FROM overtaken ORDER BY fingerprint, starts_at"
)


class SQLiteAlertLog(PortableAlertLog, SQLiteConnection):
    async def record_notification(
        self, notification: Notification, body: bytes, received_at: datetime
    ) -> IntakeResult:
        return await self._run(lambda db: _record(db, notification, body, received_at))


def _record(
    db: sqlite3.Connection, notification: Notification, body: bytes, received_at: datetime
) -> IntakeResult:
    """What PostgresStore's one statement does: each state queued once, and a resolution under
    an older startsAt also ending the later episodes it covers."""
    received, accepted = iso(received_at), 0
    states = distinct_states(notification)
    with transaction(db):
        notification_id = db.execute(
            "INSERT INTO notifications (received_at, group_key, receiver, status, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (received, notification.group_key, notification.receiver, notification.status, body),
        ).lastrowid
        overtaken = _overtaken(db, states)
        for turn, alert in enumerate(states):
            starts_at = iso(alert.starts_at)
            episodes = [starts_at, *overtaken.get((alert.fingerprint, starts_at, alert.status), ())]
            queued = 0
            for episode in episodes:
                event = (alert.fingerprint, episode, alert.status, notification_id, received, turn)
                queued += db.execute(_QUEUE_EVENT, event).rowcount
                db.execute(_UPSERT_ALERT, _alert_row(alert, episode, received, notification))
            accepted += queued > 0  # its own event, or one of an episode it ended
    return IntakeResult(accepted=accepted, duplicates=len(notification.alerts) - accepted)


def _overtaken(
    db: sqlite3.Connection, states: list[Alert]
) -> dict[tuple[str, str, AlertStatus], list[str]]:
    """The later firing episodes each resolution of the payload ends (`statements.OVERTAKEN`),
    by the state (fingerprint, startsAt, resolved) that ends them."""
    resolutions = [
        [alert.fingerprint, iso(alert.starts_at), iso(alert.ends_at) if alert.ends_at else None]
        for alert in states
        if alert.status is AlertStatus.RESOLVED
    ]
    if not resolutions:
        return {}
    ends: dict[tuple[str, str, AlertStatus], list[str]] = {}
    for fingerprint, starts_at, origin in db.execute(_OVERTAKEN, (json.dumps(resolutions),)):
        ends.setdefault((fingerprint, origin, AlertStatus.RESOLVED), []).append(starts_at)
    return ends


def _alert_row(
    alert: Alert, episode: str, received: str, notification: Notification
) -> tuple[object, ...]:
    return (
        alert.fingerprint,
        episode,
        alert.alertname,
        alert.status,
        json_text(alert.labels),
        json_text(alert.annotations),
        iso(alert.ends_at) if alert.ends_at else None,
        alert.generator_url,
        received,
        notification.external_url,
    )
