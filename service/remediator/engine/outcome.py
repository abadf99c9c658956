"""How a remediation stands or ended: one value per state of its record."""

from __future__ import annotations

from enum import StrEnum


class RunOutcome(StrEnum):
    # Still going.
    WAITING = "waiting"  # admitted by every guard but the concurrency cap or the target's lease
    RUNNING = "running"  # its steps are being run
    VERIFYING = "verifying"  # its steps are done; waiting for the alert to resolve or a check
    # Stopped before a change that needs approval: no slot held, its target free, until the
    # approval is given (then it goes on), refused, expired or cancelled.
    AWAITING_APPROVAL = "awaiting_approval"
    # Ended.
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # the alert resolved before the next step
    INTERRUPTED = "interrupted"  # its worker died or lost its lease; taken over
    DRY_RUN = "dry_run"  # its changes were only described
    REJECTED = "rejected"  # its approval was refused or cancelled: nothing more was changed
    EXPIRED = "expired"  # no approval came within its ttl: nothing more was changed
    # Its handling raised what nothing expected (a bug): escalated by the matrix, always.
    ERROR = "error"
    # Decided without a run.
    BLOCKED = "blocked"
    REFUSED = "refused"
    NO_MATCH = "no_match"
    SKIPPED = "skipped"

    @property
    def active(self) -> bool:
        """A run of the alert is under way: no other starts for it."""
        return self in _ACTIVE

    @property
    def finished(self) -> bool:
        return self not in _ACTIVE


_ACTIVE = frozenset(
    {
        RunOutcome.WAITING,
        RunOutcome.RUNNING,
        RunOutcome.VERIFYING,
        RunOutcome.AWAITING_APPROVAL,
    }
)
