"""A policy that keeps failing asks first.

Once a policy's run is admitted, before its first step, the policy's effectiveness ledger over
the guard rails' `demotion.window` (since its last promotion) is counted, this run included
(its alert firing again is what shows the last fix did not last): when at least `min_runs`
runs have a known outcome and the Wilson lower bound of the effective share is below `below`,
the policy is demoted. Every change of a demoted policy then needs one of the guard rails'
approvers, its requests saying why. The demotion is recorded and audited; `remediator
policies promote NAME` ends it, and so does a new revision of the policy (its content
changed), each counting runs afresh from then. A run the guards hold back reads no ledger: it
changes nothing, and a storm of those would read it once each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import structlog

from remediator.engine.approval import demoted, demotion_due, demotion_rule, policy_digest
from remediator.engine.ledger import ALL_ACTIONS, DEFAULT_WINDOW, ledger
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Plan
from remediator.policy.policyset import PoliciesInForce
from remediator.store import Approvals, ControlState, Demotion, RunLedger

log = structlog.get_logger(__name__)

NEW_REVISION = "a new revision of the policy"


class DemotionStore(RunLedger, Approvals, ControlState, Protocol):
    """The ledger counted, the demotions kept, and their audit."""


class Demotions:
    def __init__(
        self,
        store: DemotionStore,
        policies: PoliciesInForce,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._policies = policies
        self._clock = clock

    async def applied(self, plan: Plan) -> Plan:
        """The plan of an admitted run (on record: its alert firing now is the recurrence of
        the last fix, if recent) as its policy's standing allows: every change asking first
        when demoted."""
        policies = self._policies.current
        rule = policies.guardrails.demotion
        policy = policies.by_name.get(plan.policy)
        if rule is None or policy is None or not plan.mutating:
            return plan
        now = datetime.fromtimestamp(self._clock(), UTC)
        revision = policy_digest(policy)
        demotion = await self._store.demotion(plan.policy)
        if demotion is not None and demotion.in_force:
            if demotion.revision == revision:
                return demoted(plan, demotion_rule(policies.guardrails, demotion.reason))
            await self.promote(plan.policy, NEW_REVISION)
            demotion = await self._store.demotion(plan.policy)
        since = now - rule.window
        if demotion is not None and demotion.promoted_at is not None:
            since = max(since, demotion.promoted_at)
        reason = await self._due(plan, since, now, rule.min_runs, rule.below)
        if reason is None:
            return plan
        if await self._store.demote(Demotion(plan.policy, revision, reason, now)):
            detail: dict[str, object] = {"reason": reason, "revision": revision}
            await self._store.audit("demotion", plan.policy, detail, now)
            log.warning("policy demoted to asking first", policy=plan.policy, reason=reason)
        return demoted(plan, demotion_rule(policies.guardrails, reason))

    async def _due(
        self,
        plan: Plan,
        since: datetime,
        now: datetime,
        min_runs: int,
        below: float,
    ) -> str | None:
        entries = [
            entry
            for entry in await self._store.ledger_since(since, plan.policy)
            if entry.outcome is not RunOutcome.INTERRUPTED
        ]  # (a run its worker's death interrupted is not the policy's failure: taken over)
        window = plan.recurs_within or DEFAULT_WINDOW
        own = next(
            (s for s in ledger(entries, {plan.policy: window}, now) if s.action == ALL_ACTIONS),
            None,
        )
        verdict = demotion_due(own, min_runs, below) if own is not None else None
        return verdict.reason(below) if verdict is not None else None

    async def promote(self, policy: str, by: str) -> bool:
        """End the policy's demotion; whether it was demoted."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        if not await self._store.promote(policy, by, now):
            return False
        await self._store.audit("promotion", policy, {"by": by}, now)
        log.warning("policy promoted: its changes no longer ask first", policy=policy, by=by)
        return True
