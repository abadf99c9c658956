"""Alertmanager webhook bodies as tests need them: one alert, firing or resolved, version 4."""

from __future__ import annotations

from typing import Any

NO_END = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt for a firing alert


def webhook_alert(
    labels: dict[str, str],
    *,
    fingerprint: str,
    starts_at: str,
    status: str = "firing",
    ends_at: str = "2027-01-15T08:30:00Z",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations or {},
        "startsAt": starts_at,
        "endsAt": ends_at if status == "resolved" else NO_END,
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


def webhook(*alerts: dict[str, Any], group_key: str = "{}:{}") -> dict[str, Any]:
    """The body of one notification: its status is firing while any of its alerts fires."""
    firing = any(alert["status"] == "firing" for alert in alerts)
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": list(alerts),
    }
