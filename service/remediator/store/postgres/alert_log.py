"""The production store's alert log: a notification in one statement.

One statement is one transaction and one round trip, whatever the number of alerts: the alerts
travel as arrays and `unnest` turns them into rows.
"""

from __future__ import annotations

from datetime import datetime

from remediator.alerts import Notification
from remediator.store import statements
from remediator.store.portable import PortableAlertLog
from remediator.store.postgres.wakes import PostgresWakes
from remediator.store.records import IntakeResult
from remediator.store.rows import distinct_states, json_text

# An alert state is (fingerprint, startsAt, status); `origin` is the incoming state a row comes
# from: itself, or the older resolution that ends a later episode (`statements.OVERTAKEN`), whose
# alert the ended episode's row and event are written from. `accepted` counts incoming states
# that queued an event, their own or an overtaken episode's.
_RECORD_NOTIFICATION = f"""
WITH notification AS (
    INSERT INTO notifications (received_at, group_key, receiver, status, body)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING id
), incoming AS (
    SELECT * FROM unnest($6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::json[],
                         $11::json[], $12::timestamptz[], $13::text[])
        AS i (fingerprint, starts_at, status, alertname, labels, annotations, ends_at,
              generator_url)
), {statements.OVERTAKEN}, states AS (
    SELECT *, starts_at AS origin FROM incoming
    UNION ALL
    SELECT o.fingerprint, o.starts_at, i.status, i.alertname, i.labels, i.annotations, i.ends_at,
           i.generator_url, o.origin
    FROM overtaken o JOIN incoming i ON i.fingerprint = o.fingerprint AND i.starts_at = o.origin
        AND i.status = 'resolved'
), queued AS (
    INSERT INTO alert_events (fingerprint, starts_at, kind, notification_id, enqueued_at, turn)
    SELECT fingerprint, starts_at, status, (SELECT id FROM notification), $1,
           row_number() OVER (ORDER BY fingerprint, starts_at, status) - 1
    FROM states
    ORDER BY fingerprint, starts_at, status
    {statements.EVENT_QUEUED_ONCE}
    RETURNING fingerprint, starts_at, kind
), upserted AS (
    INSERT INTO alerts AS a (fingerprint, starts_at, alertname, status, labels, annotations,
                             ends_at, generator_url, first_received, last_received, deliveries,
                             external_url)
    SELECT DISTINCT ON (fingerprint, starts_at) fingerprint, starts_at, alertname, status,
           labels, annotations, ends_at, generator_url, $1, $1, 1, $14
    FROM states
    ORDER BY fingerprint, starts_at, status DESC
    {statements.ALERT_HEARD_AGAIN}
    RETURNING 1
)
SELECT CASE WHEN NOT EXISTS (SELECT FROM overtaken) THEN (SELECT count(*) FROM queued)
    ELSE (SELECT count(DISTINCT (s.fingerprint, s.origin, s.status)) FROM queued q JOIN states s
          ON s.fingerprint = q.fingerprint AND s.starts_at = q.starts_at AND s.status = q.kind)
END
"""


class PostgresAlertLog(PortableAlertLog, PostgresWakes):
    async def record_notification(
        self, notification: Notification, body: bytes, received_at: datetime
    ) -> IntakeResult:
        alerts = distinct_states(notification)
        # One statement is one transaction: the body, the alerts and the new events commit
        # together, in one round trip.
        accepted: int = await self._run(
            lambda db: db.fetchval(
                _RECORD_NOTIFICATION,
                received_at,
                notification.group_key,
                notification.receiver,
                notification.status.value,
                body,
                [alert.fingerprint for alert in alerts],
                [alert.starts_at for alert in alerts],
                [alert.status.value for alert in alerts],
                [alert.alertname for alert in alerts],
                [json_text(alert.labels) for alert in alerts],
                [json_text(alert.annotations) for alert in alerts],
                [alert.ends_at for alert in alerts],
                [alert.generator_url for alert in alerts],
                notification.external_url,
            )
        )
        if accepted:
            self._wake_replicas()
        return IntakeResult(accepted=accepted, duplicates=len(notification.alerts) - accepted)
