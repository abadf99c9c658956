"""A year-like history for the console to show: 100,000 runs over 30 days, written fast.

What the store would hold after a month of a busy deployment, in the store's own tables and
row formats (`remediator.store.rows` builds the remediation and step rows, as the service
writes them): alert episodes (`alerts`), their firing and resolved events (`alert_events`,
done), a remediation per handled event (`remediations`), the steps of each run
(`remediation_steps`) and the messages of each escalation (`outbox`, sent). Written with
PostgreSQL's COPY, about 20 s for 100,000 runs on the 2-core machine.

The variety a person filters by: 50 alertnames (a few far more frequent, as alerts are), 20
policies matching 45 of them (5 match none: `no_match`), 500 targets (Deployment/prod-N/svc-M),
outcomes mixed as a month has them (half succeed; failures, blocks by each guard, dry runs,
refusals, approvals rejected or expired), started uniformly over the 30 days. The newest
episodes are still firing: some verifying, some awaiting an approval (a pending request
each), some escalated, for the Now and Approvals pages.

Deterministic for a seed: the same history each run.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from tests.support.policies import SHIPPED_POLICIES, shipped_guardrails

from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import BreakerSummary, PlanSummary
from remediator.store import ApprovalRequest, Remediation, StepRecord, open_store
from remediator.store import rows as store_rows

ALERTNAMES = tuple(
    f"{what}{where}"
    for what in (
        "HighMemoryUsage",
        "HighCpuUsage",
        "HighErrorRate",
        "HighResponseTime",
        "ApplicationDown",
        "PodCrashLooping",
        "DiskFillingUp",
        "QueueBacklogGrowing",
        "CertificateExpiring",
        "ReplicasMismatch",
    )
    for where in ("", "Api", "Worker", "Gateway", "Batch")
)
POLICIES = 20
NO_POLICY = 5  # the last alertnames: no policy matches them
TARGETS = 500
NAMESPACES = 10
DAYS = 30
ON_RESOLVED = 4  # the first policies undo their scaling once the alert resolved
STEP_IDS = {"kubernetes.diagnose": "diagnose", "kubernetes.scale": "scale"}
STEP_IDS["kubernetes.rollout_status"] = "rollout"
STEP_ACTIONS = tuple(STEP_IDS)
UNDO_ACTION = "kubernetes.scale"

# The month's outcomes of a firing alert with a policy, and how often (per thousand).
OUTCOMES: tuple[tuple[RunOutcome, str | None, int], ...] = (
    (RunOutcome.SUCCEEDED, None, 500),
    (RunOutcome.FAILED, None, 100),
    (RunOutcome.DRY_RUN, None, 90),
    (RunOutcome.BLOCKED, "rate_limit", 70),
    (RunOutcome.BLOCKED, "blast_radius", 30),
    (RunOutcome.BLOCKED, "circuit_breaker", 30),
    (RunOutcome.BLOCKED, "recurrence", 15),
    (RunOutcome.BLOCKED, "kill_switch", 5),
    (RunOutcome.STOPPED, None, 40),
    (RunOutcome.REFUSED, None, 30),
    (RunOutcome.SKIPPED, None, 40),
    (RunOutcome.REJECTED, None, 25),
    (RunOutcome.EXPIRED, None, 15),
    (RunOutcome.INTERRUPTED, None, 7),
    (RunOutcome.ERROR, None, 3),
)
REASONS = {
    RunOutcome.SUCCEEDED: "the alert resolved in time",
    RunOutcome.FAILED: "not resolved within 15m after the run",
    RunOutcome.DRY_RUN: "dry-run: changes described, none made",
    RunOutcome.STOPPED: "the alert resolved",
    RunOutcome.REFUSED: "namespace not allowed by guardrails",
    RunOutcome.SKIPPED: "resolved before the run started",
    RunOutcome.REJECTED: "approval rejected by operator",
    RunOutcome.EXPIRED: "no approval within 30m",
    RunOutcome.INTERRUPTED: "its worker stopped; taken over",
    RunOutcome.ERROR: "unexpected error: KeyError('status')",
    RunOutcome.NO_MATCH: "no policy matches: escalate only",
}
GUARD_REASONS = {
    "rate_limit": "rate limit 2/1h reached for this target",
    "blast_radius": "blast radius: 5 targets changed in 10m",
    "circuit_breaker": "circuit breaker open after 3 failures in 1h",
    "recurrence": "the fix did not last: fired again 12m after it was verified",
    "kill_switch": "paused by operator: deploy freeze",
}
# Outcomes whose steps ran (or were described), and how many of the policy's steps.
RAN = {
    RunOutcome.SUCCEEDED: 3,
    RunOutcome.FAILED: 3,
    RunOutcome.DRY_RUN: 3,
    RunOutcome.STOPPED: 1,
    RunOutcome.REJECTED: 1,
    RunOutcome.EXPIRED: 1,
    RunOutcome.INTERRUPTED: 2,
    RunOutcome.ERROR: 1,
}
ESCALATED = {
    RunOutcome.FAILED,
    RunOutcome.BLOCKED,
    RunOutcome.REFUSED,
    RunOutcome.NO_MATCH,
    RunOutcome.ERROR,
    RunOutcome.REJECTED,
    RunOutcome.EXPIRED,
}
# The newest episodes, still firing: what Now and Approvals show.
FIRING_NOW: tuple[tuple[RunOutcome, str | None, int], ...] = (
    (RunOutcome.VERIFYING, None, 12),
    (RunOutcome.AWAITING_APPROVAL, None, 6),
    (RunOutcome.FAILED, None, 6),
    (RunOutcome.BLOCKED, "rate_limit", 4),
    (RunOutcome.NO_MATCH, None, 4),
)


def target_of(index: int) -> tuple[str, str]:
    """The namespace and deployment of target `index` (0..499)."""
    return f"prod-{index % NAMESPACES}", f"svc-{index // NAMESPACES:02d}"


def target_key(index: int) -> str:
    """Target `index` as the guards and the store key it."""
    namespace, deployment = target_of(index)
    return f"Deployment/{namespace}/{deployment}"


def policy_name(number: int) -> str:
    return f"bench-policy-{number:02d}"


def policy_of(alertname_index: int) -> str | None:
    """Alertnames 0..44 spread over the 20 policies; the last 5 have none."""
    if alertname_index >= len(ALERTNAMES) - NO_POLICY:
        return None
    return policy_name(alertname_index % POLICIES)


def write_policies(directory: Path) -> Path:
    """The 20 policies the history was made by, with the shipped matrix and guardrails (every
    bench namespace allowed): the live set the console's Policies page shows."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "escalation.yaml").write_text((SHIPPED_POLICIES / "escalation.yaml").read_text())
    rails = shipped_guardrails("allowed_namespaces: ['prod-[0-9]+']\nmax_concurrent_runs: 10\n")
    (directory / "guardrails.yaml").write_text(rails)
    for number in range(POLICIES):
        names = [n for i, n in enumerate(ALERTNAMES) if policy_of(i) == policy_name(number)]
        (directory / f"{policy_name(number)}.yaml").write_text(
            yaml.safe_dump(policy(number, names), sort_keys=False)
        )
    return directory


def policy(number: int, alertnames: list[str]) -> dict[str, Any]:
    params = {"kubernetes.scale": {"by": 1, "max_replicas": 8}}
    steps = [
        {
            "id": step_id,
            "action": action,
            **({"params": params[action]} if action in params else {}),
        }
        for action, step_id in STEP_IDS.items()
    ]
    document: dict[str, Any] = {
        "name": policy_name(number),
        "description": f"Bench policy {number}: scale out by one for {', '.join(alertnames)}",
        "match": [f'alertname=~"{"|".join(alertnames)}"', 'namespace=~".+"', 'deployment=~".+"'],
        "severity": "P3" if number % 3 else "P2",
        "target": {
            "kind": "Deployment",
            "namespace": "{{ labels.namespace }}",
            "name": "{{ labels.deployment }}",
        },
        "steps": steps,
        "verify": {"resolved_within": "15m"},
        "rate_limit": {"windows": [{"max": 2, "per": "1h"}]},
        "circuit_breaker": {"failures": 3, "window": "1h", "cooldown": "30m"},
    }
    if number < ON_RESOLVED:
        document["on_resolved"] = [
            {"action": UNDO_ACTION, "params": {"by": -1, "min_replicas": 2, "max_replicas": 8}}
        ]
    return document


@dataclass
class Episode:
    number: int
    alertname_index: int
    target_index: int
    starts_at: datetime
    outcome: RunOutcome
    guard: str | None
    firing: bool = False

    @property
    def alertname(self) -> str:
        return ALERTNAMES[self.alertname_index]

    @property
    def policy(self) -> str | None:
        return policy_of(self.alertname_index)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"episode-{self.number}".encode()).hexdigest()[:16]

    @property
    def namespace(self) -> str:
        return target_of(self.target_index)[0]

    @property
    def deployment(self) -> str:
        return target_of(self.target_index)[1]

    @property
    def target(self) -> str:
        return target_key(self.target_index)

    @property
    def labels(self) -> dict[str, str]:
        return {
            "alertname": self.alertname,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "pod": f"{self.deployment}-7d9f8b6c5-{self.fingerprint[:5]}",
            "instance": f"10.4.{self.target_index // 250}.{self.target_index % 250}:8080",
            "severity": "critical" if self.alertname_index % 4 == 0 else "warning",
        }


@dataclass
class Tables:
    """The rows of each table, in COPY's column order."""

    alerts: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    remediations: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    approvals: list[ApprovalRequest] = field(default_factory=list)


ALERT_COLUMNS = (
    "fingerprint",
    "starts_at",
    "alertname",
    "status",
    "labels",
    "annotations",
    "ends_at",
    "generator_url",
    "first_received",
    "last_received",
    "deliveries",
    "external_url",
)
EVENT_COLUMNS = (
    "id",
    "fingerprint",
    "starts_at",
    "kind",
    "notification_id",
    "enqueued_at",
    "done_at",
    "attempts",
    "turn",
)
REMEDIATION_COLUMNS = (
    "id",
    "event_id",
    "fingerprint",
    "starts_at",
    "alertname",
    "kind",
    "policy",
    "policy_revision",
    "outcome",
    "guard",
    "reason",
    "run_id",
    "target",
    "plan",
    "started_at",
    "verify_until",
    "finished_at",
    "incident",
)
STEP_COLUMNS = (
    "remediation_id",
    "phase",
    "position",
    "step_id",
    "action",
    "outcome",
    "message",
    "data",
    "attempts",
    "started_at",
    "finished_at",
)
OUTBOX_COLUMNS = (
    "id",
    "channel",
    "action",
    "dedup_key",
    "remediation_id",
    "message",
    "created_at",
    "next_attempt_at",
    "attempts",
    "sent_at",
)


class History:
    """The month, episode by episode, into rows. `runs` counts remediations."""

    def __init__(self, runs: int, now: datetime, seed: int = 20) -> None:
        self.runs = runs
        self.now = now
        self.random = random.Random(seed)
        self.tables = Tables()
        self.next_event = 1
        self.revision = hashlib.sha1(b"bench policies").hexdigest()

    def build(self) -> Tables:
        for episode in self.episodes():
            self.add(episode)
        return self.tables

    def episodes(self) -> list[Episode]:
        """Past episodes, oldest first, then the ones firing now. An episode whose run was
        undone once its alert resolved counts two runs: episodes are drawn until the runs
        add up, then spread over the month in order."""
        firing = [(o, g) for o, g, n in FIRING_NOW for _ in range(n)]
        self.random.shuffle(firing)
        weights = [1 / (k + 1) ** 0.8 for k in range(len(ALERTNAMES))]
        drawn: list[Episode] = []
        runs = len(firing)
        while runs < self.runs:
            [name] = self.random.choices(range(len(ALERTNAMES)), weights)
            [(outcome, guard)] = self.random.choices(
                [(o, g) for o, g, _ in OUTCOMES], [n for *_, n in OUTCOMES]
            )
            episode = self.episode(len(drawn), name, outcome, guard)
            cost = 2 if episode.outcome is RunOutcome.SUCCEEDED and self.undoes(episode) else 1
            if runs + cost > self.runs:
                continue  # one run short: drawn again, so the count is exact
            drawn.append(episode)
            runs += cost
        span = timedelta(days=DAYS) - timedelta(hours=3)
        oldest = self.now - timedelta(days=DAYS) + timedelta(hours=1)
        for episode, at in zip(drawn, sorted(self.random.random() for _ in drawn), strict=True):
            episode.starts_at = oldest + span * at
        for offset, (outcome, guard) in enumerate(firing):
            [name] = self.random.choices(range(len(ALERTNAMES) - NO_POLICY), weights[:-NO_POLICY])
            episode = self.episode(
                len(drawn), name if outcome is not RunOutcome.NO_MATCH else -1, outcome, guard
            )
            episode.starts_at = self.now - timedelta(minutes=100) + timedelta(minutes=3 * offset)
            episode.firing = True
            drawn.append(episode)
        return drawn

    def episode(self, number: int, name: int, outcome: RunOutcome, guard: str | None) -> Episode:
        if name < 0 or policy_of(name) is None:  # no policy: escalated only
            name = name if name >= 0 else len(ALERTNAMES) - 1
            outcome, guard = RunOutcome.NO_MATCH, None
        target = self.random.randrange(TARGETS)
        return Episode(number, name, target, self.now, outcome, guard)

    def add(self, episode: Episode) -> None:
        """The episode's alert, events, remediations, steps and messages."""
        decided = episode.starts_at + timedelta(seconds=self.random.uniform(1, 40))
        finished = None
        if not episode.outcome.active:  # ended: a still firing alert's run ended by now
            finished = min(
                decided + self.duration(episode.outcome), self.now - timedelta(seconds=30)
            )
        ends_at = None if episode.firing else (finished or decided) + timedelta(minutes=2)
        firing_event = self.event(episode, "firing", episode.starts_at, decided)
        self.alert(episode, ends_at)
        self.tables.remediations.append(
            self.remediation(episode, "firing", firing_event, decided, finished)
        )
        if ends_at is not None:
            resolved_event = self.event(episode, "resolved", ends_at, ends_at)
            if episode.outcome is RunOutcome.SUCCEEDED and self.undoes(episode):
                self.tables.remediations.append(self.undo(episode, resolved_event, ends_at))

    def undoes(self, episode: Episode) -> bool:
        policy = episode.policy
        return policy is not None and int(policy[-2:]) < ON_RESOLVED

    def duration(self, outcome: RunOutcome) -> timedelta:
        if outcome in {RunOutcome.SUCCEEDED, RunOutcome.STOPPED}:
            return timedelta(minutes=self.random.uniform(1, 14))
        if outcome in {RunOutcome.FAILED, RunOutcome.REJECTED, RunOutcome.EXPIRED}:
            return timedelta(minutes=self.random.uniform(15, 30))
        if outcome in RAN:
            return timedelta(seconds=self.random.uniform(1, 20))
        return timedelta(milliseconds=self.random.uniform(5, 80))

    def alert(self, episode: Episode, ends_at: datetime | None) -> None:
        last = ends_at or self.now - timedelta(seconds=self.random.uniform(0, 60))
        annotations = {
            "summary": f"{episode.alertname} on {episode.namespace}/{episode.deployment}",
            "runbook_url": f"https://runbooks.example/{episode.alertname.lower()}",
        }
        self.tables.alerts.append(
            (
                episode.fingerprint,
                episode.starts_at,
                episode.alertname,
                "firing" if ends_at is None else "resolved",
                json.dumps(episode.labels),
                json.dumps(annotations),
                ends_at,
                "http://prometheus:9090/graph?g0.expr=up",
                episode.starts_at,
                last,
                max(1, int((last - episode.starts_at).total_seconds() // 300)),
                "http://alertmanager:9093/",
            )
        )

    def event(self, episode: Episode, kind: str, at: datetime, done: datetime) -> int:
        event_id = self.next_event
        self.next_event += 1
        row = (event_id, episode.fingerprint, episode.starts_at, kind, event_id, at, done, 1, 0)
        self.tables.events.append(row)
        return event_id

    def remediation(
        self,
        episode: Episode,
        kind: str,
        event_id: int,
        started: datetime,
        finished: datetime | None,
    ) -> tuple[Any, ...]:
        outcome = episode.outcome
        ran = outcome in RAN or outcome in {RunOutcome.VERIFYING, RunOutcome.AWAITING_APPROVAL}
        policy = episode.policy
        remediation = Remediation(
            id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            event_id=event_id,
            fingerprint=episode.fingerprint,
            starts_at=episode.starts_at,
            alertname=episode.alertname,
            kind=kind,
            policy=policy,
            policy_revision=self.revision if policy else None,
            outcome=outcome,
            guard=episode.guard,
            reason=self.reason(episode),
            run_id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)) if ran else None,
            target=episode.target if policy and outcome is not RunOutcome.REFUSED else None,
            plan=self.plan(episode),
            started_at=started,
            verify_until=self.verify_until(episode, started) if ran else None,
            finished_at=finished,
        )
        self.add_steps(remediation, "steps", self.steps_of(episode), started)
        if outcome in ESCALATED or (episode.firing and outcome is not RunOutcome.VERIFYING):
            self.message(remediation, episode, started)
        if outcome is RunOutcome.AWAITING_APPROVAL:
            self.approval(remediation, episode, started)
        return store_row(remediation)

    def verify_until(self, episode: Episode, started: datetime) -> datetime:
        """Fifteen minutes after the run; for one still verifying, after the bench too: its
        verification is not ended (and escalated) while the pages are timed."""
        if episode.firing:
            return self.now + timedelta(hours=2)
        return started + timedelta(minutes=15)

    def undo(self, episode: Episode, event_id: int, at: datetime) -> tuple[Any, ...]:
        remediation = Remediation(
            id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            event_id=event_id,
            fingerprint=episode.fingerprint,
            starts_at=episode.starts_at,
            alertname=episode.alertname,
            kind="resolved",
            policy=episode.policy,
            policy_revision=self.revision,
            outcome=RunOutcome.SUCCEEDED,
            guard=None,
            reason="on_resolved: undone",
            run_id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
            target=episode.target,
            plan=self.plan(episode),
            started_at=at,
            finished_at=at + timedelta(seconds=2),
        )
        self.add_steps(remediation, "on_resolved", (UNDO_ACTION,), at)
        return store_row(remediation)

    def reason(self, episode: Episode) -> str:
        if episode.guard is not None:
            return GUARD_REASONS[episode.guard]
        if episode.outcome is RunOutcome.VERIFYING:
            return "steps done; verifying until the alert resolves (15m)"
        if episode.outcome is RunOutcome.AWAITING_APPROVAL:
            return "waiting for approval of scale by operator"
        return REASONS[episode.outcome]

    def plan(self, episode: Episode) -> PlanSummary:
        level = "P2" if episode.alertname_index % 3 == 0 else "P3"
        channels = ("pagerduty", "slack") if level == "P2" else ("slack",)
        if episode.policy is None or episode.outcome is RunOutcome.REFUSED:
            return PlanSummary(level=level, channels=channels)
        key = f"{episode.policy}:{episode.target}"
        return PlanSummary(
            level=level,
            channels=channels,
            target=episode.target,
            steps=STEP_ACTIONS,
            on_resolved=(UNDO_ACTION,) if self.undoes(episode) else (),
            verify_within="15m",
            rate_limit_key=key,
            breaker=BreakerSummary(key, 3, 3600.0, 1800.0),
        )

    def steps_of(self, episode: Episode) -> tuple[str, ...]:
        outcome = episode.outcome
        if outcome is RunOutcome.VERIFYING:
            return STEP_ACTIONS
        if outcome is RunOutcome.AWAITING_APPROVAL:
            return STEP_ACTIONS[:1]
        return STEP_ACTIONS[: RAN.get(outcome, 0)]

    def add_steps(
        self, remediation: Remediation, phase: str, actions: tuple[str, ...], at: datetime
    ) -> None:
        for position, action in enumerate(actions):
            took = timedelta(milliseconds=self.random.uniform(20, 900))
            last = position == len(actions) - 1
            failed = last and remediation.outcome is RunOutcome.ERROR
            step = StepRecord(
                remediation_id=remediation.id,
                phase=phase,
                position=position,
                step_id=STEP_IDS[action] if phase == "steps" else None,
                action=action,
                outcome="failed" if failed else "ok",
                message=self.step_message(action, remediation),
                data=self.step_data(action, remediation),
                attempts=1 if self.random.random() < 0.95 else 2,
                started_at=at,
                finished_at=at + took,
            )
            self.tables.steps.append(store_rows.step_row(step))
            at += took

    def step_message(self, action: str, remediation: Remediation) -> str:
        if action == "kubernetes.scale" and remediation.kind == "resolved":
            return "scaled from 4 back to 3 replicas"
        if action == "kubernetes.scale" and remediation.outcome is RunOutcome.DRY_RUN:
            return "would scale from 3 to 4 replicas"
        return {
            "kubernetes.diagnose": "3 pods, 1 restarted (OOMKilled)",
            "kubernetes.scale": "scaled from 3 to 4 replicas",
            "kubernetes.rollout_status": "rollout complete: 4 of 4 ready",
        }[action]

    def step_data(self, action: str, remediation: Remediation) -> dict[str, Any]:
        if action == "kubernetes.diagnose":
            pods = [
                {"name": f"{remediation.target}-{n}", "restarts": n, "reason": "OOMKilled"}
                for n in range(3)
            ]
            return {"pods": pods, "rollout": {"ready_replicas": 2, "replicas": 3}}
        if action == "kubernetes.scale":
            # A change's record carries its parameters as rendered (remediation/steps.py).
            by = -1 if remediation.kind == "resolved" else 1
            params = {"by": by, "max_replicas": 8, "min_replicas": 2 if by < 0 else 1}
            counts = {"from": 3, "to": 3 + by} if by > 0 else {"from": 4, "to": 3}
            dry_run = remediation.outcome is RunOutcome.DRY_RUN
            return {**counts, "dry_run": dry_run, "params": params}
        return {"ready": 4, "replicas": 4}

    def message(self, remediation: Remediation, episode: Episode, at: datetime) -> None:
        key = (
            f"remediator/{remediation.policy}/{remediation.target}"
            if remediation.policy and remediation.target
            else f"remediator/alert/{remediation.alertname}/{remediation.fingerprint}"
        )
        for channel in remediation.plan.channels:
            entry_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
            text = {
                "id": entry_id,
                "action": "trigger",
                "dedup_key": key,
                "level": remediation.plan.level,
                "summary": f"{remediation.alertname} on {remediation.target}: "
                f"{remediation.outcome}: {remediation.reason}",
                "alertname": remediation.alertname,
                "status": "firing",
                "labels": episode.labels,
                "annotations": {},
                "policy": remediation.policy,
                "target": remediation.target,
                "outcome": str(remediation.outcome),
                "reason": remediation.reason,
                "steps": [],
                "links": {},
                "diagnostics": {},
                "run_id": remediation.id,
                "run_url": None,
                "severity_why": "",
                "next": "",
                "started_at": episode.starts_at.isoformat(),
                "approval": None,
            }
            sent = at + timedelta(milliseconds=self.random.uniform(50, 400))
            row = (entry_id, channel, "trigger", key, remediation.id, json.dumps(text), at, at, 1)
            self.tables.outbox.append((*row, sent))

    def approval(self, remediation: Remediation, episode: Episode, at: datetime) -> None:
        params = {"by": 1, "max_replicas": 8}
        digest = hashlib.sha256(json.dumps([remediation.id, params]).encode()).hexdigest()
        self.tables.approvals.append(
            ApprovalRequest(
                id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
                remediation_id=remediation.id,
                event_id=remediation.event_id,
                fingerprint=episode.fingerprint,
                starts_at=episode.starts_at,
                alertname=episode.alertname,
                policy=remediation.policy or "",
                position=1,
                step="scale",
                action="kubernetes.scale",
                target=episode.target,
                params=params,
                digest=digest,
                approvers=("operator",),
                min_approvals=1,
                on_timeout="reject",
                requested_at=at,
                expires_at=self.now + timedelta(hours=2),
                shown={"change": "would scale from 3 to 4 replicas"},
            )
        )


def store_row(remediation: Remediation) -> tuple[Any, ...]:
    row = store_rows.remediation_row(remediation)
    return (*row[:8], str(row[8]), *row[9:])


async def seed(database_url: str, runs: int, now: datetime | None = None) -> Tables:
    """Migrate the store at `database_url` (PostgreSQL, empty) and write the month into it."""
    store = await open_store(database_url)
    await store.close()
    tables = History(runs, now or datetime.now(UTC)).build()
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            for table, columns, records in [
                ("alerts", ALERT_COLUMNS, tables.alerts),
                ("alert_events", EVENT_COLUMNS, tables.events),
                ("remediations", REMEDIATION_COLUMNS, tables.remediations),
                ("remediation_steps", STEP_COLUMNS, tables.steps),
                ("outbox", OUTBOX_COLUMNS, tables.outbox),
            ]:
                await connection.copy_records_to_table(table, records=records, columns=columns)
            await connection.execute(
                "SELECT setval(pg_get_serial_sequence('alert_events', 'id'), $1)",
                len(tables.events) + 1,
            )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    store = await open_store(database_url)
    try:
        for request in tables.approvals:
            await store.request_approval(request)
    finally:
        await store.close()
    return tables
