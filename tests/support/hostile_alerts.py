"""Alerts that test a channel's limits, and the message each becomes: normal ones beside hostile
and oversized ones (200 labels, a 100 KB or 600 KB annotation, a 2,000-character name,
non-ASCII, CR/LF, a generatorURL that is no URL). The message carries the links the escalator
gives it (runbook, source, a silence prefilled with every label), as a page would.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from remediator.alerts import AlertStatus
from remediator.notify.base import Message, StepLine
from remediator.notify.escalator import alert_links
from remediator.store import AlertRecord

AT = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
NON_ASCII = "Дисковое пространство 93% — ноде-3 ✓"
HOSTILE_URL = "https://x.example/a|<!channel>>&b"
KB = 1024


def alert(
    alertname: str = "HighErrorRate",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    generator_url: str = "http://prometheus:9090/graph?g0.expr=rate",
) -> AlertRecord:
    """An alert as the store keeps it, sent by an Alertmanager (so its page links a silence)."""
    base = {"alertname": alertname, "namespace": "shop", "instance": "api-0:8080"}
    return AlertRecord(
        fingerprint="fp",
        alertname=alertname,
        status=AlertStatus.FIRING,
        labels={**base, **(labels or {})},
        annotations={
            "runbook_url": "https://runbooks.example/high-error-rate",
            **(annotations or {}),
        },
        starts_at=AT,
        ends_at=None,
        first_received=AT,
        last_received=AT,
        deliveries=1,
        generator_url=generator_url,
        external_url="http://alertmanager:9093/",
    )


def page(record: AlertRecord) -> Message:
    """The P1 page the escalator would queue for the alert."""
    return Message(
        id="0b6f3c1e-7d7e-4c43-9d7a-1f0e2b9f4a10",
        action="trigger",
        dedup_key="remediator/restart-api/Deployment/shop/api",
        level="P1",
        summary=f"{record.alertname} on Deployment/shop/api: remediation failed: still 12%"[:1024],
        alertname=record.alertname,
        status="firing",
        labels=record.labels,
        annotations=record.annotations,
        policy="restart-api",
        target="Deployment/shop/api",
        outcome="failed",
        reason="error rate still above threshold after restart",
        steps=(StepLine("kubernetes.rollout_restart", "ok", "restarted deployment shop/api"),),
        links=alert_links(record),
    )


def resolve(message: Message) -> Message:
    return replace(message, action="resolve", status="resolved", outcome="succeeded")


def many_labels(count: int, width: int = 40) -> dict[str, str]:
    return {f"label_{n:03d}": f"value-{n}-" + "v" * width for n in range(count)}


# id -> the alert: each channel's table test sends every one of these.
CASES: dict[str, AlertRecord] = {
    "normal": alert(),
    "200 labels": alert(labels=many_labels(200)),
    "55 typical labels": alert(labels=many_labels(55)),
    "a 1.7 KB label value": alert(labels={"config": "c" * 1700}),
    "a 100 KB annotation": alert(annotations={"description": "d" * 100 * KB}),
    "a 600 KB annotation": alert(annotations={"description": "d" * 600 * KB}),
    "a 2,000-character name": alert(alertname="A" * 2000),
    "non-ASCII": alert(
        alertname=NON_ASCII, labels={"node": "ноде-3"}, annotations={"summary": NON_ASCII * 40}
    ),
    "CR/LF": alert(
        alertname="DiskFull\r\nBcc: victim@example.com",
        labels={"pod": "api\r\n\r\n<b>injected</b>"},
        annotations={"description": "line one\r\nX-Injected: yes\r\n.\r\n"},
    ),
    "a hostile generatorURL": alert(generator_url=HOSTILE_URL),
}
