"""An incident's state as the Now page shows it, from the latest remediation of its alert."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from remediator.engine.outcome import RunOutcome
from remediator.store import Remediation


class State(StrEnum):
    DECIDING = "deciding"  # no remediation recorded yet: its event is queued
    WAITING = "waiting"  # admitted, waiting for a slot or its target
    REMEDIATING = "remediating"
    VERIFYING = "verifying"
    AWAITING_APPROVAL = "awaiting approval"
    BLOCKED = "blocked"
    ESCALATED = "escalated"  # handed to a person: failed, refused, no policy, rejected...
    REMEDIATED = "remediated"  # verified fixed, the alert not resolved yet
    DRY_RUN = "dry-run"  # its changes only described
    SKIPPED = "skipped"


_BY_OUTCOME = {
    RunOutcome.WAITING: State.WAITING,
    RunOutcome.RUNNING: State.REMEDIATING,
    RunOutcome.VERIFYING: State.VERIFYING,
    RunOutcome.AWAITING_APPROVAL: State.AWAITING_APPROVAL,
    RunOutcome.BLOCKED: State.BLOCKED,
    RunOutcome.SUCCEEDED: State.REMEDIATED,
    RunOutcome.DRY_RUN: State.DRY_RUN,
    RunOutcome.SKIPPED: State.SKIPPED,
}


@dataclass(frozen=True)
class IncidentState:
    state: State
    by: str | None = None  # the guard that blocked it

    @property
    def label(self) -> str:
        return f"{self.state} by {self.by}" if self.by else str(self.state)

    @property
    def css(self) -> str:
        """The badge's class: state-awaiting-approval, state-blocked, ..."""
        return "state-" + self.state.value.replace(" ", "-")


def incident_state(latest: Remediation | None) -> IncidentState:
    if latest is None:
        return IncidentState(State.DECIDING)
    state = _BY_OUTCOME.get(latest.outcome, State.ESCALATED)
    return IncidentState(state, latest.guard if state is State.BLOCKED else None)


def outcome_css(outcome: str) -> str:
    """A run outcome's badge class, as the incident state it leaves."""
    try:
        state = _BY_OUTCOME.get(RunOutcome(outcome), State.ESCALATED)
    except ValueError:
        state = State.ESCALATED
    return IncidentState(state).css
