"""What the store offers, one Protocol a role: each consumer names the role it uses.

- `AlertLog`: the intake's durable write, and the alerts as they were heard.
- `EventQueue`: the alert state changes queued for the engine, claimed by one worker at a time.
- `RunLedger`: the runs the guards admitted, and each remediation with its steps.
- `ControlState`: the kill switch and the audit log.
- `Outbox`: the messages for the channels, from queued to sent.
- `BudgetLedger`: the channels' budgets, and the messages folded past them.
- `Approvals`: approval requests and their answers, demoted policies, requests seen once.
- `Retention`: deleting what the retention period no longer keeps.
- `Watch`: the backlog /metrics shows.

`Store` is all of them, what `open_store` gives back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from remediator.alerts import Notification
from remediator.engine.ledger import LedgerEntry
from remediator.store.records import (
    AlertEvent,
    AlertRecord,
    AnswerTaken,
    ApprovalAnswer,
    ApprovalRequest,
    ApprovalState,
    AuditEntry,
    Backlog,
    Demotion,
    FiringAlert,
    Fold,
    FoldedMessage,
    IntakeResult,
    OutboxEntry,
    Pause,
    Remediation,
    RunMessage,
    RunQuery,
    RunRecord,
    StepRecord,
)


class StoreUnavailable(Exception):
    """The store cannot read or write now; intake answers 503 so Alertmanager retries."""


class AlertLog(Protocol):
    async def record_notification(
        self, notification: Notification, body: bytes, received_at: datetime
    ) -> IntakeResult:
        """Durably write the raw body, every alert and the new events, in one transaction.

        A resolution under an older startsAt also resolves the later episodes of the same
        fingerprint still firing that began before its endsAt (`statements.OVERTAKEN`)."""
        ...

    async def recent_alerts(self, limit: int) -> list[AlertRecord]: ...

    async def firing_alerts(self, limit: int) -> list[FiringAlert]:
        """The episodes still firing, the latest begun first, each with its latest
        remediation; in one statement."""
        ...

    async def alert(self, fingerprint: str, starts_at: datetime) -> AlertRecord | None: ...

    async def alerts_since(self, since: datetime) -> list[AlertRecord]:
        """The alert episodes begun or heard of at or after `since`, the earliest begun
        first (a read: what `policies replay` runs again)."""
        ...


class EventQueue(Protocol):
    async def pending_events(self, limit: int) -> list[AlertEvent]: ...

    async def all_events(self, limit: int) -> list[AlertEvent]:
        """Events pending or done, oldest first: each alert state queued exactly once."""
        ...

    async def claim_events(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[AlertEvent]:
        """Pending events nobody holds (or whose holder's lease passed), oldest first, leased to
        this worker; several workers never get the same event, and an event is not claimed
        while an earlier one of the same alert (fingerprint) is not done: a resolution is
        handled after its firing, whichever worker has either."""
        ...

    async def renew_events(
        self, event_ids: Collection[int], worker: str, lease_until: datetime
    ) -> set[int]:
        """Extend this worker's claims; the ids still held (a claim another worker took over
        after it lapsed, or an event done, is not)."""
        ...

    async def complete_events(self, event_ids: Collection[int], worker: str, at: datetime) -> None:
        """Mark the events done, those this worker still holds: the next event of the same
        alert may be claimed from then."""
        ...

    async def watch_events(self, wake: Callable[[], None]) -> None:
        """Have `wake` called when another process queues events; a call while already
        watching (or where one process is all, SQLite) does nothing. Never raises: without a
        watch the dispatcher's poll still finds the work."""
        ...


class RunLedger(Protocol):
    async def record_admission(self, run: RunRecord) -> None: ...

    async def record_finish(self, run_id: str, succeeded: bool | None, at: datetime) -> None: ...

    async def runs_since(self, since: datetime) -> list[RunRecord]:
        """Runs admitted at or after `since`, oldest first."""
        ...

    async def save_remediation(
        self, remediation: Remediation, messages: Sequence[OutboxEntry] = ()
    ) -> None:
        """Insert, or replace the row with the same id; and queue the messages about it, in
        the same transaction."""
        ...

    async def record_step(self, step: StepRecord) -> None: ...

    async def remediations_for(self, fingerprint: str, starts_at: datetime) -> list[Remediation]:
        """The alert episode's remediations, oldest first."""
        ...

    async def overdue_verifications(self, now: datetime) -> list[Remediation]: ...

    async def verifying(self) -> list[Remediation]:
        """Runs waiting for their verification, the soonest due first."""
        ...

    async def list_remediations(
        self, limit: int, alertname: str | None = None
    ) -> list[Remediation]:
        """Newest first."""
        ...

    async def find_remediations(self, query: RunQuery) -> list[Remediation]:
        """Newest first (started_at, then id), filtered and paged as the query says."""
        ...

    async def remediation(self, remediation_id: str) -> Remediation | None: ...

    async def remediations_by_prefix(self, prefix: str, limit: int) -> list[Remediation]:
        """At most `limit` runs whose id starts with `prefix` (`history --run 3f2a`)."""
        ...

    async def last_fix(self, policy: str, target: str, since: datetime) -> Remediation | None:
        """The policy's latest run on the target whose fix was verified (outcome succeeded)
        at or after `since`."""
        ...

    async def ledger_since(self, since: datetime, policy: str | None = None) -> list[LedgerEntry]:
        """Each firing remediation of a policy (or of `policy`) started at or after `since`,
        oldest first, with its alert episode's end and whether it paged (what
        `engine.ledger` counts)."""
        ...

    async def steps(self, remediation_id: str) -> list[StepRecord]: ...

    async def shared_incident_firing(
        self, incident: str, fingerprint: str, starts_at: datetime
    ) -> bool:
        """Whether an alert episode with a remediation in the shared incident (`plan.incident`)
        is still firing, other than this one (whose resolution asks): read after that
        resolution was written, at intake, so that of two last ones resolving at once the
        later look-up sees the other resolved."""
        ...


class ControlState(Protocol):
    async def set_pause(self, pause: Pause | None) -> None:
        """Pause (the kill switch) with its reason, or resume with None."""
        ...

    async def pause(self) -> Pause | None: ...

    async def decide_again_after_pause(self, at: datetime) -> int:
        """Queue again, once, the firing event of each alert still firing whose latest
        remediation the kill switch blocked (`statements.DECIDE_AGAIN`); how many."""
        ...

    async def audit(
        self, kind: str, subject: str, detail: dict[str, object], at: datetime
    ) -> None: ...

    async def audit_log(self, limit: int) -> list[AuditEntry]:
        """The newest entries first."""
        ...


class Outbox(Protocol):
    async def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        """Queue them in one transaction; an entry whose id is already queued is left as it is."""
        ...

    async def claim_outbox(
        self, worker: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        """Due messages nobody holds, oldest first, leased to this worker."""
        ...

    async def outbox_done(
        self,
        entry_id: str,
        *,
        sent_at: datetime | None = None,
        failed_at: datetime | None = None,
        retry_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Sent, given up, or to be tried again at retry_at."""
        ...

    async def outbox_put_back(
        self, entry_id: str, *, retry_at: datetime | None = None, error: str | None = None
    ) -> None:
        """Not tried this time (its channel paused, or an earlier message of its lane first):
        unclaimed, with the attempt its claim counted given back, so that waiting does not use
        up the attempts a message is sent with."""
        ...

    async def run_messages(self, remediation_id: str) -> list[RunMessage]:
        """The messages about one run, oldest first, however they stand."""
        ...

    async def outbox_for(self, dedup_key: str) -> list[OutboxEntry]:
        """Every message of one incident, oldest first."""
        ...

    async def latest_outbox(self, dedup_key: str) -> list[OutboxEntry]:
        """The newest message of one incident per channel: its state, read in one indexed
        look-up however long the incident's history."""
        ...


class BudgetLedger(Protocol):
    async def take_slot(
        self, channel: str, slots: range, now: datetime, per: timedelta
    ) -> datetime | None:
        """Take one of the channel's `slots` last used `per` ago or earlier, for a send now:
        None when taken; else when the first of them frees. Atomic across replicas: no two
        take the same slot, so no window of `per` holds more sends than slots."""
        ...

    async def first_past_budget(
        self, channel: str, alertname: str, now: datetime, per: timedelta
    ) -> datetime | None:
        """None when this is the alertname's first page past the channel's budget in `per`
        (recorded as such: only one asker is told so); else when the first one was."""
        ...

    async def fold(self, entry_ids: Collection[str], at: datetime, note: str) -> set[str]:
        """Mark the messages still to send folded: done, unsent; the ids folded (not those
        no longer to send)."""
        ...

    async def adopt_folded(self, channel: str, summary_id: str, note: str) -> list[FoldedMessage]:
        """The channel's folded messages no summary has taken in yet, and those this one took
        before (its send tried again), now the summary's: each is taken in by one summary."""
        ...

    async def folds(self, limit: int) -> list[Fold]:
        """The summaries with messages folded into them, newest first, after the messages
        folded and not yet summarised, per channel."""
        ...

    async def folded_into(
        self, summary_id: str, limit: int = 10_000, offset: int = 0
    ) -> list[FoldedMessage]:
        """The messages one summary folds, oldest first, from `offset` on."""
        ...


class Approvals(Protocol):
    """Approval requests, their answers, and policies demoted to asking first."""

    async def request_approval(
        self,
        request: ApprovalRequest,
        asking: Remediation | None = None,
        messages: Sequence[OutboxEntry] = (),
    ) -> None:
        """Store a new pending request (its id is new); and the run that asks, as it waits
        (`save_remediation`), with the messages asking, in the same transaction: a crash
        leaves a run waiting with its request, or neither."""
        ...

    async def approval(self, approval_id: str) -> ApprovalRequest | None:
        """The request with its answers, oldest first."""
        ...

    async def approvals_by_prefix(self, prefix: str, limit: int) -> list[ApprovalRequest]: ...

    async def approvals(self, state: ApprovalState | None, limit: int) -> list[ApprovalRequest]:
        """Requests in that state (any, for None), the newest first."""
        ...

    async def approvals_for_event(self, event_id: int) -> list[ApprovalRequest]:
        """Every request the event's runs made, oldest first."""
        ...

    async def approvals_of_run(self, remediation_id: str) -> list[ApprovalRequest]: ...

    async def answer_approval(
        self, approval_id: str, answer: ApprovalAnswer, min_approvals: int
    ) -> AnswerTaken:
        """Take one answer, in one transaction, while the request is pending and not past its
        expiry: an approval from someone who has not approved yet is counted, and the request
        becomes approved at `min_approvals` distinct approvers (its firing event is then queued
        again, for the run to go on); a rejection or cancellation closes it. An answer that
        does not count is recorded with verdict `refused` and the reason."""
        ...

    async def record_answer(self, answer: ApprovalAnswer) -> None:
        """An answer refused before reaching the request (not an approver): the audit."""
        ...

    async def close_approval(
        self, approval_id: str, state: ApprovalState, at: datetime, answer: ApprovalAnswer | None
    ) -> bool:
        """Close a pending request (void, expired, or approved on timeout, which queues its
        event again); whether it was pending."""
        ...

    async def due_approvals(self, now: datetime, limit: int) -> list[ApprovalRequest]:
        """Pending requests whose expiry has passed, the oldest first."""
        ...

    async def demotion(self, policy: str) -> Demotion | None: ...

    async def demotions(self) -> list[Demotion]: ...

    async def demote(self, demotion: Demotion) -> bool:
        """Record the demotion unless one is in force; whether it was recorded."""
        ...

    async def promote(self, policy: str, by: str, at: datetime) -> bool:
        """End the demotion in force; whether there was one."""
        ...

    async def first_seen(self, key: str, at: datetime, keep: timedelta) -> bool:
        """Remember `key` (a Slack request's signature): True the first time, False when it
        was seen within `keep` before `at` (a replay, refused on every replica). Keys older
        than `keep` may be forgotten on the way."""
        ...


class Watch(Protocol):
    async def backlog(self, now: datetime) -> Backlog:
        """What the service has still to do: events queued, messages due and unsent per
        channel, runs in flight, the kill switch (what /metrics shows, read at each scrape)."""
        ...


class Retention(Protocol):
    async def prune(
        self, before: datetime, runs_before: datetime, seen_before: datetime
    ) -> dict[str, int]:
        """Delete what the retention period no longer keeps, in one transaction: alert
        episodes last heard of before `before` (none with a pending event) with their events,
        remediations and steps, approval requests and their answers; raw bodies no event
        refers to; incidents whose last message is older; audit entries; answers to no request
        kept; guard runs admitted before `runs_before`; and the requests seen (`first_seen`)
        before `seen_before`. Counts per table.
        """
        ...


class Store(
    AlertLog,
    Approvals,
    EventQueue,
    RunLedger,
    ControlState,
    Outbox,
    BudgetLedger,
    Retention,
    Watch,
    Protocol,
):
    """Every role, and the store's own life: what `open_store` gives back."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers now."""
        ...

    async def close(self) -> None: ...
