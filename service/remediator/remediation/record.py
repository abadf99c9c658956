"""The run's record: each turn of a remediation written to the store as it happens, and the
messages that turn calls for queued after it (the escalation rules).

A decision or a block is one finished row; a run is a row begun `waiting` or `running` and
ended once, so a crash leaves it unfinished with its completed steps on record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

import structlog

from remediator.engine.escalation import Notify, on_outcome, on_start
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Plan
from remediator.engine.summary import PlanSummary
from remediator.guards.base import BreakerSpec
from remediator.guards.guards import Guards, breaker_spec
from remediator.metrics import OTHER_POLICY, RunMetrics
from remediator.notify.base import ApprovalAsk
from remediator.notify.escalator import Escalator, IncidentStore, dedup_key
from remediator.policy.policyset import PoliciesInForce
from remediator.store import AlertEvent, AlertRecord, OutboxEntry, Remediation, StepRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Decided:
    """What a remediation records beside its outcome and reason."""

    policy: str | None = None
    guard: str | None = None
    target: str | None = None
    plan: PlanSummary = field(default_factory=PlanSummary)
    run_id: str | None = None

    @classmethod
    def of(
        cls,
        plan: Plan,
        *,
        guard: str | None = None,
        run_id: str | None = None,
        incident: str | None = None,
    ) -> Decided:
        summary = replace(PlanSummary.of(plan), incident=incident)
        return cls(plan.policy, guard, plan.target_key, summary, run_id)


@dataclass(frozen=True)
class Known:
    """What a turn's messages tell of that the caller has at hand, so it is not read again:
    the alert, and the run's steps as recorded."""

    alert: AlertRecord | None = None
    steps: Sequence[StepRecord] | None = None
    approval: ApprovalAsk | None = None  # the approval the run now waits for


NOTHING_KNOWN = Known()


class Recorder:
    def __init__(
        self,
        store: IncidentStore,
        guards: Guards,
        policies: PoliciesInForce,
        *,
        clock: Callable[[], float] = time.time,
        metrics: RunMetrics | None = None,
        external_url: str | None = None,
    ) -> None:
        self._store = store
        self._guards = guards
        self._policies = policies
        self._clock = clock
        self._metrics = metrics
        self.escalator = Escalator(
            store,
            lambda: policies.current.matrix,
            clock=clock,
            external_url=external_url,
            severity_of=partial(_severity_of, policies),
        )

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def note(
        self,
        event: AlertEvent,
        alert: AlertRecord,
        outcome: RunOutcome,
        reason: str,
        decided: Decided | None = None,
    ) -> Remediation:
        """Record what happened for an event: a decision or block (finished), or a run begun
        (waiting or running), with the messages it calls for."""
        now = self.now()
        decided = decided or Decided()
        remediation = Remediation(
            id=str(uuid.uuid4()),
            event_id=event.id,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            alertname=alert.alertname,
            kind=event.kind.value,
            policy=decided.policy,
            policy_revision=self._policies.revision,
            outcome=outcome,
            guard=decided.guard,
            reason=reason,
            run_id=decided.run_id,
            target=decided.target,
            plan=decided.plan,
            started_at=now,
            finished_at=now if outcome.finished else None,
        )
        log.info("remediation", outcome=outcome, reason=reason, alertname=alert.alertname)
        # New: it has no steps yet, and its alert is the one at hand.
        return await self._save(remediation, start=outcome.active, known=Known(alert, ()))

    async def running(self, waiting: Remediation, run_id: str | None) -> Remediation:
        """A run that waited for a slot has it: its steps begin (its page, if any, is out)."""
        running = replace(waiting, outcome=RunOutcome.RUNNING, guard=None, reason="", run_id=run_id)
        await self._store.save_remediation(running)
        log.info("remediation", outcome=running.outcome, remediation=running.id)
        return running

    async def end(
        self,
        remediation: Remediation,
        outcome: RunOutcome,
        reason: str,
        known: Known = NOTHING_KNOWN,
    ) -> Remediation:
        ended = replace(remediation, outcome=outcome, reason=reason, finished_at=self.now())
        log.info("remediation ended", remediation=ended.id, outcome=outcome, reason=reason)
        return await self._save(ended, known=known)

    async def fail(self, remediation: Remediation, plan: Plan, reason: str) -> Remediation:
        """The fix failed: counted by its breaker, then ended and escalated."""
        if remediation.run_id is not None:
            await self._guards.record_outcome(remediation.run_id, breaker_spec(plan), False)
        return await self.end(remediation, RunOutcome.FAILED, reason)

    async def error(self, remediation: Remediation, plan: Plan | None, reason: str) -> Remediation:
        """A bug stopped the run: counted by its breaker as a failure (it may have changed
        something), then ended as an error, escalated whatever the policy's `escalate` says."""
        if remediation.run_id is not None and plan is not None:
            await self._guards.record_outcome(remediation.run_id, breaker_spec(plan), False)
        return await self.end(remediation, RunOutcome.ERROR, reason)

    async def succeed(self, remediation: Remediation, reason: str) -> Remediation:
        """Verified: counted by its breaker as a success, then ended (its page resolved)."""
        await self._guards.record_outcome(
            remediation.run_id or "", breaker_of(remediation), succeeded=True
        )
        return await self.end(remediation, RunOutcome.SUCCEEDED, reason)

    async def asking(
        self, remediation: Remediation, reason: str, known: Known
    ) -> tuple[Remediation, list[OutboxEntry]]:
        """Stopped before a change until a person approves it, and the messages asking its
        approvers: for the store to write with the request (`Approvals.request_approval`)."""
        awaiting = replace(remediation, outcome=RunOutcome.AWAITING_APPROVAL, reason=reason)
        return awaiting, await self._messages(awaiting, start=False, known=known)

    async def verifying(
        self, remediation: Remediation, reason: str, until: datetime, known: Known = NOTHING_KNOWN
    ) -> Remediation:
        waiting = replace(
            remediation, outcome=RunOutcome.VERIFYING, reason=reason, verify_until=until
        )
        return await self._save(waiting, known=known)

    async def _save(
        self, remediation: Remediation, *, start: bool = False, known: Known = NOTHING_KNOWN
    ) -> Remediation:
        """Write this turn of the remediation and the messages it calls for in one
        transaction: a crash leaves both or neither."""
        messages = await self._messages(remediation, start=start, known=known)
        await self._store.save_remediation(remediation, messages)
        self._count(remediation)
        return remediation

    def _count(self, remediation: Remediation) -> None:
        """A firing remediation of a policy that ended: `remediator_policy_runs_total`."""
        if self._metrics is None or remediation.policy is None:
            return
        if remediation.kind != "firing" or not remediation.outcome.finished:
            return
        live = {policy.name for policy in self._policies.current.policies}
        policy = remediation.policy if remediation.policy in live else OTHER_POLICY
        self._metrics.policy_runs.labels(policy, remediation.outcome.value).inc()

    async def _messages(
        self, remediation: Remediation, *, start: bool, known: Known = NOTHING_KNOWN
    ) -> list[OutboxEntry]:
        """The messages this turn of the remediation calls for (the escalation rules)."""
        plan = remediation.plan
        rule: Callable[[bool], Notify]
        if start:
            if remediation.kind != "firing":
                return []  # undoing a mitigation pages nobody unless it fails
            # Even a run that pages nobody at its start is asked about: an episode of an
            # incident whose resolve is held resumes it.
            rule = _always(on_start(plan.escalate, plan.page_now))
        else:
            rule = partial(on_outcome, remediation.outcome, plan.escalate)
        return await self.escalator.messages(
            remediation, rule, alert=known.alert, steps=known.steps, approval=known.approval
        )

    async def tell_if_untold(self, remediation: Remediation) -> None:
        """A worker of an earlier version may have died between recording the outcome and
        queueing what it calls for: then nothing of this run is in the outbox, and it is
        queued now."""
        told = await self._store.latest_outbox(dedup_key(remediation))
        if not any(entry.remediation_id == remediation.id for entry in told):
            await self._store.enqueue(await self._messages(remediation, start=False))


def internal_error(error: BaseException) -> str:
    """The reason an unexpected exception is recorded with."""
    return f"internal error: {type(error).__name__}: {error}"[:REASON_LIMIT]


REASON_LIMIT = 1000


def breaker_of(remediation: Remediation) -> BreakerSpec:
    """The breaker a recorded run counts against."""
    spec = remediation.plan.breaker
    assert spec is not None, "only a run with a plan has a breaker"
    return BreakerSpec(spec.key, spec.failures, spec.window, spec.cooldown)


def _always(notify: Notify) -> Callable[[bool], Notify]:
    """A rule that says `notify` whether or not the incident is open."""
    return lambda _: notify


def _severity_of(policies: PoliciesInForce, name: str) -> str | None:
    """The `severity` of the policy in force by that name (None: no longer in force)."""
    policy = next((p for p in policies.current.policies if p.name == name), None)
    return policy.severity if policy is not None else None
