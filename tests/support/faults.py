"""Parts with a bug in them, for the tests of what a bug must not do: drop an alert silently.

Each is a real part (a guard backend, an action) that raises or misbehaves where nothing in
the service expects it to, as a regression would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from remediator.actions.base import Outcome, StepContext, StepResult
from remediator.guards.base import Attempt, Verdict
from remediator.guards.memory import MemoryGuards
from remediator.policy.parameters import Params

BUG = "the guard script answered nothing"


class RaisingGuards(MemoryGuards):
    """Guard state whose admission has a bug: it raises RuntimeError. `before` runs first
    (say, to take the store down at that moment), once."""

    def __init__(self, clock: Callable[[], float], before: Callable[[], None] | None = None):
        super().__init__(clock)
        self._before = before
        self.calls = 0

    async def admit(self, attempt: Attempt) -> Verdict:
        self.calls += 1
        if self._before is not None:
            before, self._before = self._before, None
            before()
        raise RuntimeError(BUG)


async def answers_ok(params: Params, context: StepContext) -> StepResult:
    """An action that does nothing and says it went well."""
    return StepResult(Outcome.OK, "done")


async def answers_nothing(params: Params, context: StepContext) -> StepResult:
    """An action with a bug: it returns nothing instead of its result."""
    return cast(StepResult, None)
