"""From a remediation's turn to messages in the outbox: who hears, about which incident.

One incident per policy and target (or per alert, when no policy matched): its `dedup_key` is
the same on every replica and every repeat, so PagerDuty updates one incident instead of
opening many. A resolve goes only to the channels that were paged and not yet resolved.
Opening an incident also queues its climb up the matrix's ladder, and a digest level's email
waits in the outbox for the digest hour.

Every alert one blast radius holds back in one window is one incident, a probable shared cause
(`plan.incident`): each channel hears it once, in the words of its reason (which names the
targets), and its resolve waits until none of the alerts it holds is firing any more: the last
one to resolve queues it.

A flapping alert is one incident. With the matrix's `resolve_after`, a resolve is not sent at
once: it is held, one entry on the outbox's own `hold` channel due that much later, queued
with the remediation's turn (notify/hold.py sends the resolve then, to the channels still
paged). An episode firing meanwhile resumes the incident instead of opening a new one: a
`resume` entry supersedes the held resolve, PagerDuty hears a trigger with the same dedup key
(an update), and Slack and email at most one "fired again" update per hold time (none while
the channel heard a page of the incident within it). The resolve, when it goes, says how many
episodes there were. For the ladder an incident whose resolve is held is closed; a resumption
starts its climb again. (An episode firing in the very instant another replica releases its
held resolve may still find it held: the resolve goes out, and PagerDuty's update reopens.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import structlog

from remediator.engine.escalation import Notify
from remediator.notify.base import ApprovalAsk
from remediator.policy.durations import format_duration
from remediator.policy.parameters import DIAGNOSTIC
from remediator.policy.schema import EscalationMatrix
from remediator.store import (
    AlertLog,
    AlertRecord,
    Outbox,
    OutboxEntry,
    Remediation,
    RunLedger,
    StepRecord,
)

log = structlog.get_logger(__name__)

LADDER = "ladder"  # the outbox's own channel: an entry there is a climb that falls due
# The outbox's other own channel: a resolve held until its alert stayed resolved (`hold`), and
# what superseded it, an episode that resumed the incident (`resume`).
HOLD, HELD, RESUME = "hold", "hold", "resume"
OWN_CHANNELS = (LADDER, HOLD)
# A channel on which a trigger with the incident's dedup key updates it quietly: it hears each
# episode of a flapping incident; the others at most one update per hold time.
UPDATES_IN_PLACE = ("pagerduty",)
# A page's fallback channels, and on a fallback's copy the channel that did not take it.
FALLBACK, FALLBACK_FOR = "fallback", "fallback_for"
FALLBACK_KEYS = (FALLBACK, FALLBACK_FOR)


def dedup_key(remediation: Remediation) -> str:
    """The incident a remediation's messages are about. Undoing a mitigation after the alert
    resolved (a `resolved` remediation) is an incident of its own: the resolution closed the
    alert's, and an undo that fails or is blocked must not reopen it."""
    if remediation.plan.incident:  # held with others by one blast radius: a shared cause
        key = remediation.plan.incident
    elif remediation.policy and remediation.target:
        key = f"remediator/{remediation.policy}/{remediation.target}"
    else:
        key = f"remediator/alert/{remediation.alertname}/{remediation.fingerprint}"
    return f"{key}/on_resolved" if remediation.kind == "resolved" else key


def paged(entries: Iterable[OutboxEntry]) -> list[str]:
    """Channels whose latest message about an incident opened or updated it."""
    latest: dict[str, str] = {}
    for entry in entries:
        if entry.channel not in OWN_CHANNELS:
            latest[entry.channel] = entry.action
    return [channel for channel, action in latest.items() if action == "trigger"]


@dataclass(frozen=True)
class Incident:
    """An incident's state, from the newest message of each channel (`latest_outbox`)."""

    paged: list[str]  # the channels it is open on
    held: OutboxEntry | None  # its resolve, held until the alert stays resolved
    resumed: OutboxEntry | None  # the latest resumption of this incident, since it opened

    @classmethod
    def of(cls, latest: Iterable[OutboxEntry]) -> Incident:
        entries = list(latest)
        own = next((e for e in entries if e.channel == HOLD), None)
        held = own if own is not None and own.action == HELD and _unsent(own) else None
        resolves = [_order(e) for e in entries if e.action == "resolve"]
        resumed = own if own is not None and own.action == RESUME else None
        if resumed is not None and any(at > _order(resumed) for at in resolves):
            resumed = None  # closed since (resolved at once, with no hold time)
        return cls(paged(entries), held, resumed)

    def resumed_by(self, remediation: Remediation) -> bool:
        """Whether this remediation is of the episode that resumed the incident."""
        return (
            self.resumed is not None
            and remediation.kind == "firing"
            and self.resumed.remediation_id == remediation.id
        )

    @property
    def open(self) -> bool:
        """Paged, and not resolved (a held resolve counts: its alert resolved)."""
        return bool(self.paged) and self.held is None

    def episodes(self, starts_at: datetime) -> tuple[int, datetime]:
        """How many episodes of the incident have ended (each resolution holds its resolve
        and counts one), and since when: the first one's start."""
        for entry in (self.held, self.resumed):
            if entry is not None and "episodes" in entry.message:
                return entry.message["episodes"], datetime.fromisoformat(entry.message["since"])
        return 0, starts_at


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


@dataclass(frozen=True)
class _Turn:
    """A turn of a remediation as its incident sees it."""

    remediation: Remediation
    notify: Notify
    key: str  # the incident's dedup key
    incident: Incident
    latest: dict[str, OutboxEntry]  # each channel's latest entry of the incident
    is_open: bool  # paged and not resolved
    resuming: bool  # a page while the incident's resolve is held: it resumes the incident
    episode: bool  # a turn of an episode that resumed it: an update of the open incident
    matrix: EscalationMatrix
    now: datetime


def _entries(turn: _Turn, message: dict[str, Any], channels: list[str]) -> list[OutboxEntry]:
    """The outbox entries of a turn: a resumption, a held resolve, or the channels' messages."""
    r, now = turn.remediation, turn.now
    ended, since = turn.incident.episodes(r.starts_at)
    if turn.episode:
        message["summary"] = (
            f"fired again (episode {ended + 1} in {_span(now - since)}): {message['summary']}"
        )[:1024]
    entries = []
    if turn.resuming:
        resume = {**message, "episodes": ended, "since": since.isoformat()}
        entries.append(OutboxEntry(entry_id(), HOLD, RESUME, turn.key, r.id, resume, now, now))
    if channels == [HOLD]:
        hold = turn.matrix.resolve_after
        held = {**message, "episodes": ended + 1, "since": since.isoformat()}
        held["summary"] = held_summary(r, hold, ended + 1, now - since)
        entries.append(OutboxEntry(entry_id(), HOLD, HELD, turn.key, r.id, held, now, now + hold))
    elif channels:
        entries += outbox_entries(
            turn.matrix,
            message,
            channels,
            remediation_id=r.id,
            now=now,
            opening=not turn.incident.open,
            entry_id=lambda channel: _named(r, turn.notify, turn.latest, channel),
        )
    return entries


class IncidentStore(AlertLog, RunLedger, Outbox, Protocol):
    """What an incident's messages are made of: the alert, the run's steps and the incident's
    other alerts, and the outbox they are queued in."""


class Escalator:
    def __init__(
        self,
        store: IncidentStore,
        matrix: Callable[[], EscalationMatrix],
        *,
        clock: Callable[[], float] = time.time,
        external_url: str | None = None,
        severity_of: Callable[[str], str | None] = lambda _policy: None,
    ) -> None:
        self._store = store
        self._matrix = matrix
        self._clock = clock
        self._external_url = external_url
        self._severity_of = severity_of

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
        approval: ApprovalAsk | None = None,
    ) -> list[OutboxEntry]:
        """The messages `rule` calls for at this turn of the remediation, for the caller to
        queue with it; the rule is told whether the incident is open (paged and not
        resolved), read with the rest in one look-up. The alert and the remediation's steps
        are read for the message, unless the caller has them."""
        turn = await self._turn(remediation, rule)
        if turn is None:
            return []
        channels = await self._audience(turn)
        if not channels and not turn.resuming:
            return []
        if alert is None:
            alert = await self._store.alert(remediation.fingerprint, remediation.starts_at)
        if steps is None:
            steps = await self._store.steps(remediation.id)
        context = MessageContext(
            turn.matrix,
            turn.now,
            self._external_url,
            self._severity_of(remediation.policy) if remediation.policy else None,
        )
        message = _message(remediation, turn.notify or "trigger", turn.key, alert, steps, context)
        if approval is not None:
            message["approval"] = approval.as_json()
        entries = _entries(turn, message, channels)
        log.info("escalation queued", action=turn.notify, channels=channels, dedup_key=turn.key)
        return entries

    async def _turn(self, remediation: Remediation, rule: Callable[[bool], Notify]) -> _Turn | None:
        """This turn as its incident sees it, or None when it tells nobody anything."""
        key = dedup_key(remediation)
        latest = {entry.channel: entry for entry in await self._store.latest_outbox(key)}
        incident = Incident.of(latest.values())
        refired = incident.held is not None and _fired_since(remediation, incident.held)
        is_open = bool(incident.paged) and (incident.held is None or refired)
        notify = rule(is_open)
        # A page while its resolve is held, an episode's or another turn's, resumes the incident.
        resuming = incident.held is not None and (refired or notify == "trigger")
        if notify is None and not resuming:
            return None
        return _Turn(
            remediation,
            notify,
            key,
            incident,
            latest,
            is_open=is_open,
            resuming=resuming,
            # This turn and the later ones of the episode that resumed it (its page may come
            # only when its run fails): an update of the open incident.
            episode=refired or incident.resumed_by(remediation),
            matrix=self._matrix(),
            now=datetime.fromtimestamp(self._clock(), UTC),
        )

    async def _audience(self, turn: _Turn) -> list[str]:
        """The channels that hear this turn (a shared incident's resolve: none while another
        of its alerts is firing)."""
        channels = _channels(
            turn.matrix,
            turn.remediation,
            turn.notify,
            turn.latest,
            paged_on=turn.incident.paged if turn.is_open else [],
            episode=turn.episode,
            now=turn.now,
        )
        if turn.notify == "resolve" and channels and await self._others_firing(turn.remediation):
            log.info("shared incident: its resolve waits for its other alerts", dedup_key=turn.key)
            return []
        return channels

    async def _others_firing(self, remediation: Remediation) -> bool:
        """Whether the shared incident the remediation is in holds another alert still firing:
        then its resolve waits, and the last alert to resolve queues it. Asked after this
        alert's resolution is written (at intake, before its event can be handled), so of two
        resolving at once on two replicas the later look-up sees the other resolved: one of
        them queues the resolve (both may: see `_named`)."""
        incident = remediation.plan.incident
        return incident is not None and await self._store.shared_incident_firing(
            incident, remediation.fingerprint, remediation.starts_at
        )


@dataclass(frozen=True)
class MessageContext:
    """What a message says beyond its remediation and alert: the matrix (the level's reason and
    its next rung), the time, where the run can be seen, and the policy's `severity`."""

    matrix: EscalationMatrix
    now: datetime
    external_url: str | None = None
    policy_severity: str | None = None  # P1..P4, from_label, or None (no policy, or gone)


def _message(
    remediation: Remediation,
    action: str,
    key: str,
    alert: AlertRecord | None,
    recorded: Sequence[StepRecord],
    context: MessageContext,
) -> dict[str, Any]:
    r = remediation
    labels = alert.labels if alert else {}
    annotations = alert.annotations if alert else {}
    steps = [{"action": s.action, "outcome": s.outcome, "message": s.message} for s in recorded]
    diagnostics = {
        s.step_id or s.action: s.data for s in recorded if s.action in DIAGNOSTIC and s.data
    }
    links = alert_links(alert) if alert else {}
    url = run_url(context.external_url, r.id)
    if url:
        links = {"Run": url, **links}
    level = r.plan.level or "P3"
    return {
        "action": action,
        "dedup_key": key,
        "level": level,
        "summary": summary(r, action, annotations.get("summary", ""), labels),
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
        "run_id": r.id,
        "run_url": url,
        "severity_why": severity_why(level, r.policy, context.policy_severity, labels, context),
        "next": next_step(r, action, context),
        "started_at": r.starts_at.isoformat(),
    }


def run_url(external_url: str | None, run_id: str) -> str | None:
    """The run's page in Remediator's console, when the service knows the address it is
    reached at."""
    if not external_url:
        return None
    return f"{external_url.rstrip('/')}/ui/runs/{quote(run_id, safe='')}"


def severity_why(
    level: str,
    policy: str | None,
    policy_severity: str | None,
    labels: dict[str, str],
    context: MessageContext,
) -> str:
    """Why the message is at its level: the policy's `severity`, or the alert's severity label
    through the matrix (no policy matched, or the policy takes the label)."""
    if policy and policy_severity and policy_severity != "from_label":
        return f"policy {policy} sets severity {policy_severity}"
    label = labels.get("severity")
    if label is not None:
        label = label[:100]  # a label is anyone's: a page is not made of one
    if label is None:
        by_label = f"the alert has no severity label: the matrix's default, {level}"
    elif label in context.matrix.severity_labels:
        by_label = f"the alert's severity label {label!r} maps to {level}"
    else:
        by_label = (
            f"the alert's severity label {label!r} is not in the matrix: its default, {level}"
        )
    if policy and policy_severity == "from_label":
        return f"policy {policy} takes the alert's severity: {by_label}"
    if policy:  # no longer in force: its severity is not known
        return f"{level}, set by policy {policy}"
    return f"no policy matched: {by_label}"


def next_step(remediation: Remediation, action: str, context: MessageContext) -> str:
    """What happens next, in a line: verifying until when, a person paged, or nothing more."""
    r = remediation
    if action == "resolve":
        return "nothing more: the incident is closed"
    if r.outcome == "verifying":
        until = f" until {_clock_time(r.verify_until)}" if r.verify_until else ""
        return (
            f"verifying{until}: resolved when the alert clears; "
            "paged as failed if it still fires then"
        )
    if r.outcome in ("waiting", "running"):
        return "remediating: this page is updated when the run ends"
    if r.outcome == "awaiting_approval":
        return (
            "waiting for approval (see the reason for who may approve and how); the run goes"
            " on once approved, and this page is updated"
        )
    level = r.plan.level or "P3"
    route = context.matrix.levels.get(level)
    paging = f"paging {level}: a person must act"
    if route is not None and route.next is not None:
        rung = route.next
        paging += (
            f"; climbs to {rung.level} {format_duration(rung.after)} after the first page "
            "if still open"
        )
    return paging


def _clock_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%H:%M UTC")


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


def _channels(
    matrix: EscalationMatrix,
    remediation: Remediation,
    notify: Notify,
    latest: dict[str, OutboxEntry],
    *,
    paged_on: list[str],
    episode: bool,
    now: datetime,
) -> list[str]:
    """Who hears this turn: a resolve, the channels paged (or [HOLD], held for the matrix's
    `resolve_after`); a page, its level's channels but those told enough already."""
    hold = matrix.resolve_after
    if notify == "resolve":
        level = remediation.plan.level
        route = matrix.levels.get(level) if level else None
        quiet = route is not None and not route.resolved_email
        channels = [c for c in paged_on if not (quiet and c == "email")]
        return [HOLD] if hold and channels else channels
    if notify is None:
        return []
    if episode:
        # Another episode of an open incident: an update, at most one per hold time.
        return [c for c in remediation.plan.channels if not _told_within(latest, c, hold, now)]
    # A channel that already heard this outcome of this incident is not told again:
    # a storm of alerts on one target, each blocked, is one message, not a hundred.
    return [
        channel
        for channel in remediation.plan.channels
        if not _already_told(latest.get(channel), remediation.outcome)
    ]


def _named(
    remediation: Remediation, notify: Notify, latest: dict[str, OutboxEntry], channel: str
) -> str:
    """A shared incident's resolve is named after the page it resolves, the channel's latest:
    its last two alerts resolving at once on two replicas (a shared cause ends for all its
    alerts together) queue it once. (A held resolve is released once however many were held:
    the newest supersedes the others.) Any other message is new."""
    if notify == "resolve" and remediation.plan.incident:
        return f"{latest[channel].id}/resolve"
    return entry_id()


def _fired_since(remediation: Remediation, held: OutboxEntry) -> bool:
    """A new episode of the alert: a firing remediation begun after the resolve was held."""
    return remediation.kind == "firing" and remediation.started_at >= held.created_at


def _told_within(
    latest: dict[str, OutboxEntry], channel: str, hold: timedelta, now: datetime
) -> bool:
    """Whether the channel heard a page of this incident within the hold time (a channel
    that updates in place hears every episode)."""
    told = latest.get(channel)
    return (
        channel not in UPDATES_IN_PLACE
        and told is not None
        and told.action == "trigger"
        and now - told.created_at < hold
    )


def _unsent(entry: OutboxEntry) -> bool:
    return entry.sent_at is None and entry.failed_at is None


def _order(entry: OutboxEntry) -> tuple[datetime, str]:
    return entry.created_at, entry.id


def _span(duration: timedelta) -> str:
    """A duration to the minute (to the second under one)."""
    seconds = int(duration.total_seconds())
    return format_duration(timedelta(seconds=seconds - seconds % 60 if seconds >= 60 else seconds))


def held_summary(remediation: Remediation, hold: timedelta, episodes: int, span: timedelta) -> str:
    """What a held resolve says when it goes: it stayed resolved, after how many episodes."""
    r = remediation
    after = f", after {episodes} episodes in {_span(span)}" if episodes > 1 else ""
    stayed = f"resolved, and stayed resolved for {format_duration(hold)}{after}"
    if r.plan.incident:
        return f"every held alert {stayed}: {r.reason}"[:1024]
    where = f" on {r.target}" if r.target else ""
    return f"{r.alertname}{where} {stayed} ({r.outcome}: {r.reason})"[:1024]


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


def summary(
    remediation: Remediation,
    action: str,
    said: str = "",
    labels: dict[str, str] | None = None,
) -> str:
    """One line: the alert, where, what its `summary` annotation says, and what Remediator did,
    each said once ("DiskAlmostFull on node-3: disk / at 93% — no policy matches: escalate
    only")."""
    r = remediation
    if r.plan.incident:
        # One incident of a probable shared cause: its reason names the cause and the targets
        # (each alert held in it is told of once; the resolve waits for the last).
        text = f"every held alert resolved: {r.reason}" if action == "resolve" else r.reason
        return text[:1024]
    where = r.target or (labels or {}).get("instance")
    subject = f"{r.alertname} on {where}" if where else r.alertname
    if said:
        subject = f"{subject}: {' '.join(said.split())} —"
    else:
        subject += ":"
    if action == "resolve":
        return f"{subject} resolved ({r.outcome}: {r.reason})"[:1024]
    what = _OUTCOMES.get(r.outcome, r.outcome)
    return f"{subject} {_once(what, r.reason)}"[:1024]


_OUTCOMES = {
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
    "error": "not handled: an internal error",
    "awaiting_approval": "remediation waiting for approval",
    "rejected": "approval refused, nothing more changed",
    "expired": "no approval in time, nothing more changed",
}


def _once(what: str, reason: str) -> str:
    """The outcome and its reason, without saying the same words twice."""
    if not reason or reason.lower() in what.lower():
        return what
    if reason.lower().startswith(what.lower()):
        return reason
    return f"{what}: {reason}"
