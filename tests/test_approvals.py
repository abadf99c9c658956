"""A change that needs approval: the run stops before it and asks, holding no slot; it goes on
once approved (and the guards still allow it), and ends without the change when refused,
cancelled, expired, or when its alert resolved; an approval binds to the change it saw."""

from __future__ import annotations

import asyncio

import pytest

from remediator.store import AlertEvent, ApprovalState, Remediation, Verdict
from tests.support.approvals import (
    answer,
    approved_first,
    desk,
    fired,
    fixes,
    pending,
    run_of,
)
from tests.support.service_process import eventually
from tests.support.world import World


@pytest.fixture
def policy() -> str:
    return approved_first("{approvers: [alice, bob], ttl: 10m}")


async def test_the_run_stops_before_the_change_and_asks_with_what_it_would_do(
    world: World,
) -> None:
    run = await fired(world)

    assert run.outcome == "awaiting_approval", run.reason
    assert fixes(world) == 0
    request = await pending(world)
    assert (request.step, request.action, request.approvers) == (
        "fix",
        "http.request",
        ("alice", "bob"),
    )
    assert request.params["method"] == "PUT"
    assert request.params["json"] == {"mode": "safe"}
    assert request.shown["change"].startswith("would PUT"), request.shown
    assert request.shown["steps"][0]["step"] == "health"  # what was read so far
    assert "budgets" in request.shown["guards"]
    assert "breaker" in request.shown["guards"]
    assert "remediator approvals approve" in run.reason
    assert "alice, bob" in run.reason
    # It holds no slot and no lease while it waits.
    snapshot = await world.guards.snapshot(world.live.current)
    assert snapshot.runs_in_flight == 0
    assert snapshot.leases == ()
    # The incident's channels are told what waits, with what to answer.
    queued = await world.store.outbox_for(f"remediator/probe-and-fix/{run.target}")
    asks = [e for e in queued if e.message.get("approval")]
    assert asks
    assert asks[0].message["approval"]["id"] == request.id
    assert asks[0].action == "trigger"


async def test_an_approval_lets_the_run_make_exactly_that_change_once(world: World) -> None:
    run = await fired(world)
    request = await pending(world)

    await answer(world, request, "alice", Verdict.APPROVE)

    assert fixes(world) == 1
    after = await run_of(world, run)
    assert after.outcome == "verifying", after.reason
    assert after.run_id == run.run_id  # the same run, gone on
    await world.dispatcher.run_once()
    assert fixes(world) == 1  # not twice
    [again] = await world.store.approvals_of_run(run.id)
    assert again.state is ApprovalState.APPROVED
    assert again.approved_by == ("alice",)


@pytest.mark.parametrize("policy", [approved_first("{approvers: [alice, bob], min_approvals: 2}")])
async def test_two_approvals_from_two_people(world: World) -> None:
    run = await fired(world)
    request = await pending(world)
    assert "by 2 different people of alice, bob, before" in run.reason

    await answer(world, request, "alice", Verdict.APPROVE)
    await answer(world, request, "alice", Verdict.APPROVE)  # one person, one approval
    assert fixes(world) == 0
    assert (await pending(world)).approved_by == ("alice",)

    await answer(world, request, "bob", Verdict.APPROVE)
    assert fixes(world) == 1


async def test_someone_not_listed_is_refused_and_recorded(world: World) -> None:
    run = await fired(world)
    request = await pending(world)

    taken = await desk(world).answer(request.id, "mallory", "api", Verdict.APPROVE)
    await world.dispatcher.run_once()

    assert not taken.counted
    assert "mallory is not an approver" in taken.why
    assert fixes(world) == 0
    still = await pending(world)
    assert [(a.who, a.verdict) for a in still.answers] == [("mallory", Verdict.REFUSED)]
    assert (await run_of(world, run)).outcome == "awaiting_approval"


async def test_a_rejection_ends_the_run_without_the_change(world: World) -> None:
    run = await fired(world)
    await answer(world, await pending(world), "bob", Verdict.REJECT)

    ended = await run_of(world, run)
    assert ended.outcome == "rejected", ended.reason
    assert "rejected by bob (api)" in ended.reason
    assert fixes(world) == 0
    queued = await world.store.outbox_for(f"remediator/probe-and-fix/{run.target}")
    assert queued[-1].message["outcome"] == "rejected"  # the page goes on: a person acts


async def test_a_cancelled_request_ends_the_run(world: World) -> None:
    run = await fired(world)
    await answer(world, await pending(world), "an-operator", Verdict.CANCEL)
    ended = await run_of(world, run)
    assert ended.outcome == "rejected"
    assert "cancelled by an-operator" in ended.reason
    assert fixes(world) == 0


async def test_no_answer_within_the_ttl_expires_the_request_and_nothing_runs(
    world: World,
) -> None:
    run = await fired(world)
    request = await pending(world)
    world.clock.advance(10 * 60 + 1)

    await world.dispatcher.run_once()  # expires it (housekeeping), then ends the run
    await world.dispatcher.run_once()

    ended = await run_of(world, run)
    assert ended.outcome == "expired", ended.reason
    assert fixes(world) == 0
    taken = await desk(world).answer(request.id, "alice", "api", Verdict.APPROVE)
    assert not taken.counted  # too late
    await world.dispatcher.run_once()
    assert fixes(world) == 0


@pytest.mark.parametrize("policy", [approved_first("{approvers: [alice], on_timeout: approve}")])
async def test_on_timeout_approve_makes_the_change_after_the_ttl(world: World) -> None:
    await fired(world)
    world.clock.advance(15 * 60 + 1)
    await world.dispatcher.run_once()
    await world.dispatcher.run_once()
    assert fixes(world) == 1


async def test_an_approval_after_the_alert_resolved_runs_nothing(world: World) -> None:
    run = await fired(world)
    request = await pending(world)
    await world.post("resolved")
    await world.dispatcher.run_once()

    stopped = await run_of(world, run)
    assert stopped.outcome == "stopped"
    assert "resolved while the run waited" in stopped.reason
    taken = await desk(world).answer(request.id, "alice", "api", Verdict.APPROVE)
    await world.dispatcher.run_once()
    assert not taken.counted
    assert taken.request.state is ApprovalState.VOID
    assert fixes(world) == 0


async def test_the_kill_switch_is_checked_again_when_the_approval_comes(world: World) -> None:
    run = await fired(world)
    await world.guards.pause("maintenance", "carol")

    await answer(world, await pending(world), "alice", Verdict.APPROVE)

    ended = await run_of(world, run)
    assert (ended.outcome, ended.guard) == ("blocked", "kill_switch"), ended.reason
    assert "approved, but not now: paused by carol" in ended.reason
    assert fixes(world) == 0


async def test_another_run_on_the_target_is_checked_again_when_the_approval_comes(
    world: World,
) -> None:
    run = await fired(world)
    taken = await world.guards.hold(await _plan(world))  # someone else holds the target now
    await answer(world, await pending(world), "alice", Verdict.APPROVE)

    ended = await run_of(world, run)
    assert (ended.outcome, ended.guard) == ("blocked", "target_lock"), ended.reason
    assert fixes(world) == 0
    assert taken is not None


async def test_an_approval_is_void_when_the_change_it_saw_changed(world: World, tmp_path) -> None:
    run = await fired(world)
    first = await pending(world)
    policy_file = tmp_path / "policies" / "probe-and-fix.yaml"
    policy_file.write_text(policy_file.read_text().replace("mode: safe", "mode: careful"))
    await world.live.reload()

    await answer(world, first, "alice", Verdict.APPROVE)

    assert fixes(world) == 0  # not the change alice saw
    second = await pending(world)
    assert second.id != first.id
    assert second.params["json"] == {"mode": "careful"}
    assert (await run_of(world, run)).outcome == "awaiting_approval"
    [approved] = [r for r in await world.store.approvals_of_run(run.id) if r.id == first.id]
    assert any("void" in a.note for a in approved.answers)
    await answer(world, second, "bob", Verdict.APPROVE)
    assert [body for call, body in world.application.calls if call == "fix"] == [
        {"mode": "careful"}
    ]


async def _plan(world: World):  # type: ignore[no-untyped-def]
    from remediator.engine.decide import decide

    [record] = await world.store.recent_alerts(1)
    plan = decide(record.as_alert(record.status), world.live.current, record.starts_at)
    return plan


@pytest.mark.parametrize(
    "policy",
    [approved_first("{approvers: [alice, bob], min_approvals: 2}") + "dry_run: true\n"],
)
async def test_a_dry_run_asks_nobody_and_says_it_would_ask(world: World) -> None:
    run = await fired(world)
    assert run.outcome == "dry_run", run.reason
    # In the words of the request live mode would make.
    assert "would ask 2 different people of alice, bob to approve, then: would PUT" in run.reason
    assert await world.store.approvals(None, 10) == []
    assert fixes(world) == 0


async def test_an_answer_that_comes_while_the_run_that_asked_ends_its_turn_is_not_lost(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval queues the event again, and this worker claims it while its run that asked
    has not ended its turn yet (a slow write, a busy loop): the run goes on once it has."""
    asked, let_go = asyncio.Event(), asyncio.Event()
    handle = world.runner.handle

    async def slow_to_end(event: AlertEvent) -> Remediation | None:
        handled = await handle(event)
        if not asked.is_set():  # the turn that asked
            asked.set()
            await let_go.wait()
        return handled

    monkeypatch.setattr(world.runner, "handle", slow_to_end)
    world.application.healthy = False
    await world.post("firing")
    stop = asyncio.Event()
    dispatching = asyncio.create_task(world.dispatcher.run(stop))
    try:
        await asyncio.wait_for(asked.wait(), timeout=30)
        request = await pending(world)
        await desk(world).answer(request.id, "alice", "api", Verdict.APPROVE)
        world.dispatcher.wake()

        async def claimed_again() -> bool:  # the answer reset its claims; one more is this one
            return [e.attempts for e in await world.store.all_events(10)] == [1]

        await eventually(claimed_again, what="the event queued again to be claimed here")
        let_go.set()
        await eventually(lambda: _fixed_once(world), what="the approved fix to be made")
    finally:
        let_go.set()
        stop.set()
        await dispatching
    assert fixes(world) == 1


async def _fixed_once(world: World) -> bool:
    return fixes(world) == 1


async def test_a_breaker_s_trial_refused_proves_nothing_and_the_next_run_is_the_trial(
    world: World,
) -> None:
    """Two approved fixes fail and open the breaker; after its cooldown the next run is its
    trial, and asks: refused, it tried nothing, so the breaker stays half-open (it would have
    closed, had the refusal counted as a success) and the next run is the trial."""
    world.application.fix_status = 500
    for starts_at in ("2027-01-15T08:00:00Z", "2027-01-15T08:05:00Z"):
        await fired(world, starts_at)
        await answer(world, await pending(world), "alice", Verdict.APPROVE)
    assert await breaker_state(world) == "open"

    world.clock.advance(31 * 60)
    trial = await fired(world, "2027-01-15T08:40:00Z")
    assert trial.outcome == "awaiting_approval", trial.reason
    await answer(world, await pending(world), "bob", Verdict.REJECT)

    assert (await run_of(world, trial)).outcome == "rejected"
    assert await breaker_state(world) == "half_open"
    world.application.fix_status = 200
    world.clock.advance(60)
    after = await fired(world, "2027-01-15T08:45:00Z")
    assert after.outcome == "awaiting_approval", after.reason  # admitted: the new trial


async def breaker_state(world: World) -> str:
    snapshot = await world.guards.snapshot(world.live.current)
    [breaker] = snapshot.breakers.values()  # the policy's, on its one target
    return breaker.state.value
