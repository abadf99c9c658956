"""What an action is given and what it gives back.

An action reads before it writes, so that a step re-run after a crash finds its work done and
reports that instead of doing it twice; and in dry-run it reads and says what it would do.
Errors worth retrying (a reset connection, 429, 5xx, 409 conflict) are raised as Transient;
anything else is a failed result with a message a human can act on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import Params


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"


@dataclass(frozen=True)
class StepResult:
    outcome: Outcome
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A step that did (or would do, or found done) what it was asked."""
        return self.outcome is not Outcome.FAILED


@dataclass(frozen=True)
class StepContext:
    target: RenderedTarget
    dry_run: bool
    run_started_at: datetime  # a restart newer than this was ours: not issued again


class Transient(Exception):
    """Worth retrying: the same call may succeed in a moment."""


Action = Callable[[Any, StepContext], Awaitable[StepResult]]
"""An action: its validated parameters (the catalogue's model) and the context, to a result."""


def ok(message: str, **data: Any) -> StepResult:
    return StepResult(Outcome.OK, message, data)


def failed(message: str, **data: Any) -> StepResult:
    return StepResult(Outcome.FAILED, message, data)


def skipped(message: str, **data: Any) -> StepResult:
    return StepResult(Outcome.SKIPPED, message, data)


def dry_run(message: str, **data: Any) -> StepResult:
    return StepResult(Outcome.DRY_RUN, message, data)


# In a dry-run change's data: why live mode would have failed to make it (a secret not set).
WOULD_FAIL = "would_fail"


__all__ = [
    "Action",
    "Outcome",
    "Params",
    "StepContext",
    "StepResult",
    "Transient",
    "dry_run",
    "failed",
    "ok",
    "skipped",
]
