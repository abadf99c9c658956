"""PagerDuty through the Events API v2: the channel that wakes someone up.

One incident per `dedup_key`: every replica and every repeat sends the same key, so PagerDuty
updates the open incident instead of opening another, and a resolve closes it. What Remediator
checked and tried rides along in `custom_details`, so the responder need not open Remediator.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiohttp

from remediator.notify.base import Message, key_facts, severity_text
from remediator.notify.channel_support import (
    TIMEOUT,
    fit_message,
    from_env,
    is_web_url,
    post_json,
    truncate,
)
from remediator.policy.schema import PagerDutyChannel

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
# The Events API v2's limits: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
EVENT_LIMIT = 512 * 1024  # bytes of the whole event, as sent
_SUMMARY_LIMIT = 1024  # payload.summary
_DEDUP_KEY_LIMIT = 255  # dedup_key
# source, component, group and class: no limit documented; 255 keeps them the short names the
# incident's page shows them as.
_NAME_LIMIT = 255


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
        """The Events API v2 body for this message, within the event's limits."""
        if message.action == "resolve":
            return {
                "routing_key": self._routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key(message.dedup_key),
            }
        fitted = fit_message(message, lambda m: _size(self._trigger(m)), EVENT_LIMIT)
        return self._trigger(fitted)

    def _trigger(self, message: Message) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "summary": truncate(message.summary, _SUMMARY_LIMIT),
            "source": truncate(source(message), _NAME_LIMIT),
            "severity": SEVERITIES.get(message.level, "error"),
        }
        if message.target:
            payload["component"] = truncate(message.target, _NAME_LIMIT)
        if message.policy:
            payload["group"] = truncate(message.policy, _NAME_LIMIT)
        payload["class"] = truncate(message.alertname, _NAME_LIMIT)
        payload["custom_details"] = {
            **details(message),
            "steps": [
                {"action": step.action, "outcome": step.outcome, "message": step.message}
                for step in message.steps
            ],
            "labels": message.labels,
            "annotations": message.annotations,
        }
        if message.diagnostics:
            payload["custom_details"]["diagnostics"] = message.diagnostics
        links = {text: href for text, href in message.links.items() if is_web_url(href)}
        if left_out := [text for text in message.links if text not in links]:
            reason = "not a well-formed http(s) URL"
            payload["custom_details"]["links_left_out"] = dict.fromkeys(left_out, reason)
        return {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(message.dedup_key),
            "payload": payload,
            "links": [{"href": href, "text": text} for text, href in links.items()],
            "client": "Remediator",
        }

    async def send(self, message: Message) -> None:
        await post_json(
            self._session,
            self._url,
            self.event(message),
            what=f"PagerDuty {message.action} {message.dedup_key}",
            ok=range(200, 300),  # 202 documented; any 2xx is taken
            limit=self._timeout,
            explain=_error_text,
        )


def details(message: Message) -> dict[str, str]:
    """What the Slack and email bodies open with, for the incident's page in PagerDuty: the
    alert's summary and description, where it is, the severity and why, the outcome and its
    reason, what happens next, and the run."""
    where = dict(key_facts(message))
    facts = {
        # Also in `annotations`, in full: a long one is cut here, not sent twice.
        "summary": truncate(message.annotations.get("summary", ""), _SUMMARY_LIMIT),
        "description": truncate(message.annotations.get("description", ""), _SUMMARY_LIMIT),
        "instance": where.get("Instance", ""),
        "namespace": where.get("Namespace", ""),
        "target": where.get("Target", ""),
        "severity": severity_text(message),
        "outcome": message.outcome,
        "reason": message.reason,
        "next": message.next,
        "run_id": message.run_id or "",
        "run_url": message.run_url or "",
        "started_at": message.started_at or "",
    }
    return {name: value for name, value in facts.items() if value}


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


def _size(event: dict[str, Any]) -> int:
    """Bytes of the event as aiohttp sends it (json.dumps' defaults: ASCII, escaped)."""
    return len(json.dumps(event).encode())
