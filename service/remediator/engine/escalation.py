"""When a person must hear about an alert, and when the incident they heard about is over.

Pure rules over a remediation's outcome and the policy's `escalate` list: the runner asks them
at each turn of a run, and queues what they say in the outbox.
"""

from __future__ import annotations

from typing import Literal

from remediator.engine.outcome import RunOutcome
from remediator.policy.schema import EscalateWhen

Notify = Literal["trigger", "resolve"] | None

# Outcomes in which nothing was fixed and a person must act. (A run `stopped` because its
# alert resolved pages nobody: there is nothing left to do.)
BLOCKED = frozenset(
    {
        RunOutcome.BLOCKED,
        RunOutcome.REFUSED,
        RunOutcome.DRY_RUN,
        RunOutcome.REJECTED,
        RunOutcome.EXPIRED,
    }
)
FAILED = frozenset({RunOutcome.FAILED, RunOutcome.INTERRUPTED})


def on_start(escalate: tuple[EscalateWhen, ...], page_while_remediating: bool) -> Notify:
    """A run begins: P1 pages at once, in parallel with the fix; so does `escalate: always`."""
    if page_while_remediating or EscalateWhen.ALWAYS in escalate:
        return "trigger"
    return None


def on_outcome(
    outcome: RunOutcome, escalate: tuple[EscalateWhen, ...], already_paged: bool
) -> Notify:
    """A remediation reached `outcome`: page (or update the page) or close it."""
    always = EscalateWhen.ALWAYS in escalate
    if outcome is RunOutcome.NO_MATCH:
        return "trigger"  # no policy: the severity matrix alone decides who hears
    if outcome is RunOutcome.ERROR:
        return "trigger"  # a bug stopped its handling: a person must look, whatever `escalate`
    if outcome is RunOutcome.AWAITING_APPROVAL:
        return "trigger"  # its approvers are asked, whatever `escalate`
    if outcome in FAILED and (always or EscalateWhen.ON_FAILURE in escalate):
        return "trigger"
    if outcome in BLOCKED and (always or EscalateWhen.WHEN_BLOCKED in escalate):
        return "trigger"
    if already_paged and outcome not in (RunOutcome.RUNNING, RunOutcome.WAITING):
        # The open page follows the run: updated while it is verified, closed when it worked.
        return "resolve" if outcome is RunOutcome.SUCCEEDED else "trigger"
    return None
