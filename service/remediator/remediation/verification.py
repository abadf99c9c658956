"""Verification: a run's fix counts only when its alert resolves within the policy's window, or
its verification check passes first; a window that passes is the fix's failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from remediator.actions.base import StepContext
from remediator.alerts import AlertStatus
from remediator.engine.decide import decide
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Plan
from remediator.guards.guards import Guards
from remediator.policy.durations import format_duration
from remediator.policy.policyset import PoliciesInForce
from remediator.remediation.record import NOTHING_KNOWN, Known, Recorder, breaker_of
from remediator.remediation.steps import StepAt, Steps
from remediator.store import AlertLog, Remediation, RunLedger


class VerificationStore(AlertLog, RunLedger, Protocol):
    """What verification reads: the runs waiting on their alert, and the alert."""


class Verification:
    def __init__(
        self,
        store: VerificationStore,
        guards: Guards,
        policies: PoliciesInForce,
        record: Recorder,
        steps: Steps,
        *,
        clock: Callable[[], float] = time.time,
        check_interval: float = 15.0,
    ) -> None:
        self._store = store
        self._guards = guards
        self._policies = policies
        self._record = record
        self._steps = steps
        self._clock = clock
        self.check_interval = check_interval
        self._last_checked: dict[str, float] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def begin(
        self, remediation: Remediation, within: timedelta, known: Known = NOTHING_KNOWN
    ) -> Remediation:
        """The steps are done: wait up to `within` for the alert to resolve."""
        why = f"waiting up to {format_duration(within)} for the alert to resolve"
        return await self._record.verifying(remediation, why, self._now() + within, known)

    async def check(self) -> list[Remediation]:
        """Runs whose policy has a verification check: the check passing verifies the fix
        before the alert resolves. Each run is checked at most every `check_interval`."""
        verified = []
        for remediation in await self._store.verifying():
            if not remediation.plan.verify_check or not self._due(remediation):
                continue
            ended = await self._check(remediation)
            if ended is not None:
                verified.append(ended)
        return verified

    def _due(self, remediation: Remediation) -> bool:
        now = self._clock()
        if now - self._last_checked.get(remediation.id, 0.0) < self.check_interval:
            return False
        self._last_checked[remediation.id] = now
        return True

    async def _check(self, remediation: Remediation) -> Remediation | None:
        record = await self._store.alert(remediation.fingerprint, remediation.starts_at)
        if record is None:
            return None
        alert = record.as_alert(AlertStatus.FIRING)
        plan = decide(alert, self._policies.current, self._now())
        if not isinstance(plan, Plan) or plan.verify_check is None:
            return None
        context = StepContext(plan.target, False, remediation.started_at)
        started = self._now()
        result, attempts = await self._steps.execute(plan.verify_check, context, {}, alert)
        if not result.ok:
            return None
        at = StepAt(remediation, "verify", 0)
        await self._steps.record(at, plan.verify_check, result, attempts, started)
        self._last_checked.pop(remediation.id, None)
        return await self._record.succeed(remediation, f"verified: {result.message}")

    async def expire(self) -> list[Remediation]:
        """Runs whose alert did not resolve in time failed: count them against the breaker."""
        ended = []
        for remediation in await self._store.overdue_verifications(self._now()):
            await self._guards.record_outcome(
                remediation.run_id or "", breaker_of(remediation), succeeded=False
            )
            ended.append(
                await self._record.end(
                    remediation, RunOutcome.FAILED, "the alert did not resolve in time"
                )
            )
        return ended
