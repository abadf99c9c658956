"""What a remediation keeps of its plan: enough to escalate, verify, count and undo it later
without deciding again. Stored as JSON with the remediation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from remediator.engine.plan import Escalation, Plan
from remediator.policy.durations import format_duration
from remediator.policy.schema import Channel, EscalateWhen, Level

DEFAULT_ESCALATE = (EscalateWhen.ON_FAILURE, EscalateWhen.WHEN_BLOCKED)


@dataclass(frozen=True)
class BreakerSummary:
    key: str
    failures: int
    window: float  # seconds
    cooldown: float


@dataclass(frozen=True)
class PlanSummary:
    """A plan as recorded; an escalation alone (no match, a refusal) has no target or steps."""

    level: Level | None = None
    channels: tuple[Channel, ...] = ()
    target: str | None = None
    steps: tuple[str, ...] = ()
    on_resolved: tuple[str, ...] = ()
    verify_within: str | None = None
    verify_check: str | None = None
    rate_limit_key: str | None = None
    breaker: BreakerSummary | None = None
    page_now: bool = False
    escalate: tuple[EscalateWhen, ...] = DEFAULT_ESCALATE
    # The incident the escalation belongs to when it is not the policy's and target's own:
    # every alert one blast radius held back in one window (a probable shared cause).
    incident: str | None = None

    @classmethod
    def of(cls, plan: Plan) -> PlanSummary:
        breaker = plan.circuit_breaker
        return cls(
            level=plan.escalation.level,
            channels=tuple(plan.escalation.channels),
            target=str(plan.target),
            steps=tuple(step.action for step in plan.steps),
            on_resolved=tuple(step.action for step in plan.on_resolved),
            verify_within=format_duration(plan.verify_within),
            verify_check=plan.verify_check.action if plan.verify_check else None,
            rate_limit_key=plan.rate_limit_key,
            breaker=BreakerSummary(
                plan.breaker_key,
                breaker.failures,
                breaker.window.total_seconds(),
                breaker.cooldown.total_seconds(),
            ),
            page_now=plan.escalation.page_while_remediating,
            escalate=tuple(plan.escalate_when),
        )

    @classmethod
    def escalation_only(cls, escalation: Escalation) -> PlanSummary:
        return cls(level=escalation.level, channels=tuple(escalation.channels))

    def as_json(self) -> dict[str, Any]:
        if self.target is None:
            return {"level": self.level, "channels": list(self.channels)}
        breaker = self.breaker
        return {
            "target": self.target,
            "steps": list(self.steps),
            "on_resolved": list(self.on_resolved),
            "verify_within": self.verify_within,
            "verify_check": self.verify_check,
            "rate_limit_key": self.rate_limit_key,
            "breaker": None if breaker is None else vars(breaker),
            "level": self.level,
            "channels": list(self.channels),
            "page_now": self.page_now,
            "escalate": [when.value for when in self.escalate],
            **({"incident": self.incident} if self.incident else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanSummary:
        """Read back what `as_json` wrote (a missing field takes its default)."""
        breaker = data.get("breaker")
        return cls(
            level=cast("Level | None", data.get("level") or None),
            channels=tuple(cast("list[Channel]", data.get("channels", ()))),
            target=data.get("target"),
            steps=tuple(data.get("steps", ())),
            on_resolved=tuple(data.get("on_resolved", ())),
            verify_within=data.get("verify_within"),
            verify_check=data.get("verify_check"),
            rate_limit_key=data.get("rate_limit_key"),
            breaker=None if not breaker else BreakerSummary(**breaker),
            page_now=bool(data.get("page_now", False)),
            escalate=tuple(EscalateWhen(e) for e in data.get("escalate", DEFAULT_ESCALATE)),
            incident=data.get("incident"),
        )
