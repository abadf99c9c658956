"""PagerDuty through the Events API v2: the channel that wakes someone up.

One incident per `dedup_key`: every replica and every repeat sends the same key, so PagerDuty
updates the open incident instead of opening another, and a resolve closes it. What Remediator
checked and tried rides along in `custom_details`, so the responder need not open Remediator.

Also home to what the HTTP channels share (`ChannelNotConfigured`, the environment lookup, how
an HTTP answer maps to a transient or permanent failure); Slack and email import it from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from remediator.notify.base import Message, PermanentFailure, TransientFailure
from remediator.policy.schema import PagerDutyChannel

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
TIMEOUT = 10.0
SEVERITIES = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
_SUMMARY_LIMIT = 1024  # PagerDuty's payload.summary
_DEDUP_KEY_LIMIT = 255  # and dedup_key
_ERROR_EXCERPT = 500


class ChannelNotConfigured(ValueError):
    """A channel's secret is missing from the environment: the service should not start."""


def from_env(variable: str, channel: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ChannelNotConfigured(f"{channel}: environment variable {variable} is not set")
    return value


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def check_answer(what: str, status: int, headers: Mapping[str, str], body: str, *, ok: int) -> None:
    """Raise for anything but `ok`: 429 and 5xx are worth another try, other answers are not."""
    if status == ok:
        return
    excerpt = truncate(body.strip(), _ERROR_EXCERPT)
    if status == 429:
        raise TransientFailure(
            f"{what} answered 429 (rate limited): {excerpt}",
            retry_after=retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        raise TransientFailure(f"{what} answered {status}: {excerpt}")
    raise PermanentFailure(f"{what} answered {status}: {excerpt}")


def describe_error(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class PagerDuty:
    """Sends to one Events API v2 integration (its routing key names the service)."""

    name = "pagerduty"

    def __init__(
        self,
        config: PagerDutyChannel,
        session: aiohttp.ClientSession,
        *,
        url: str = EVENTS_URL,
        timeout: float = TIMEOUT,
    ) -> None:
        self._config = config
        self._routing_key = from_env(config.routing_key_env, self.name)
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "channel": self.name,
            "url": self._url,
            "routing_key_env": self._config.routing_key_env,
        }

    def event(self, message: Message) -> dict[str, Any]:
        """The Events API v2 body for this message."""
        if message.action == "resolve":
            return {
                "routing_key": self._routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key(message.dedup_key),
            }
        payload: dict[str, Any] = {
            "summary": truncate(message.summary, _SUMMARY_LIMIT),
            "source": source(message),
            "severity": SEVERITIES.get(message.level, "error"),
        }
        if message.target:
            payload["component"] = message.target
        if message.policy:
            payload["group"] = message.policy
        payload["class"] = message.alertname
        payload["custom_details"] = {
            "outcome": message.outcome,
            "reason": message.reason,
            "steps": [
                {"action": step.action, "outcome": step.outcome, "message": step.message}
                for step in message.steps
            ],
            "labels": message.labels,
            "annotations": message.annotations,
        }
        if message.diagnostics:
            payload["custom_details"]["diagnostics"] = _within_limit(message.diagnostics)
        return {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(message.dedup_key),
            "payload": payload,
            "links": [{"href": href, "text": text} for text, href in message.links.items()],
            "client": "Remediator",
        }

    async def send(self, message: Message) -> None:
        what = f"PagerDuty {message.action} {message.dedup_key}"
        try:
            async with self._session.post(
                self._url, json=self.event(message), timeout=self._timeout
            ) as answer:
                body = await answer.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientFailure(f"{what}: {describe_error(exc)}") from exc
        check_answer(what, answer.status, answer.headers, _error_text(body), ok=202)


def dedup_key(key: str) -> str:
    """The key as is, or, when too long for PagerDuty, a prefix and a hash: stable either way."""
    if len(key) <= _DEDUP_KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: _DEDUP_KEY_LIMIT - len(digest) - 1]}-{digest}"


def source(message: Message) -> str:
    """What is affected: the policy's target, else the alert's instance or job."""
    return (
        message.target
        or message.labels.get("instance")
        or message.labels.get("job")
        or message.alertname
    )


def _error_text(body: str) -> str:
    """PagerDuty explains a refusal as {"status", "message", "errors": [...]}: keep the text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    if not isinstance(parsed, dict):
        return body
    parts = [str(parsed.get("message") or parsed.get("status") or "")]
    errors = parsed.get("errors")
    if isinstance(errors, list):
        parts.extend(str(error) for error in errors)
    text = "; ".join(part for part in parts if part)
    return text or body


DIAGNOSTICS_LIMIT = 256 * 1024  # of the 512 KB an event may carry


def _within_limit(diagnostics: dict[str, Any]) -> dict[str, Any] | str:
    """All of it when it fits; else its text cut to the limit, so the event is not refused."""
    text = json.dumps(diagnostics, sort_keys=True, default=str)
    if len(text) <= DIAGNOSTICS_LIMIT:
        return diagnostics
    return text[:DIAGNOSTICS_LIMIT] + " ... (cut: see the run in Remediator)"
