"""From a remediation's turn to messages in the outbox: who hears, about which incident.

One incident per policy and target (or per alert, when no policy matched): its `dedup_key` is
the same on every replica and every repeat, so PagerDuty updates one incident instead of
opening many. A resolve goes only to the channels that were paged and not yet resolved.
Opening an incident also queues its climb up the matrix's ladder, and a digest level's email
waits in the outbox for the digest hour.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import structlog

from remediator.engine.escalation import Notify
from remediator.policy.parameters import DIAGNOSTIC
from remediator.policy.schema import EscalationMatrix
from remediator.store import AlertRecord, OutboxEntry, Remediation, StepRecord, Store

log = structlog.get_logger(__name__)

LADDER = "ladder"  # the outbox's own channel: an entry there is a climb that falls due
# A page's fallback channels, and on a fallback's copy the channel that did not take it.
FALLBACK, FALLBACK_FOR = "fallback", "fallback_for"
FALLBACK_KEYS = (FALLBACK, FALLBACK_FOR)


def dedup_key(remediation: Remediation) -> str:
    if remediation.policy and remediation.target:
        return f"remediator/{remediation.policy}/{remediation.target}"
    return f"remediator/alert/{remediation.alertname}/{remediation.fingerprint}"


def paged(entries: Iterable[OutboxEntry]) -> list[str]:
    """Channels whose latest message about an incident opened or updated it."""
    latest: dict[str, str] = {}
    for entry in entries:
        if entry.channel != LADDER:
            latest[entry.channel] = entry.action
    return [channel for channel, action in latest.items() if action == "trigger"]


def outbox_entries(
    matrix: EscalationMatrix,
    message: dict[str, Any],
    channels: Sequence[str],
    *,
    remediation_id: str | None,
    now: datetime,
    opening: bool,
    entry_id: Callable[[str], str],
) -> list[OutboxEntry]:
    """One entry per channel at the message's level; and its climb, when this opens the
    incident and the level has a next rung. A page names the channel's fallback, where the
    sender sends it as well if that channel does not take it."""
    action, key, level = message["action"], message["dedup_key"], message["level"]
    route = matrix.levels.get(level)
    entries = []
    own = {name: value for name, value in message.items() if name not in FALLBACK_KEYS}
    for channel in channels:
        due, text = now, own
        if route is not None and route.digest is not None and channel == "email":
            due, text = route.digest.next_after(now), {**own, "digest": True}
        fallback = matrix.fallback_of(channel)
        if action == "trigger" and fallback:
            text = {**text, FALLBACK: fallback}
        entries.append(
            OutboxEntry(entry_id(channel), channel, action, key, remediation_id, text, now, due)
        )
    if opening and action == "trigger" and route is not None and route.next is not None:
        climb_at = now + route.next.after
        entries.append(
            OutboxEntry(
                entry_id(LADDER), LADDER, "climb", key, remediation_id, message, now, climb_at
            )
        )
    return entries


class Escalator:
    def __init__(
        self,
        store: Store,
        matrix: Callable[[], EscalationMatrix],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._matrix = matrix
        self._clock = clock

    async def notify(self, remediation: Remediation, notify: Notify) -> list[OutboxEntry]:
        """Queue a message about the remediation now (a page resolved with its alert)."""
        entries = await self.messages(remediation, lambda _: notify)
        await self._store.enqueue(entries)
        return entries

    async def messages(
        self,
        remediation: Remediation,
        rule: Callable[[bool], Notify],
        *,
        alert: AlertRecord | None = None,
        steps: Sequence[StepRecord] | None = None,
    ) -> list[OutboxEntry]:
        """The messages `rule` calls for at this turn of the remediation, for the caller to
        queue with it; the rule is told whether the incident is open (paged and not
        resolved), read with the rest in one look-up. The alert and the remediation's steps
        are read for the message, unless the caller has them."""
        key = dedup_key(remediation)
        latest = {entry.channel: entry for entry in await self._store.latest_outbox(key)}
        already = paged(latest.values())
        notify = rule(bool(already))
        if notify is None:
            return []
        if notify == "resolve":
            level = remediation.plan.level
            route = self._matrix().levels.get(level) if level else None
            quiet = route is not None and not route.resolved_email
            channels = [channel for channel in already if not (quiet and channel == "email")]
        else:
            # A channel that already heard this outcome of this incident is not told again:
            # a storm of alerts on one target, each blocked, is one message, not a hundred.
            channels = [
                channel
                for channel in remediation.plan.channels
                if not _already_told(latest.get(channel), remediation.outcome)
            ]
        if not channels:
            return []
        if alert is None:
            alert = await self._store.alert(remediation.fingerprint, remediation.starts_at)
        if steps is None:
            steps = await self._store.steps(remediation.id)
        message = _message(remediation, notify, key, alert, steps)
        entries = outbox_entries(
            self._matrix(),
            message,
            channels,
            remediation_id=remediation.id,
            now=datetime.fromtimestamp(self._clock(), UTC),
            opening=not already,
            entry_id=lambda _: entry_id(),
        )
        log.info("escalation queued", action=notify, channels=channels, dedup_key=key)
        return entries


def _message(
    remediation: Remediation,
    action: str,
    key: str,
    alert: AlertRecord | None,
    recorded: Sequence[StepRecord],
) -> dict[str, Any]:
    r = remediation
    labels = alert.labels if alert else {}
    annotations = alert.annotations if alert else {}
    steps = [{"action": s.action, "outcome": s.outcome, "message": s.message} for s in recorded]
    diagnostics = {
        s.step_id or s.action: s.data for s in recorded if s.action in DIAGNOSTIC and s.data
    }
    links = alert_links(alert) if alert else {}
    return {
        "action": action,
        "dedup_key": key,
        "level": r.plan.level or "P3",
        "summary": summary(r, action),
        "alertname": r.alertname,
        "status": "resolved" if action == "resolve" else "firing",
        "labels": labels,
        "annotations": annotations,
        "policy": r.policy,
        "target": r.target,
        "outcome": r.outcome,
        "reason": r.reason,
        "steps": steps,
        "links": links,
        "diagnostics": diagnostics,
    }


def alert_links(alert: AlertRecord) -> dict[str, str]:
    """The runbook, the expression that fired, and a silence prefilled with the alert's labels:
    what a responder opens first. Only http(s): a label cannot smuggle in a javascript: link."""
    links = {
        "Runbook": alert.annotations.get("runbook_url", ""),
        "Source": alert.generator_url,
    }
    if alert.external_url:
        matchers = ",".join(
            f'{name}="{_quoted(value)}"' for name, value in sorted(alert.labels.items())
        )
        query = urlencode({"filter": "{" + matchers + "}"}, quote_via=quote)
        links["Silence"] = f"{alert.external_url.rstrip('/')}/#/silences/new?{query}"
    return {text: href for text, href in links.items() if urlsplit(href).scheme in _SCHEMES}


_SCHEMES = ("http", "https")


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _already_told(latest: OutboxEntry | None, outcome: str) -> bool:
    return (
        latest is not None
        and latest.action == "trigger"
        and latest.message.get("outcome") == outcome
    )


def entry_id() -> str:
    """Unique, and in creation order among entries of the same instant: a trigger sorts before
    the resolve that follows it."""
    return f"{time.time_ns():016x}-{uuid.uuid4().hex[:12]}"


def summary(remediation: Remediation, action: str) -> str:
    r = remediation
    where = f" on {r.target}" if r.target else ""
    if action == "resolve":
        return f"{r.alertname}{where} resolved ({r.outcome}: {r.reason})"
    what = {
        "waiting": "remediation waiting for its turn",
        "running": "remediation running",
        "verifying": "fix applied, waiting for the alert to resolve",
        "failed": "remediation failed",
        "blocked": "remediation blocked",
        "refused": "remediation refused",
        "no_match": "no policy matches",
        "dry_run": "dry-run only, nothing changed",
        "stopped": "remediation stopped",
        "interrupted": "remediation interrupted",
    }.get(r.outcome, r.outcome)
    return f"{r.alertname}{where}: {what}: {r.reason}"[:1024]
