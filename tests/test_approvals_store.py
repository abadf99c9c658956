"""The approvals store on both backends: requests and their answers, the rule an answer is taken
by, the event an approval queues again, demotions, the requests seen once, and retention."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import pytest

from remediator.alerts import Notification
from remediator.runtime.retention import prune_once
from remediator.store import (
    AlertEvent,
    ApprovalAnswer,
    ApprovalRequest,
    ApprovalState,
    Demotion,
    OutboxEntry,
    Remediation,
    Store,
    StoreUnavailable,
    Verdict,
    open_store,
)
from tests.support.approval_requests import request_for as shared_request_for
from tests.support.approval_requests import waiting_run
from tests.support.webhooks import webhook, webhook_alert

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


async def handled_event(store: Store, fingerprint: str, at: datetime = NOW) -> AlertEvent:
    """An alert's firing event, taken in by the store's own intake, claimed and done: what a run
    that stopped to ask for approval leaves behind."""
    alert = webhook_alert(
        {"alertname": "ApplicationDown", "instance": fingerprint},
        fingerprint=fingerprint,
        starts_at=at.isoformat(),
    )
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", at)
    [event] = await store.claim_events("worker-1", at, at + MINUTE, 10)
    assert event.fingerprint == fingerprint
    await store.complete_events([event.id], "worker-1", at)
    assert await store.pending_events(10) == []
    return event


def request_for(
    event: AlertEvent, approval_id: str, *, at: datetime = NOW, min_approvals: int = 2
) -> ApprovalRequest:
    return shared_request_for(
        event, approval_id, at=at, approvers=("alice", "bob", "carol"), min_approvals=min_approvals
    )


def answer(
    approval_id: str, who: str, verdict: Verdict = Verdict.APPROVE, at: datetime = NOW + MINUTE
) -> ApprovalAnswer:
    return ApprovalAnswer(approval_id, who, "slack", verdict, f"{who} says {verdict}", at)


async def queued_again(store: Store, at: datetime = NOW + MINUTE) -> list[AlertEvent]:
    """What a worker claims now: the events queued again."""
    return await store.claim_events("worker-2", at, at + MINUTE, 10)


async def test_a_request_reads_back_as_written_with_its_answers_oldest_first(
    store: Store,
) -> None:
    event = await handled_event(store, "fp-1")
    request = request_for(event, "a1b2c3d4-0001")
    await store.request_approval(request)
    await store.request_approval(request_for(event, "a1b2ffff-0002", at=NOW + MINUTE))

    assert await store.approval(request.id) == request
    first = answer(request.id, "alice", at=NOW + MINUTE)
    stranger = ApprovalAnswer(
        request.id, "mallory", "slack", Verdict.REFUSED, "not an approver", NOW + 2 * MINUTE
    )
    await store.answer_approval(request.id, first, 2)
    await store.record_answer(stranger)

    read = await store.approval(request.id)
    assert read == replace(request, answers=(first, stranger))
    assert read.approved_by == ("alice",)
    assert read.requested_at.utcoffset() == timedelta(0)  # aware, UTC
    assert [r.id for r in await store.approvals_by_prefix("a1b2c", 10)] == [request.id]
    assert [r.id for r in await store.approvals_by_prefix("a1b2", 10)] == [
        "a1b2c3d4-0001",
        "a1b2ffff-0002",
    ]
    assert await store.approvals_by_prefix("a1b2_", 10) == []  # _ is no wildcard
    newest_first = await store.approvals(None, 10)
    assert [r.id for r in newest_first] == ["a1b2ffff-0002", "a1b2c3d4-0001"]
    assert newest_first[1].answers == (first, stranger)
    assert [r.id for r in await store.approvals(ApprovalState.PENDING, 1)] == ["a1b2ffff-0002"]
    assert await store.approvals(ApprovalState.APPROVED, 10) == []
    assert [r.id for r in await store.approvals_for_event(event.id)] == [
        "a1b2c3d4-0001",
        "a1b2ffff-0002",
    ]
    assert [r.id for r in await store.approvals_of_run("run-a1b2c3d4-0001")] == [request.id]
    assert await store.approval("nothing") is None


def asking_run(request: ApprovalRequest) -> tuple[Remediation, OutboxEntry]:
    """The run that stops to ask, as it waits, and the message asking its approvers."""
    run = waiting_run(request)
    key = f"remediator/{request.policy}/{request.target}"
    ask = OutboxEntry(
        f"ask-{request.id}", "slack", "trigger", key, run.id, {"approval": {"id": request.id}},
        request.requested_at, request.requested_at,
    )  # fmt: skip
    return run, ask


async def test_a_request_is_written_with_the_run_that_asks_and_its_message_or_not_at_all(
    store: Store,
) -> None:
    event = await handled_event(store, "fp-1")
    request = request_for(event, "r1")
    run, ask = asking_run(request)

    await store.request_approval(request, run, [ask])

    assert await store.approval("r1") == request
    assert await store.remediation(run.id) == run
    assert [e.id for e in await store.outbox_for(ask.dedup_key)] == [ask.id]
    # A run that cannot be written (a NULL where the table wants a value, as a store failing
    # between the two writes would leave it) takes its request down with it: no request is
    # left pending for a run that is not waiting for it.
    second = request_for(event, "r2")
    run, ask = asking_run(second)
    broken = replace(run, alertname=cast(str, None))
    with pytest.raises(StoreUnavailable):
        await store.request_approval(second, broken, [replace(ask, id="ask-r2")])
    assert await store.approval("r2") is None
    assert await store.remediation(run.id) is None
    assert [e.id for e in await store.outbox_for(ask.dedup_key)] == ["ask-r1"]


async def test_two_approvers_approve_it_and_its_event_is_queued_again(store: Store) -> None:
    event = await handled_event(store, "fp-1")
    await store.request_approval(request_for(event, "r1"))

    one = await store.answer_approval("r1", answer("r1", "alice"), 2)
    assert (one.counted, one.request.state, one.request.approved_by) == (
        True,
        ApprovalState.PENDING,
        ("alice",),
    )
    assert await queued_again(store) == []  # one approval of two: the run still waits

    at = NOW + 2 * MINUTE
    two = await store.answer_approval("r1", answer("r1", "bob", at=at), 2)
    assert (two.counted, two.request.state, two.request.decided_at) == (
        True,
        ApprovalState.APPROVED,
        at,
    )
    assert two.request.approved_by == ("alice", "bob")
    [again] = await queued_again(store, at)
    assert (again.id, again.attempts) == (event.id, 1)  # its attempts start again


async def test_one_person_gives_one_approval(store: Store) -> None:
    event = await handled_event(store, "fp-1")
    await store.request_approval(request_for(event, "r1"))
    await store.answer_approval("r1", answer("r1", "alice"), 2)

    again = await store.answer_approval("r1", answer("r1", "alice", at=NOW + 2 * MINUTE), 2)

    why = "already approved by alice: one person gives one approval"
    assert (again.counted, again.why, again.request.state) == (False, why, ApprovalState.PENDING)
    assert [(a.who, a.verdict, a.note) for a in again.request.answers] == [
        ("alice", Verdict.APPROVE, "alice says approve"),
        ("alice", Verdict.REFUSED, why),
    ]
    assert again.request.approved_by == ("alice",)
    assert await queued_again(store) == []


async def test_approvals_given_at_once_on_two_replicas_approve_it_exactly_once(
    postgres_dsn: str,
) -> None:
    """Each answer reads the approvals so far under the request's row lock: two approvers
    answering at once, on two replicas, are both counted, and the second approves."""
    first, second = await open_store(postgres_dsn), await open_store(postgres_dsn)
    try:
        events = [await handled_event(first, f"fp-{n}") for n in range(8)]
        for event in events:
            await first.request_approval(request_for(event, f"r-{event.id}"))

        for event in events:
            taken = await asyncio.gather(
                first.answer_approval(f"r-{event.id}", answer(f"r-{event.id}", "alice"), 2),
                second.answer_approval(f"r-{event.id}", answer(f"r-{event.id}", "bob"), 2),
            )
            assert all(t.counted for t in taken)
            states = sorted(t.request.state for t in taken)
            assert states == [ApprovalState.APPROVED, ApprovalState.PENDING]
            final = await first.approval(f"r-{event.id}")
            assert final is not None
            assert final.state is ApprovalState.APPROVED
            assert sorted(final.approved_by) == ["alice", "bob"]

        claimed = await queued_again(second) + await queued_again(first)
        assert sorted(e.id for e in claimed) == sorted(e.id for e in events)
        assert {e.attempts for e in claimed} == {1}
    finally:
        await first.close()
        await second.close()


async def test_an_approval_wakes_the_replicas_to_claim_its_event(postgres_dsn: str) -> None:
    store = await open_store(postgres_dsn)
    listener = await asyncpg.connect(postgres_dsn.partition("?")[0])
    schema = postgres_dsn.partition("search_path=")[2]
    heard: asyncio.Queue[object] = asyncio.Queue()

    def hear(_: object, __: int, ___: str, payload: object) -> None:
        if payload == schema:  # other tests' schemas may share the database
            heard.put_nowait(payload)

    try:
        await listener.add_listener("remediator_events", hear)
        event = await handled_event(store, "fp-1")
        assert await asyncio.wait_for(heard.get(), 10) == schema  # the intake's one wake
        await store.request_approval(request_for(event, "r1", min_approvals=1))
        await store.answer_approval("r1", answer("r1", "alice"), 1)
        assert await asyncio.wait_for(heard.get(), 10) == schema
        await store.request_approval(request_for(event, "r2", min_approvals=1))
        await store.close_approval("r2", ApprovalState.APPROVED, NOW + 15 * MINUTE, None)
        assert await asyncio.wait_for(heard.get(), 10) == schema  # approved on timeout
    finally:
        await listener.close()
        await store.close()


async def test_an_answer_after_the_expiry_is_refused_and_recorded(store: Store) -> None:
    event = await handled_event(store, "fp-1")
    request = request_for(event, "r1", min_approvals=1)
    await store.request_approval(request)

    late = await store.answer_approval("r1", answer("r1", "alice", at=request.expires_at), 1)

    assert not late.counted
    assert late.why == "expired at 2027-03-01 12:15:00 UTC"
    assert late.request.state is ApprovalState.PENDING  # the expiry sweep closes it
    [recorded] = late.request.answers
    assert (recorded.who, recorded.verdict, recorded.note) == ("alice", Verdict.REFUSED, late.why)
    assert await queued_again(store, request.expires_at) == []


@pytest.mark.parametrize(
    ("verdict", "state"),
    [(Verdict.REJECT, ApprovalState.REJECTED), (Verdict.CANCEL, ApprovalState.CANCELLED)],
)
async def test_a_rejection_or_a_cancellation_closes_it(
    store: Store, verdict: Verdict, state: ApprovalState
) -> None:
    event = await handled_event(store, "fp-1")
    await store.request_approval(request_for(event, "r1"))

    closed = await store.answer_approval("r1", answer("r1", "bob", verdict), 2)
    assert (closed.counted, closed.request.state, closed.request.decided_at) == (
        True,
        state,
        NOW + MINUTE,
    )

    after = await store.answer_approval("r1", answer("r1", "alice", at=NOW + 2 * MINUTE), 2)
    assert (after.counted, after.why, after.request.state) == (False, f"already {state}", state)
    assert after.request.answers[-1].verdict is Verdict.REFUSED
    # Its event is queued again, once, for the runner to end the run.
    [again] = await queued_again(store, NOW + 2 * MINUTE)
    assert again.id == event.id


async def test_an_answer_to_no_request_is_a_lookup_error(store: Store) -> None:
    with pytest.raises(LookupError, match="no approval request nothing"):
        await store.answer_approval("nothing", answer("nothing", "alice"), 1)


async def test_a_request_is_closed_only_while_pending(store: Store) -> None:
    event = await handled_event(store, "fp-1")
    await store.request_approval(request_for(event, "r1"))
    await store.request_approval(request_for(event, "r2"))
    await store.request_approval(request_for(event, "r3"))
    expired = ApprovalAnswer("r1", "remediator", "timeout", Verdict.REJECT, "no answer", NOW)

    # Void (the runner voided it, and holds the event): not queued again.
    assert await store.close_approval("r3", ApprovalState.VOID, NOW + 14 * MINUTE, None)
    assert await queued_again(store, NOW + 14 * MINUTE) == []

    assert await store.close_approval("r1", ApprovalState.EXPIRED, NOW + 15 * MINUTE, expired)
    assert not await store.close_approval("r1", ApprovalState.VOID, NOW + 16 * MINUTE, expired)
    r1 = await store.approval("r1")
    assert r1 is not None
    assert (r1.state, r1.decided_at, r1.answers) == (
        ApprovalState.EXPIRED,
        NOW + 15 * MINUTE,
        (expired,),
    )
    # Expired: its event is queued again, for the runner to end the run.
    [again] = await queued_again(store, NOW + 15 * MINUTE)
    assert again.id == event.id
    await store.complete_events([event.id], "worker-2", NOW + 15 * MINUTE)

    # Approved on timeout: its event is queued again, as by the approvers.
    assert await store.close_approval("r2", ApprovalState.APPROVED, NOW + 15 * MINUTE, None)
    [again] = await queued_again(store, NOW + 15 * MINUTE)
    assert again.id == event.id
    r2 = await store.approval("r2")
    assert r2 is not None
    assert (r2.state, r2.answers) == (ApprovalState.APPROVED, ())


async def test_due_approvals_are_the_pending_ones_past_their_expiry_oldest_first(
    store: Store,
) -> None:
    event = await handled_event(store, "fp-1")
    for approval_id, asked in [("late", NOW), ("later", NOW + MINUTE), ("early", NOW - MINUTE)]:
        await store.request_approval(request_for(event, approval_id, at=asked))
    await store.request_approval(request_for(event, "closed", at=NOW - 2 * MINUTE))
    await store.close_approval("closed", ApprovalState.VOID, NOW, None)
    await store.request_approval(request_for(event, "not-yet", at=NOW + 10 * MINUTE))

    due = await store.due_approvals(NOW + 16 * MINUTE, 10)

    assert [r.id for r in due] == ["early", "late", "later"]
    assert [r.id for r in await store.due_approvals(NOW + 16 * MINUTE, 2)] == ["early", "late"]
    assert await store.due_approvals(NOW + 13 * MINUTE, 10) == []


async def test_a_policy_is_demoted_promoted_and_demoted_again(store: Store) -> None:
    first = Demotion("application-down", "rev-1", "2 of its last 10 runs fixed it", NOW)
    assert await store.demotion("application-down") is None
    assert await store.demote(first)
    assert not await store.demote(replace(first, reason="again", demoted_at=NOW + DAY))
    assert await store.demotion("application-down") == first

    assert await store.promote("application-down", "alice", NOW + DAY)
    assert not await store.promote("application-down", "bob", NOW + 2 * DAY)
    promoted = await store.demotion("application-down")
    assert promoted == replace(first, promoted_at=NOW + DAY, promoted_by="alice")
    assert not promoted.in_force

    second = Demotion("application-down", "rev-2", "1 of its last 8 runs", NOW + 3 * DAY)
    assert await store.demote(second)
    assert await store.demotion("application-down") == second
    assert not await store.promote("other-policy", "alice", NOW)
    assert await store.demotions() == [second]


async def test_a_request_key_is_seen_first_once_within_its_window(store: Store) -> None:
    keep = timedelta(minutes=5)
    assert await store.first_seen("v0=abc", NOW, keep)
    assert not await store.first_seen("v0=abc", NOW + MINUTE, keep)
    assert not await store.first_seen("v0=abc", NOW + 4 * MINUTE, keep)  # the first sighting
    assert await store.first_seen("v0=def", NOW + MINUTE, keep)
    assert await store.first_seen("v0=abc", NOW + 5 * MINUTE, keep)  # a window later: new


async def test_retention_prunes_the_approvals_of_pruned_episodes(store: Store) -> None:
    old, recent = NOW - 40 * DAY, NOW - 2 * DAY
    old_event = await handled_event(store, "old", old)
    await store.request_approval(request_for(old_event, "r-old", at=old))
    await store.answer_approval("r-old", answer("r-old", "alice", at=old + MINUTE), 2)
    await store.answer_approval("r-old", answer("r-old", "bob", at=old + MINUTE), 2)
    [again] = await queued_again(store, old + MINUTE)  # the run goes on, and ends
    await store.complete_events([again.id], "worker-2", old + 2 * MINUTE)
    recent_event = await handled_event(store, "recent", recent)
    await store.request_approval(request_for(recent_event, "r-recent", at=recent))
    await store.answer_approval("r-recent", answer("r-recent", "alice", at=recent), 2)
    await store.record_answer(answer("gone-long-ago", "mallory", Verdict.REFUSED, at=old))
    await store.record_answer(answer("gone-lately", "mallory", Verdict.REFUSED, at=recent))
    await store.first_seen("v0=old", NOW - DAY - MINUTE, timedelta(minutes=5))
    await store.first_seen("v0=new", NOW - DAY + MINUTE, timedelta(minutes=5))

    counts = await prune_once(store, days=8, now=NOW.timestamp())

    assert (counts["approvals"], counts["approval_answers"], counts["seen_requests"]) == (1, 3, 1)
    assert await store.approval("r-old") is None
    assert [r.id for r in await store.approvals(None, 10)] == ["r-recent"]
    assert len((await store.approvals(None, 10))[0].answers) == 1
    assert not await store.first_seen("v0=new", NOW, timedelta(days=2))  # kept a day
    assert await store.first_seen("v0=old", NOW, timedelta(days=2))  # forgotten
    counts = await prune_once(store, days=8, now=NOW.timestamp())
    assert (counts["approvals"], counts["approval_answers"]) == (0, 0)
