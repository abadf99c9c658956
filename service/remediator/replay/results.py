"""What a replay found, as plain frozen values: one result per alert episode."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from remediator.engine.plan import PlannedStep


class Mode(StrEnum):
    """Which record the replay tells: the service's in live mode, or in dry-run mode (each run
    admitted by dry-run's own guards ends `dry_run` at once, as the service records it)."""

    LIVE = "live"
    DRY_RUN = "dry-run"


# How an admitted run ends in a replay: the model, said with every report.
MODEL = (
    "times are the alerts' own (startsAt, endsAt); a run's steps take no time and free its"
    " target and slot when they end, as the service does; a live run succeeds if its alert"
    " resolves within the policy's verify window (resolved_within) and fails at the window's"
    " end otherwise, counted by its breaker then; a run whose window outlasts the record is"
    " still verifying; a dry-run run ends dry_run at once, counted a success; messages follow"
    " the escalation rules and the severity matrix (a trigger to the level's channels, a"
    " resolve to those paged), without resolve holds, repeat suppression or the ladder's"
    " climbing (`next`)"
)


@dataclass(frozen=True)
class Message:
    at: datetime
    channel: str
    notify: str  # trigger or resolve
    incident: str
    opens: bool  # a trigger on a channel the incident was not open on: a new page

    @property
    def page(self) -> bool:
        """Someone is paged: a PagerDuty incident opened."""
        return self.channel == "pagerduty" and self.notify == "trigger" and self.opens


@dataclass(frozen=True)
class AlertResult:
    """One alert episode, from its firing to the end of its run."""

    fired_at: datetime
    fingerprint: str
    starts_at: datetime
    alertname: str
    outcome: str  # a RunOutcome value
    reason: str = ""
    guard: str | None = None
    policy: str | None = None
    target: str | None = None  # kind/namespace/name, as the guards lock and count it
    namespace: str | None = None
    steps: tuple[str, ...] = ()  # each step with its rendered parameters
    mutating: bool = False
    acting: tuple[datetime, datetime] | None = None  # a run that changes: admitted to ended
    resolved_at: datetime | None = None
    undo: tuple[str, ...] = ()  # the on_resolved steps its resolution would run
    messages: tuple[Message, ...] = ()

    @property
    def key(self) -> tuple[str, datetime]:
        return self.fingerprint, self.starts_at

    @property
    def verdict(self) -> str:
        """The outcome as compared between two policy sets."""
        guard = f" ({self.guard})" if self.guard else ""
        return f"{self.outcome}{guard}"

    @property
    def pages(self) -> int:
        return sum(message.page for message in self.messages)


@dataclass(frozen=True)
class Report:
    mode: Mode
    policies: str  # where the set came from: a directory, or REV:DIR
    alerts: tuple[AlertResult, ...]
    resolutions_unheard: int  # resolutions of episodes the record has no firing of

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.alerts:
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
        return dict(sorted(counts.items()))


def shown_step(step: PlannedStep) -> str:
    """An action with the parameters its policy gives, as rendered:
    `kubernetes.scale(by=2, max_replicas=10)`."""
    params = step.params.model_dump(mode="json", by_alias=True, exclude_unset=True)
    shown = ", ".join(f"{name}={_value(value)}" for name, value in sorted(params.items()))
    return f"{step.action}({shown})"


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
