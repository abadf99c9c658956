"""POST /api/v1/alerts: authenticate, validate, store durably, then acknowledge.

Nothing is decided here: the answer waits only for the durable write, so Alertmanager hears
2xx for exactly the notifications that are safe, and retries (5xx) the rest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import ValidationError
from typing_extensions import TypedDict  # pydantic documents these; typing's needs 3.12

from remediator.alerts import Notification
from remediator.http.auth import WebhookAuth
from remediator.http.bodies import BodyRefused, bounded_body, error_answer
from remediator.metrics import OTHER_ALERTNAME, IntakeMetrics
from remediator.store import AlertLog, StoreUnavailable

log = structlog.get_logger("remediator.http.intake")


class Acknowledgement(TypedDict):
    """200: every alert of the notification is durably stored; `duplicates` were known."""

    accepted: int
    duplicates: int


class Problem(TypedDict):
    path: str  # a JSON path into the body, `$.alerts[0].startsAt`
    message: str


class InvalidPayload(TypedDict):
    """400: what is wrong with the body, field by field."""

    error: str
    problems: list[Problem]


class Intake:
    def __init__(
        self,
        store: AlertLog,
        auth: WebhookAuth,
        metrics: IntakeMetrics,
        max_body_bytes: int,
        alertnames: Callable[[], Collection[str]],
        body_timeout: float = 10.0,
    ) -> None:
        self._store = store
        self._auth = auth
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._alertnames = alertnames  # those counted by name: the live policies' own
        self._body_timeout = body_timeout
        self.on_new_events: Callable[[], None] | None = None  # wakes the dispatcher
        self._challenge = f'{auth_scheme(auth) or "Bearer"} realm="remediator"'

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await self._answer(request)
        self._metrics.intake_requests.labels(str(response.status)).inc()
        self._metrics.intake_duration.observe(time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        if not self._auth.allows(request.headers.get("Authorization")):
            log.warning("webhook refused", reason="missing or wrong credentials")
            return error_answer(
                401, "missing or wrong credentials", headers={"WWW-Authenticate": self._challenge}
            )
        if request.content_type != "application/json":
            return error_answer(
                415, f"expected Content-Type application/json, got {request.content_type}"
            )
        try:
            body = await bounded_body(request, self._max_body_bytes, self._body_timeout)
        except BodyRefused as refused:
            return refused.answer()
        try:
            notification = Notification.from_webhook(body)
        except ValidationError as exc:
            problems = list(_problems(exc.errors(include_url=False, include_input=False)))
            log.warning("webhook payload invalid", problems=problems)
            invalid = InvalidPayload(error="invalid webhook payload", problems=problems)
            return web.json_response(invalid, status=400)
        structlog.contextvars.bind_contextvars(group_key=notification.group_key)
        return await self._store_notification(notification, body)

    async def _store_notification(self, notification: Notification, body: bytes) -> web.Response:
        try:
            result = await self._store.record_notification(notification, body, datetime.now(UTC))
        except StoreUnavailable as exc:
            self._metrics.store_errors.labels("record_notification").inc()
            log.error("store cannot write; asking Alertmanager to retry", error=str(exc))
            return error_answer(503, "store unavailable, retry later", headers={"Retry-After": "5"})
        self._count(notification, result.duplicates)
        if result.accepted and self.on_new_events is not None:
            self.on_new_events()
        if notification.truncated_alerts:
            log.warning(
                "Alertmanager truncated the notification", truncated=notification.truncated_alerts
            )
        log.info(
            "notification stored",
            alerts=len(notification.alerts),
            accepted=result.accepted,
            duplicates=result.duplicates,
        )
        return web.json_response(
            Acknowledgement(accepted=result.accepted, duplicates=result.duplicates)
        )

    def _count(self, notification: Notification, duplicates: int) -> None:
        self._metrics.notifications_received.labels(notification.status.value).inc()
        # Counted first, so that a 100-alert notification is a few metric updates, not 100.
        known = self._alertnames()
        per_label = Counter(
            (alert.status.value, alert.alertname if alert.alertname in known else OTHER_ALERTNAME)
            for alert in notification.alerts
        )
        for (status, alertname), alerts in per_label.items():
            self._metrics.alerts_received.labels(status, alertname).inc(alerts)
        self._metrics.alert_duplicates.inc(duplicates)


def auth_scheme(auth: WebhookAuth) -> Literal["Basic", "Bearer"] | None:
    """The HTTP authentication scheme the webhook expects; None when it accepts any request."""
    if not auth.enabled:
        return None
    return "Basic" if auth.expected and auth.expected.startswith(b"Basic ") else "Bearer"


def _problems(errors: Iterable[Mapping[str, Any]]) -> Iterable[Problem]:
    for error in errors:
        yield Problem(path=json_path(error["loc"]), message=error["msg"])


def json_path(location: Iterable[int | str]) -> str:
    """A pydantic error location as a JSON path: ('alerts', 0, 'labels') -> $.alerts[0].labels."""
    path = "$"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
