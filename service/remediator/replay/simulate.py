"""A replay: alert state changes in time order through one policy set, on a simulated clock.

The decision is `decide`'s; every guard is the real `Guards` over in-process state
(`MemoryGuards` on the simulated clock) and a scratch in-memory SQLite store opened for this
replay alone; the messages are the escalation rules' (`engine.escalation`) over the severity
matrix. How a run ends is modelled (`results.MODEL`): nothing runs, nothing is sent.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from prometheus_client import CollectorRegistry

from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide
from remediator.engine.escalation import Notify, on_outcome, on_start
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Escalation, NoMatch, Plan, Refused
from remediator.engine.summary import DEFAULT_ESCALATE
from remediator.guards.guards import Blocked, Guards, GuardStore, breaker_spec
from remediator.guards.memory import MemoryGuards
from remediator.metrics import GuardMetrics
from remediator.policy.durations import format_duration
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import EscalateWhen
from remediator.replay.changes import AlertChange
from remediator.replay.results import AlertResult, Message, Mode, Report, shown_step
from remediator.store import open_store

SCRATCH = "sqlite:///:memory:"  # the guards' run ledger for one replay, gone after it


class SimulatedClock:
    """The replay's time: the alert change being replayed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def at(self, moment: datetime) -> datetime:
        self.now = moment.timestamp()
        return moment


@dataclass
class _Episode:
    """An alert episode while it is replayed."""

    result: AlertResult
    plan: Plan | None = None
    run_id: str | None = None
    escalate: tuple[EscalateWhen, ...] = DEFAULT_ESCALATE
    channels: tuple[str, ...] = ()
    incident: str = ""
    messages: list[Message] = field(default_factory=list)


async def replay(
    changes: Sequence[AlertChange], policies: PolicySet, mode: Mode, source: str
) -> Report:
    """What the changes would have caused under `policies`, on the scratch store."""
    store = await open_store(SCRATCH)
    try:
        return await _Replay(store, policies, mode).run(changes, source)
    finally:
        await store.close()


class _Replay:
    def __init__(self, store: GuardStore, policies: PolicySet, mode: Mode) -> None:
        self.clock = SimulatedClock()
        self.policies = policies
        self.mode = mode
        self.backend = MemoryGuards(self.clock)
        self.guards = Guards(
            self.backend,
            store,
            GuardMetrics(CollectorRegistry()),
            live=mode is Mode.LIVE,
            guardrails=lambda: policies.guardrails,
            clock=self.clock,
        )
        self.episodes: dict[tuple[str, datetime], _Episode] = {}
        self.deadlines: list[tuple[datetime, str, datetime]] = []  # verify windows' ends
        self.open: dict[str, dict[str, None]] = {}  # incident -> channels open on, in order
        self.fixed: dict[tuple[str, str], tuple[datetime, str]] = {}  # last verified fix
        self.unheard = 0

    async def run(self, changes: Sequence[AlertChange], source: str) -> Report:
        await self.backend.seed(())
        await self.guards.shadow.seed(())
        for change in changes:
            await self._expire(before=change.at)
            if change.alert.status is AlertStatus.FIRING:
                await self._fire(change)
            else:
                await self._resolve(change)
        if changes:
            await self._expire(before=changes[-1].at, inclusive=True)
            self._still_verifying(changes[-1].at)
        alerts = sorted(
            (replace(e.result, messages=tuple(e.messages)) for e in self.episodes.values()),
            key=lambda result: (result.fired_at, result.fingerprint, result.starts_at),
        )
        return Report(self.mode, source, tuple(alerts), self.unheard)

    def _still_verifying(self, last: datetime) -> None:
        """Runs whose window outlasts the record still change their target at its end."""
        for episode in self.episodes.values():
            acting = episode.result.acting
            if episode.result.outcome == RunOutcome.VERIFYING and acting is not None:
                episode.result = replace(episode.result, acting=(acting[0], last))

    async def _fire(self, change: AlertChange) -> None:
        alert, now = change.alert, self.clock.at(change.at)
        if change.episode in self.episodes:
            return  # (a firing heard again: the store queues each state once)
        decision = decide(alert, self.policies, now)
        base = AlertResult(now, alert.fingerprint, alert.starts_at, alert.alertname, "")
        if isinstance(decision, NoMatch):
            episode = self._episode(alert, base, decision.escalation, RunOutcome.NO_MATCH)
            episode.result = replace(base, outcome=RunOutcome.NO_MATCH, reason="no policy matches")
            self._tell(episode, on_outcome(RunOutcome.NO_MATCH, episode.escalate, False), now)
            return
        if isinstance(decision, Refused):
            episode = self._episode(alert, base, decision.escalation, RunOutcome.REFUSED)
            episode.result = replace(
                base, outcome=RunOutcome.REFUSED, reason=decision.reason, policy=decision.policy
            )
            self._tell(episode, on_outcome(RunOutcome.REFUSED, episode.escalate, False), now)
            return
        await self._planned(change, decision, base)

    def _episode(
        self, alert: Alert, base: AlertResult, escalation: Escalation, outcome: RunOutcome
    ) -> _Episode:
        episode = _Episode(
            replace(base, outcome=outcome),
            channels=tuple(escalation.channels),
            incident=f"remediator/alert/{alert.alertname}/{alert.fingerprint}",
        )
        self.episodes[(alert.fingerprint, alert.starts_at)] = episode
        return episode

    async def _planned(self, change: AlertChange, plan: Plan, base: AlertResult) -> None:
        now = change.at
        result = replace(
            base,
            policy=plan.policy,
            target=plan.target_key,
            namespace=plan.target.namespace,
            steps=tuple(shown_step(step) for step in plan.steps),
            mutating=plan.mutating,
        )
        episode = _Episode(
            result,
            plan,
            escalate=plan.escalate_when,
            channels=tuple(plan.escalation.channels),
            incident=f"remediator/{plan.policy}/{plan.target_key}",
        )
        self.episodes[change.episode] = episode
        answer = await self._recurred(plan, now) or await self.guards.admit(plan)
        if isinstance(answer, Blocked):
            episode.incident = answer.incident or episode.incident
            self._end(episode, RunOutcome.BLOCKED, answer.reason, guard=answer.guard)
            return
        await self.guards.release(answer)  # its steps are done
        episode.run_id = answer.run_id
        self._tell(
            episode, on_start(plan.escalate_when, plan.escalation.page_while_remediating), now
        )
        acting = (now, now) if plan.mutating else None
        episode.result = replace(episode.result, acting=acting)
        if answer.shadow:
            await self.guards.record_outcome(answer.run_id, breaker_spec(plan), True)
            why = "dry-run: " + ("the policy sets dry_run" if plan.dry_run else "changes described")
            self._end(episode, RunOutcome.DRY_RUN, why)
            return
        within = plan.verify_within
        episode.result = replace(
            episode.result,
            outcome=RunOutcome.VERIFYING,
            reason=f"waiting up to {format_duration(within)}",
        )
        heapq.heappush(self.deadlines, (now + within, *change.episode))

    async def _recurred(self, plan: Plan, now: datetime) -> Blocked | None:
        """A verified fix of this target within the policy's recurs_within did not last."""
        fixed = self.fixed.get((plan.policy, plan.target_key))
        if plan.recurs_within is None or fixed is None or now - fixed[0] > plan.recurs_within:
            return None
        await self.guards.count_recurrence(plan, fixed[1])
        return Blocked("recurrence", f"the fix did not last: fired again on {plan.target_key}")

    async def _resolve(self, change: AlertChange) -> None:
        now = self.clock.at(change.at)
        episode = self.episodes.get(change.episode)
        if episode is None:
            self.unheard += 1
            return
        result = episode.result
        episode.result = replace(result, resolved_at=now)
        if result.outcome == RunOutcome.VERIFYING and episode.plan and episode.run_id:
            plan = episode.plan
            await self.guards.record_outcome(episode.run_id, breaker_spec(plan), True)
            self.fixed[(plan.policy, plan.target_key)] = (now, episode.run_id)
            self._end(episode, RunOutcome.SUCCEEDED, "the alert resolved in time", at=now)
        elif self.open.get(episode.incident):
            self._tell(episode, "resolve", now)
        ran = (RunOutcome.SUCCEEDED, RunOutcome.FAILED, RunOutcome.DRY_RUN)
        if episode.plan and episode.plan.on_resolved and episode.result.outcome in ran:
            undo = tuple(shown_step(step) for step in episode.plan.on_resolved)
            episode.result = replace(episode.result, undo=undo)

    async def _expire(self, before: datetime, inclusive: bool = False) -> None:
        """Runs whose verify window ended before `before` with their alert firing failed."""
        while self.deadlines and (
            self.deadlines[0][0] < before or (inclusive and self.deadlines[0][0] == before)
        ):
            deadline, fingerprint, starts_at = heapq.heappop(self.deadlines)
            episode = self.episodes[(fingerprint, starts_at)]
            if episode.result.outcome != RunOutcome.VERIFYING:
                continue
            assert episode.plan is not None
            assert episode.run_id is not None
            self.clock.at(deadline)
            await self.guards.record_outcome(episode.run_id, breaker_spec(episode.plan), False)
            self._end(episode, RunOutcome.FAILED, "the alert did not resolve in time", at=deadline)

    def _end(
        self,
        episode: _Episode,
        outcome: RunOutcome,
        reason: str,
        *,
        guard: str | None = None,
        at: datetime | None = None,
    ) -> None:
        result = episode.result
        acting = result.acting and (result.acting[0], at or result.acting[1])
        episode.result = replace(result, outcome=outcome, reason=reason, guard=guard, acting=acting)
        paged = bool(self.open.get(episode.incident))
        self._tell(episode, on_outcome(outcome, episode.escalate, paged), at or result.fired_at)

    def _tell(self, episode: _Episode, notify: Notify, at: datetime) -> None:
        if notify is None:
            return
        paged = self.open.setdefault(episode.incident, {})
        if notify == "resolve":
            for channel in paged:
                episode.messages.append(Message(at, channel, notify, episode.incident, False))
            paged.clear()
            return
        for channel in episode.channels:
            opens = channel not in paged
            paged[channel] = None
            episode.messages.append(Message(at, channel, notify, episode.incident, opens))
