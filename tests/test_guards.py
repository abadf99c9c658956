"""The guards in order, over a real store: what blocks, what is recorded, what survives."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from remediator.engine.plan import Plan
from remediator.guards.base import BreakerState
from remediator.guards.guards import Admitted, Blocked, Guards, breaker_spec
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import Guardrails
from remediator.store import Store
from tests.support.builders import memory_plan
from tests.support.clocks import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_guards(
    store: Store,
    clock: Clock,
    shipped: PolicySet,
    *,
    live: bool = True,
    backend: MemoryGuards | None = None,
    **guardrails: object,
) -> Guards:
    rails = Guardrails.model_validate(shipped.guardrails.model_dump(mode="json") | guardrails)
    return Guards(
        backend or MemoryGuards(clock),
        store,
        Metrics().guards,
        live=live,
        guardrails=lambda: rails,
        clock=clock,
    )


async def admitted(guards: Guards, plan: Plan) -> Admitted:
    result = await guards.admit(plan)
    assert isinstance(result, Admitted), result
    return result


async def blocked_by(guards: Guards, plan: Plan) -> str:
    result = await guards.admit(plan)
    assert isinstance(result, Blocked), result
    return result.guard


async def test_the_kill_switch_comes_first_and_survives_a_restart(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(store, clock, shipped, live=False)
    await guards.pause("database migration", "alice")
    result = await guards.admit(memory_plan(shipped))
    assert result == Blocked("kill_switch", "paused by alice: database migration")
    restarted = make_guards(store, clock, shipped)
    assert await blocked_by(restarted, memory_plan(shipped)) == "kill_switch"
    await restarted.resume("bob")
    await admitted(restarted, memory_plan(shipped))
    kinds = [(entry.kind, entry.detail.get("by")) for entry in await store.audit_log(10)]
    assert kinds == [("resume", "bob"), ("pause", "alice")]


async def test_dry_run_is_guarded_as_live_mode_would_be_against_budgets_of_its_own(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    dry = make_guards(store, clock, shipped, live=False)
    plan = memory_plan(shipped)  # high-memory-usage: 2 runs an hour
    for _ in range(2):
        run = await admitted(dry, plan)
        assert run.shadow  # its changes are only described
        await dry.finish(plan, run, succeeded=True)
    result = await dry.admit(plan)
    assert isinstance(result, Blocked)
    assert result.guard == "rate_limit"
    assert result.reason.startswith(
        "dry-run (the service runs in dry-run mode): would be blocked: "
    )
    # The same for a policy that sets dry_run, in live mode: its own budget, apart from live's.
    dry_policy = dataclasses.replace(plan, dry_run=True)
    live = make_guards(store, clock, shipped)
    result = await live.admit(dry_policy)
    assert isinstance(result, Blocked)
    assert result.guard == "rate_limit"
    assert result.reason.startswith("dry-run (the policy sets dry_run): would be blocked: ")
    # Switching to live starts clean: dry-run's runs spent none of live's budget.
    first = await admitted(live, plan)
    assert not first.shadow
    await live.finish(plan, first, succeeded=True)
    await admitted(live, plan)
    recorded = await store.runs_since(datetime.fromtimestamp(0, UTC))
    assert sorted(run.id.startswith("shadow:") for run in recorded) == [False, False, True, True]


async def test_dry_run_holds_a_target_and_a_slot_as_a_live_run_would(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(store, clock, shipped, max_concurrent_runs=1)
    dry = dataclasses.replace(memory_plan(shipped), dry_run=True)
    first = await admitted(guards, dry)
    same_target = dataclasses.replace(memory_plan(shipped, pod="api-7d9f8b6c5-x2k4p"), dry_run=True)
    assert await blocked_by(guards, same_target) == "target_lock"
    other = dataclasses.replace(memory_plan(shipped, deployment="billing-api"), dry_run=True)
    assert await blocked_by(guards, other) == "concurrency"
    # Live runs' targets and slots are their own: a live run is not held by a dry-run's.
    live = await admitted(guards, memory_plan(shipped))
    assert not live.shadow
    await guards.finish(dry, first, succeeded=True)
    await admitted(guards, other)


async def test_one_run_per_target_at_a_time(store: Store, clock: Clock, shipped: PolicySet) -> None:
    guards = make_guards(store, clock, shipped)
    first = await admitted(guards, memory_plan(shipped))
    # Another pod of the same deployment: the same target.
    other_pod = memory_plan(shipped, pod="api-7d9f8b6c5-x2k4p")
    result = await guards.admit(other_pod)
    assert isinstance(result, Blocked)
    assert result.guard == "target_lock"
    assert other_pod.target_key in result.reason
    await guards.finish(memory_plan(shipped), first, succeeded=True)
    await admitted(guards, other_pod)


async def test_a_blocked_attempt_spends_no_budget(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(store, clock, shipped)
    plan = memory_plan(shipped)
    held = await admitted(guards, plan)
    for _ in range(5):
        assert await blocked_by(guards, plan) == "target_lock"
    await guards.finish(plan, held, succeeded=True)
    # high-memory-usage allows 2 runs an hour: the second is still there.
    second = await admitted(guards, plan)
    await guards.finish(plan, second, succeeded=True)
    result = await guards.admit(plan)
    assert isinstance(result, Blocked)
    assert result.guard == "rate_limit"
    assert "2/2 in 3600s" in result.reason
    assert result.retry_after == pytest.approx(3600.0)


async def test_the_rate_limit_slides_without_a_burst_at_the_hour(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(store, clock, shipped)
    plan = memory_plan(shipped)
    clock.advance(3500)  # just before a fixed window would reset
    for _ in range(2):  # 2 an hour
        await guards.finish(plan, await admitted(guards, plan), succeeded=True)
    clock.advance(200)  # a fixed hourly window would be fresh here
    result = await guards.admit(plan)
    assert isinstance(result, Blocked)
    assert result.guard == "rate_limit"
    assert result.retry_after == pytest.approx(3400.0)
    clock.advance(3399)
    assert await blocked_by(guards, plan) == "rate_limit"
    clock.advance(1)
    await admitted(guards, plan)


async def test_every_window_must_have_room(store: Store, clock: Clock, shipped: PolicySet) -> None:
    guards = make_guards(store, clock, shipped)
    plan = memory_plan(shipped)
    for _ in range(2):  # two full hours: 4 runs, the daily maximum
        for _ in range(2):
            await guards.finish(plan, await admitted(guards, plan), succeeded=True)
        clock.advance(3600)
    result = await guards.admit(plan)
    assert isinstance(result, Blocked)
    assert result.reason.endswith("0/2 in 3600s, 4/4 in 86400s")
    assert result.retry_after == pytest.approx(86400.0 - 7200.0)


async def test_a_global_limit_spans_policies_and_targets(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(
        store, clock, shipped, global_rate_limit=[{"max": 2, "per": "1h"}], max_concurrent_runs=10
    )
    plans = [
        memory_plan(shipped, deployment=f"api-{index}", pod=f"api-{index}-x") for index in range(3)
    ]
    for plan in plans[:2]:
        await admitted(guards, plan)
    result = await guards.admit(plans[2])
    assert isinstance(result, Blocked)
    assert result.guard == "rate_limit"
    assert "rate limit global" in result.reason


async def test_the_concurrency_cap_counts_runs_in_flight(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(store, clock, shipped, max_concurrent_runs=2)
    plans = [
        memory_plan(shipped, deployment=f"api-{index}", pod=f"api-{index}-x") for index in range(3)
    ]
    first = await admitted(guards, plans[0])
    await admitted(guards, plans[1])
    assert await blocked_by(guards, plans[2]) == "concurrency"
    await guards.finish(plans[0], first, succeeded=True)
    await admitted(guards, plans[2])


async def test_the_breaker_opens_blocks_lets_one_trial_through_and_audits(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = make_guards(store, clock, shipped)
    plan = memory_plan(shipped)
    for attempt in range(3):  # 3 failures within 6h open it
        if attempt:
            clock.advance(3601)  # past the hourly rate limit
        run = await admitted(guards, plan)
        await guards.finish(plan, run, succeeded=False)
    result = await guards.admit(plan)
    assert isinstance(result, Blocked)
    assert result.guard == "circuit_breaker"
    assert "is open" in result.reason
    clock.advance(3600)  # the cooldown
    trial = await admitted(guards, plan)
    assert trial.trial
    assert await blocked_by(guards, plan) == "target_lock"
    await guards.finish(plan, trial, succeeded=True)
    snapshot = await guards.snapshot(shipped)
    assert snapshot.breakers[breaker_spec(plan).key].state is BreakerState.CLOSED
    transitions = [
        (entry.detail["from"], entry.detail["to"])
        for entry in reversed(await store.audit_log(10))
        if entry.kind == "breaker"
    ]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_a_restart_does_not_refill_budgets_or_close_breakers(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    plan = memory_plan(shipped)
    before = make_guards(store, clock, shipped)
    for attempt in range(3):  # three failures in an hour: the breaker opens
        if attempt:
            clock.advance(1800)
        run = await admitted(before, plan)
        await before.finish(plan, run, succeeded=False)
    restarted = make_guards(store, clock, shipped)  # fresh memory, same store
    result = await restarted.admit(plan)
    assert isinstance(result, Blocked)
    assert result.guard == "rate_limit"  # 2 of the 3 runs in the last hour
    clock.advance(1801)
    result = await restarted.admit(plan)
    assert isinstance(result, Blocked)
    assert result.guard == "circuit_breaker"  # opened by the third failure, cooling down
    snapshot = await restarted.snapshot(shipped)
    assert snapshot.breakers[breaker_spec(plan).key].state is BreakerState.OPEN
    [budgets] = snapshot.budgets.values()
    assert [budget.used for budget in budgets] == [1, 3]


async def test_a_lapsed_lease_is_fenced_off(store: Store, clock: Clock, shipped: PolicySet) -> None:
    guards = make_guards(store, clock, shipped)
    plan = memory_plan(shipped)
    first = await admitted(guards, plan)
    assert await guards.may_act(first)
    clock.advance(guards.lease_ttl - 1)
    renewed = await guards.renew(first)
    assert renewed is not None
    clock.advance(guards.lease_ttl - 1)
    assert await guards.may_act(first)  # renewed in time
    clock.advance(2)  # then the first worker stalls past its lease
    assert not await guards.may_act(first)
    second = await admitted(guards, plan)
    assert second.lease.token > first.lease.token
    assert await guards.renew(first) is None
    assert not await guards.may_act(first)
    assert await guards.may_act(second)


async def test_a_release_gives_the_turn_to_the_oldest_waiting_run_only(
    store: Store, clock: Clock, shipped: PolicySet
) -> None:
    """Runs waiting for a slot are woken one at a time, oldest first: a release is not a
    stampede of every waiting run asking the guards at once."""
    guards = make_guards(store, clock, shipped, max_concurrent_runs=1)
    running = await admitted(guards, memory_plan(shipped, deployment="api-0", pod="api-0-x"))
    oldest = asyncio.create_task(guards.freed(60))
    await asyncio.sleep(0)  # (each waiter queues when it first runs)
    newest = asyncio.create_task(guards.freed(60))
    await asyncio.sleep(0)
    await guards.release(running)
    assert await asyncio.wait_for(oldest, 5) is True
    assert not newest.done()
    guards.pass_on()  # the oldest could not use it: the next one's turn
    assert await asyncio.wait_for(newest, 5) is True
    assert await guards.freed(0.01) is False  # nobody released anything since
