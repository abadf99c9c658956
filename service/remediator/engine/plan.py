"""What `decide` returns: a plan to run, a refusal to escalate, or no match at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from remediator.policy.parameters import Params
from remediator.policy.schema import (
    Channel,
    CircuitBreaker,
    EscalateWhen,
    Level,
    MaxTargets,
    OnTimeout,
    Window,
)


@dataclass(frozen=True)
class Escalation:
    level: Level
    channels: tuple[Channel, ...]
    page_while_remediating: bool


@dataclass(frozen=True)
class RenderedTarget:
    kind: str
    name: str
    namespace: str | None
    container: str | None
    url: str | None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.lower()} {where}{self.name}"


@dataclass(frozen=True)
class ApprovalRule:
    """Who must approve a change before it is made, and for how long they are asked."""

    approvers: tuple[str, ...]
    min_approvals: int = 1
    ttl: timedelta = timedelta(minutes=15)
    on_timeout: OnTimeout = OnTimeout.REJECT
    why: str = ""  # beyond the policy's own rule: its demotion

    @property
    def asked(self) -> str:
        return approvers_asked(self.approvers, self.min_approvals)


def approvers_asked(approvers: Sequence[str], min_approvals: int) -> str:
    """Who must approve, as a person reads it: "one of alice, bob", "2 different people of
    alice, bob, carol"."""
    how_many = "one of" if min_approvals == 1 else f"{min_approvals} different people of"
    return f"{how_many} {', '.join(approvers)}"


@dataclass(frozen=True)
class PlannedStep:
    action: str
    params: Params
    mutating: bool
    id: str | None = None
    when: str | None = None
    timeout: timedelta | None = None
    approval: ApprovalRule | None = None

    @property
    def name(self) -> str:
        """How a person names the step: its id, else its action."""
        return self.id or self.action


@dataclass(frozen=True)
class Plan:
    policy: str
    fingerprint: str
    target: RenderedTarget
    steps: tuple[PlannedStep, ...]
    on_resolved: tuple[PlannedStep, ...]
    verify_within: timedelta
    verify_check: PlannedStep | None
    rate_limit_key: str
    rate_limit: tuple[Window, ...]
    circuit_breaker: CircuitBreaker
    escalation: Escalation
    escalate_when: tuple[EscalateWhen, ...]
    dry_run: bool | None
    decided_at: datetime
    max_targets: MaxTargets | None = None  # the policy's blast radius
    recurs_within: timedelta | None = None  # a verified fix this recent that did not last

    @property
    def mutating(self) -> bool:
        """Whether a step would change something: only such a run counts against a blast
        radius (a read-only plan is never held by one)."""
        return any(step.mutating for step in self.steps)

    @property
    def target_key(self) -> str:
        """The target as the guards lock and count it: kind/namespace/name."""
        target = self.target
        return f"{target.kind}/{target.namespace or '-'}/{target.name}"

    @property
    def breaker_key(self) -> str:
        """One circuit breaker per policy and target."""
        return f"{self.policy}:{self.target_key}"


@dataclass(frozen=True)
class Refused:
    """A policy matched but its plan is unsafe or cannot be made: escalate with the reason."""

    policy: str
    fingerprint: str
    reason: str
    escalation: Escalation
    decided_at: datetime


@dataclass(frozen=True)
class NoMatch:
    """No policy matched: the alert escalates by the severity matrix alone."""

    fingerprint: str
    escalation: Escalation
    decided_at: datetime


Decision = Plan | Refused | NoMatch
