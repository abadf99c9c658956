"""Approval of a risky change: the rule a step carries, what an approval is bound to, and when a
policy whose runs keep failing to fix its alert is demoted to asking first. Pure.

An approval is bound to a digest of the policy, the step, its action, its target and its
parameters as rendered: if any of them changes before the change is made (a policy reload, a
new alert state), the approval no longer fits and is void.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import timedelta

from remediator.engine.ledger import PolicyStats
from remediator.engine.plan import ApprovalRule, Plan, PlannedStep
from remediator.policy.schema import Approval, Guardrails, OnTimeout, Policy

Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


def rule_of(approval: Approval, guardrails: Guardrails) -> ApprovalRule:
    """The rule as a run applies it: no approvers listed means the guard rails' approvers."""
    approvers = tuple(approval.approvers or guardrails.approvers)
    return ApprovalRule(approvers, approval.min_approvals, approval.ttl, approval.on_timeout)


def demotion_rule(guardrails: Guardrails, reason: str) -> ApprovalRule:
    """What a demoted policy's changes ask: one of the guard rails' approvers."""
    ttl = guardrails.demotion.ttl if guardrails.demotion else timedelta(minutes=15)
    why = f"the policy is demoted to asking first ({reason})"
    return ApprovalRule(tuple(guardrails.approvers), 1, ttl, OnTimeout.REJECT, why)


def demoted(plan: Plan, rule: ApprovalRule) -> Plan:
    """The plan of a demoted policy: every change asks first (one with its own rule keeps it)."""
    steps = tuple(
        replace(step, approval=rule) if step.mutating and step.approval is None else step
        for step in plan.steps
    )
    return replace(plan, steps=steps)


def bound_to(plan: Plan, position: int, step: PlannedStep) -> str:
    """The digest an approval of this change is bound to (hex SHA-256)."""
    what = {
        "policy": plan.policy,
        "position": position,
        "step": step.id,
        "action": step.action,
        "target": plan.target_key,
        "params": step.params.model_dump(mode="json", exclude_none=True, by_alias=True),
    }
    canonical = json.dumps(what, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def policy_digest(policy: Policy) -> str:
    """The policy's own revision (its content): a new one lifts a demotion."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def wilson_lower_bound(successes: int, trials: int, z: float = Z_95) -> float:
    """The lower end of the Wilson score interval for a share of `successes` in `trials`."""
    if trials <= 0:
        return 0.0
    share = successes / trials
    z2 = z * z
    centre = share + z2 / (2 * trials)
    spread = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + z2 / trials))


@dataclass(frozen=True)
class DemotionVerdict:
    effective: int
    known: int  # runs whose outcome is known: effective, recurred or failed
    bound: float

    def reason(self, below: float) -> str:
        return (
            f"{self.effective} of its last {self.known} runs fixed the alert for good: the"
            f" Wilson lower bound of that share, {self.bound:.2f}, is below {below:g}"
        )


def demotion_due(stats: PolicyStats, min_runs: int, below: float) -> DemotionVerdict | None:
    """The verdict when the policy is to be demoted, else None."""
    known = stats.effective + stats.recurred + stats.failed
    if known < min_runs:
        return None
    bound = wilson_lower_bound(stats.effective, known)
    return DemotionVerdict(stats.effective, known, bound) if bound < below else None
