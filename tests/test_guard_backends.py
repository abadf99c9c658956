"""Both guard backends against the same rules: every test runs on MemoryGuards and on
RedisGuards (a real Redis), with a fake clock the test advances itself. A property test holds
both to the reference model in guard_reference.py. Two Redis-only tests check what only Redis
has: atomicity across processes, and what happens when it goes away.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from remediator.guards.base import (
    Attempt,
    BreakerSpec,
    BreakerState,
    GuardBackend,
    GuardsUnavailable,
    Lease,
    Limit,
    PastRun,
    Reach,
    Transition,
    Unseeded,
    Verdict,
    Window,
)
from remediator.guards.memory import MemoryGuards
from remediator.guards.redis import RedisGuards
from tests.support.clocks import Clock
from tests.support.guard_reference import ReferenceGuards
from tests.support.redis_server import RedisServer, answers
from tests.support.services import missing_service

REDIS_URL = os.environ.get("REMEDIATOR_TEST_REDIS", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000.0
BREAKER = BreakerSpec("svc", failures=3, window=60.0, cooldown=300.0)
OTHER_BREAKER = BreakerSpec("other", failures=3, window=60.0, cooldown=300.0)
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def limit(key: str, *windows: tuple[int, float]) -> Limit:
    return Limit(key, tuple(Window(max_, per) for max_, per in windows))


def attempt(
    run_id: str,
    *limits: Limit,
    breaker: BreakerSpec = BREAKER,
    max_concurrent: int = 10,
    run_ttl: float = 60.0,
) -> Attempt:
    return Attempt(run_id, limits, breaker, max_concurrent, run_ttl)


async def delete_prefix(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)
    try:
        await client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        await client.aclose()
        missing_service(
            f"Redis at {REDIS_URL} ({exc})",
            "start `redis-server` on 127.0.0.1:6379, or set REMEDIATOR_TEST_REDIS",
        )
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    await delete_prefix(redis_client, prefix)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(params=["memory", "redis"])
def unseeded(request: pytest.FixtureRequest, clock: Clock) -> GuardBackend:
    if request.param == "memory":
        return MemoryGuards(clock)
    client: redis.asyncio.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("redis_prefix")
    return RedisGuards(client, prefix, clock)


@pytest.fixture
async def guards(unseeded: GuardBackend) -> GuardBackend:
    await unseeded.seed([])
    return unseeded


async def used(guards: GuardBackend, lim: Limit) -> list[int]:
    snapshot = await guards.snapshot([lim], [])
    return [budget.used for budget in snapshot.budgets[lim.key]]


async def breaker_state(guards: GuardBackend, spec: BreakerSpec = BREAKER) -> BreakerState:
    return (await guards.snapshot([], [spec])).breakers[spec.key].state


async def open_breaker(guards: GuardBackend, spec: BreakerSpec = BREAKER) -> None:
    """Fail `spec.failures` runs now: the breaker opens at the last."""
    for i in range(spec.failures):
        assert (await guards.admit(attempt(f"failing-{i}", breaker=spec))).allowed
    for i in range(spec.failures):
        await guards.finish(f"failing-{i}", spec, succeeded=False)
    assert await breaker_state(guards, spec) is OPEN


# Rate limits


async def test_rate_limit_allows_max_then_blocks(guards: GuardBackend, clock: Clock) -> None:
    restart = limit("restart", (3, 60.0))
    for i in range(3):
        assert await guards.admit(attempt(f"r{i}", restart)) == Verdict(True)
        clock.advance(10)
    verdict = await guards.admit(attempt("r3", restart))
    detail = "rate limit restart spent: 3/3 in 60s"
    assert verdict == Verdict(False, "rate_limit", detail, 30.0, CLOSED)
    assert await used(guards, restart) == [3]


async def test_rate_limit_window_slides(guards: GuardBackend, clock: Clock) -> None:
    restart = limit("restart", (3, 60.0))
    for step in (50, 5, 4):  # admitted at 50, 55 and 59
        clock.advance(step)
        assert (await guards.admit(attempt(f"r{clock.now}", restart))).allowed
    clock.advance(2)  # 61: a fixed window [60, 120) would start empty here
    verdict = await guards.admit(attempt("edge", restart))
    assert (verdict.allowed, verdict.guard, verdict.retry_after) == (False, "rate_limit", 49.0)
    clock.advance(49)  # 110: the admission at 50 has left (110 - 60, 110]
    assert (await guards.admit(attempt("after", restart))).allowed
    verdict = await guards.admit(attempt("again", restart))
    assert (verdict.allowed, verdict.retry_after) == (False, 5.0)


async def test_several_windows_at_once(guards: GuardBackend, clock: Clock) -> None:
    hourly_daily = limit("deploy", (3, 3600.0), (7, 86400.0))
    for hour in range(2):
        for i in range(3):
            assert (await guards.admit(attempt(f"h{hour}-{i}", hourly_daily))).allowed
        verdict = await guards.admit(attempt(f"h{hour}-over", hourly_daily))
        detail = f"rate limit deploy spent: 3/3 in 3600s, {3 * (hour + 1)}/7 in 86400s"
        assert verdict == Verdict(False, "rate_limit", detail, 3600.0, CLOSED)
        clock.advance(3600)
    assert (await guards.admit(attempt("seventh", hourly_daily))).allowed
    verdict = await guards.admit(attempt("eighth", hourly_daily))
    detail = "rate limit deploy spent: 1/3 in 3600s, 7/7 in 86400s"
    assert verdict == Verdict(False, "rate_limit", detail, 86400.0 - 7200.0, CLOSED)
    assert await used(guards, hourly_daily) == [1, 7]


async def test_global_limit_shared_across_keys(guards: GuardBackend) -> None:
    everything = limit("global", (3, 3600.0))
    svc_a, svc_b = limit("svc-a", (5, 3600.0)), limit("svc-b", (5, 3600.0))
    for run, own in (("a1", svc_a), ("a2", svc_a), ("b1", svc_b)):
        assert (await guards.admit(attempt(run, own, everything))).allowed
    verdict = await guards.admit(attempt("b2", svc_b, everything))
    assert (verdict.guard, verdict.detail) == (
        "rate_limit",
        "rate limit global spent: 3/3 in 3600s",
    )
    snapshot = await guards.snapshot([svc_a, svc_b, everything], [])
    assert {key: budgets[0].used for key, budgets in snapshot.budgets.items()} == {
        "svc-a": 2,
        "svc-b": 1,
        "global": 3,
    }
    assert snapshot.budgets["global"][0].remaining == 0


async def test_nothing_is_taken_when_a_later_guard_blocks(
    guards: GuardBackend, clock: Clock
) -> None:
    roomy, full = limit("roomy", (5, 3600.0)), limit("full", (1, 3600.0))
    first = attempt("first", full, breaker=OTHER_BREAKER, run_ttl=3600)
    assert (await guards.admit(first)).allowed
    # A later rate limit: the earlier one is not spent.
    assert (await guards.admit(attempt("r1", roomy, full))).guard == "rate_limit"
    assert await used(guards, roomy) == [0]
    # The breaker: no rate limit spent, no slot taken.
    await open_breaker(guards)
    assert (await guards.admit(attempt("r2", roomy))).guard == "circuit_breaker"
    assert await used(guards, roomy) == [0]
    assert (await guards.snapshot([], [])).runs_in_flight == 1  # "first" only
    # The cap: no rate limit spent, and the breaker's one trial is not used up.
    clock.advance(BREAKER.cooldown)
    verdict = await guards.admit(attempt("r3", roomy, max_concurrent=1))
    assert (verdict.guard, verdict.breaker) == ("concurrency", OPEN)
    assert await used(guards, roomy) == [0]
    assert await breaker_state(guards) is OPEN
    await guards.finish("first", OTHER_BREAKER, succeeded=True)
    verdict = await guards.admit(attempt("r4", roomy, max_concurrent=1))
    assert verdict == Verdict(True, breaker=HALF_OPEN)
    assert await used(guards, roomy) == [1]


# Blast radius: distinct targets changed in a window

RADIUS = Reach("application-down", count=2, per=600.0)
USERS, ORDERS, PAYMENTS = (f"Deployment/prod/{name}" for name in ("users", "orders", "payments"))


def change(run_id: str, target: str, *reaches: Reach) -> Attempt:
    """A run that changes `target`, counted in `reaches` (RADIUS unless told)."""
    return replace(attempt(run_id), target=target, reaches=reaches or (RADIUS,))


async def test_a_third_target_in_the_window_is_held_while_a_repeat_and_a_read_pass(
    guards: GuardBackend, clock: Clock
) -> None:
    assert (await guards.admit(change("r1", USERS))).allowed
    clock.advance(30)
    assert (await guards.admit(change("r2", ORDERS))).allowed
    clock.advance(30)
    verdict = await guards.admit(change("r3", PAYMENTS))
    detail = f"blast radius application-down spent: 2/2 in 600s: {USERS}, {ORDERS}"
    changed = ((USERS, T0), (ORDERS, T0 + 30))
    assert verdict == Verdict(False, "blast_radius", detail, 540.0, CLOSED, RADIUS, changed)
    # A target already changed in the window is not counted again; a run that changes
    # nothing counts in no blast radius.
    assert (await guards.admit(change("r4", USERS))).allowed
    assert (await guards.admit(replace(attempt("read"), target=PAYMENTS))).allowed
    view = (await guards.snapshot([], [], [RADIUS])).reaches["application-down"]
    assert (view.changed, view.remaining) == (((ORDERS, T0 + 30), (USERS, T0 + 60)), 0)
    assert (await guards.admit(change("r5", PAYMENTS))).guard == "blast_radius"
    clock.advance(571)  # orders-api's change (at 30) has left (31, 631]
    assert (await guards.admit(change("r6", PAYMENTS))).allowed
    assert (await guards.admit(change("r7", ORDERS))).guard == "blast_radius"


async def test_a_blast_radius_held_run_takes_nothing_and_others_keep_their_own(
    guards: GuardBackend,
) -> None:
    roomy = limit("roomy", (5, 3600.0))
    everywhere = Reach("(all policies)", count=3, per=600.0)
    other = Reach("pod-crash-looping", count=2, per=600.0)
    for run, target in (("r1", USERS), ("r2", ORDERS)):
        assert (await guards.admit(change(run, target, RADIUS, everywhere))).allowed
    held = replace(change("r3", PAYMENTS, RADIUS, everywhere), limits=(roomy,))
    assert (await guards.admit(held)).guard == "blast_radius"
    assert await used(guards, roomy) == [0]
    assert (await guards.snapshot([], [])).runs_in_flight == 2
    # Another policy's own bound has room; the global one has one target left.
    assert (await guards.admit(change("r4", PAYMENTS, other, everywhere))).allowed
    verdict = await guards.admit(change("r5", "Deployment/prod/search", other, everywhere))
    assert (verdict.guard, verdict.reach) == ("blast_radius", everywhere)


async def test_seed_restores_the_targets_a_blast_radius_changed(
    unseeded: GuardBackend, clock: Clock
) -> None:
    history = [
        PastRun("old", (), BREAKER, T0 - 700, T0 - 690, True, "Deployment/prod/old", (RADIUS.key,)),
        PastRun("u", (), BREAKER, T0 - 100, None, None, USERS, (RADIUS.key,)),
        PastRun("o", (), BREAKER, T0 - 50, T0 - 40, False, ORDERS, (RADIUS.key,)),
        PastRun("read", (), BREAKER, T0 - 10, T0 - 5, True, PAYMENTS, ()),
    ]
    await unseeded.seed(history)
    verdict = await unseeded.admit(change("now", PAYMENTS))
    assert (verdict.guard, verdict.changed) == (
        "blast_radius",
        ((USERS, T0 - 100), (ORDERS, T0 - 50)),
    )
    assert (await unseeded.admit(change("again", ORDERS))).allowed


# Circuit breaker


async def test_breaker_opens_after_failures_within_window(
    guards: GuardBackend, clock: Clock
) -> None:
    for i in range(3):
        assert (await guards.admit(attempt(f"r{i}"))).allowed
    transitions = []
    for i in range(3):
        clock.advance(10)
        transitions.append(await guards.finish(f"r{i}", BREAKER, succeeded=False))
    assert transitions == [
        Transition("svc", CLOSED, CLOSED),
        Transition("svc", CLOSED, CLOSED),
        Transition("svc", CLOSED, OPEN),
    ]
    assert transitions[-1].changed
    verdict = await guards.admit(attempt("blocked"))
    assert verdict == Verdict(False, "circuit_breaker", "circuit breaker svc is open", 300.0, OPEN)
    view = (await guards.snapshot([], [BREAKER])).breakers["svc"]
    assert (view.state, view.opened_at, view.trial_until) == (OPEN, T0 + 30, None)


async def test_failures_outside_the_window_do_not_count(guards: GuardBackend, clock: Clock) -> None:
    for i in range(3):
        assert (await guards.admit(attempt(f"r{i}"))).allowed
    await guards.finish("r0", BREAKER, succeeded=False)  # at 0
    clock.advance(30)
    await guards.finish("r1", BREAKER, succeeded=False)  # at 30
    clock.advance(30)
    # At 60 the failure at 0 is outside (0, 60]: two failures, not three.
    assert await guards.finish("r2", BREAKER, succeeded=False) == Transition("svc", CLOSED, CLOSED)
    view = (await guards.snapshot([], [BREAKER])).breakers["svc"]
    assert (view.state, view.recent_failures) == (CLOSED, 2)
    clock.advance(30)  # 90: the failure at 30 has left (30, 90]
    assert (await guards.snapshot([], [BREAKER])).breakers["svc"].recent_failures == 1


async def test_cooldown_then_exactly_one_trial(guards: GuardBackend, clock: Clock) -> None:
    await open_breaker(guards)
    clock.advance(299)
    verdict = await guards.admit(attempt("early"))
    assert (verdict.guard, verdict.retry_after, verdict.breaker) == ("circuit_breaker", 1.0, OPEN)
    clock.advance(1)
    assert await guards.admit(attempt("trial")) == Verdict(True, breaker=HALF_OPEN)
    verdict = await guards.admit(attempt("second"))
    detail = "circuit breaker svc is half_open"
    assert verdict == Verdict(False, "circuit_breaker", detail, 60.0, HALF_OPEN)
    view = (await guards.snapshot([], [BREAKER])).breakers["svc"]
    assert (view.state, view.trial_until) == (HALF_OPEN, clock.now + 60)


async def test_trial_success_closes(guards: GuardBackend, clock: Clock) -> None:
    await open_breaker(guards)
    clock.advance(300)
    assert (await guards.admit(attempt("trial"))).allowed
    assert await guards.finish("trial", BREAKER, True) == Transition("svc", HALF_OPEN, CLOSED)
    assert await guards.admit(attempt("next")) == Verdict(True, breaker=CLOSED)
    assert await guards.admit(attempt("and-next")) == Verdict(True, breaker=CLOSED)
    assert (await guards.snapshot([], [BREAKER])).breakers["svc"].recent_failures == 0


async def test_trial_failure_reopens(guards: GuardBackend, clock: Clock) -> None:
    await open_breaker(guards)
    clock.advance(300)
    assert (await guards.admit(attempt("trial"))).allowed
    clock.advance(20)
    assert await guards.finish("trial", BREAKER, False) == Transition("svc", HALF_OPEN, OPEN)
    verdict = await guards.admit(attempt("next"))
    assert (verdict.guard, verdict.retry_after) == ("circuit_breaker", 300.0)  # a new cooldown


async def test_a_trial_that_tried_nothing_proves_nothing(
    guards: GuardBackend, clock: Clock
) -> None:
    """The trial waited for an approval that was refused: the breaker stays half-open, and the
    next run is the trial, whose outcome counts."""
    await open_breaker(guards)
    clock.advance(300)
    assert (await guards.admit(attempt("trial", run_ttl=60))).allowed
    clock.advance(10)
    assert await guards.finish("trial", BREAKER, None) == Transition("svc", HALF_OPEN, HALF_OPEN)
    assert await guards.admit(attempt("next")) == Verdict(True, breaker=HALF_OPEN)
    assert (await guards.admit(attempt("too-soon"))).guard == "circuit_breaker"
    assert await guards.finish("next", BREAKER, False) == Transition("svc", HALF_OPEN, OPEN)
    # Closed, a run that tried nothing is no failure either.
    clock.advance(300)
    assert (await guards.admit(attempt("third"))).allowed
    assert await guards.finish("third", BREAKER, True) == Transition("svc", HALF_OPEN, CLOSED)
    assert (await guards.admit(attempt("fourth"))).allowed
    assert await guards.finish("fourth", BREAKER, None) == Transition("svc", CLOSED, CLOSED)
    assert (await guards.snapshot([], [BREAKER])).breakers["svc"].recent_failures == 0


async def test_a_lapsed_trial_lets_another_through(guards: GuardBackend, clock: Clock) -> None:
    await open_breaker(guards)
    clock.advance(300)
    assert (await guards.admit(attempt("trial", run_ttl=60))).allowed
    clock.advance(59)
    assert (await guards.admit(attempt("too-soon"))).guard == "circuit_breaker"
    clock.advance(1)
    assert await guards.admit(attempt("second")) == Verdict(True, breaker=HALF_OPEN)
    # The lapsed trial's outcome no longer counts; the new trial's does.
    assert await guards.finish("trial", BREAKER, True) == Transition("svc", HALF_OPEN, HALF_OPEN)
    assert await guards.finish("second", BREAKER, False) == Transition("svc", HALF_OPEN, OPEN)


async def test_a_trial_lasts_through_its_verification(guards: GuardBackend, clock: Clock) -> None:
    await open_breaker(guards)
    clock.advance(300)
    trial = replace(attempt("trial", run_ttl=60), trial_ttl=900)  # steps, then a 10m wait
    assert (await guards.admit(trial)).allowed
    lease = await guards.acquire_lease("api", "trial", 60)
    assert lease is not None
    clock.advance(30)
    assert await guards.renew("trial", lease, 60) is not None  # renewing never shortens it
    clock.advance(570)  # the steps are long done; the trial is being verified
    verdict = await guards.admit(attempt("another-alert-same-target"))
    assert (verdict.guard, verdict.retry_after) == ("circuit_breaker", 300.0)
    clock.advance(300)
    assert (await guards.admit(attempt("next"))).allowed  # a trial never finished lapses


async def test_outcomes_of_other_runs_change_nothing_while_not_closed(
    guards: GuardBackend, clock: Clock
) -> None:
    assert (await guards.admit(attempt("early-1"))).allowed
    assert (await guards.admit(attempt("early-2"))).allowed
    await open_breaker(guards)
    assert await guards.finish("early-1", BREAKER, True) == Transition("svc", OPEN, OPEN)
    clock.advance(300)
    assert (await guards.admit(attempt("trial"))).allowed
    assert await guards.finish("early-2", BREAKER, False) == Transition("svc", HALF_OPEN, HALF_OPEN)
    assert (await guards.admit(attempt("blocked"))).guard == "circuit_breaker"


# Concurrency cap


async def test_a_run_done_with_its_steps_frees_its_slot_while_it_is_verified(
    guards: GuardBackend, clock: Clock
) -> None:
    def capped(run_id: str) -> Attempt:
        return attempt(run_id, max_concurrent=1, run_ttl=60)

    assert (await guards.admit(capped("first"))).allowed
    lease = await guards.acquire_lease("api", "first", 60)
    assert lease is not None
    assert (await guards.admit(capped("second"))).guard == "concurrency"
    await guards.release_lease(lease)  # its steps are done; it waits for its alert to resolve
    assert (await guards.admit(capped("second"))).allowed


async def test_concurrency_cap_and_slot_expiry(guards: GuardBackend, clock: Clock) -> None:
    def capped(run_id: str) -> Attempt:
        return attempt(run_id, max_concurrent=2, run_ttl=60)

    assert (await guards.admit(capped("r0"))).allowed
    clock.advance(10)
    assert (await guards.admit(capped("r1"))).allowed
    verdict = await guards.admit(capped("r2"))
    detail = "2 runs in flight, the cap is 2"
    assert verdict == Verdict(False, "concurrency", detail, 50.0, CLOSED)
    await guards.finish("r1", BREAKER, succeeded=True)
    assert (await guards.admit(capped("r2"))).allowed
    assert (await guards.admit(capped("r3"))).guard == "concurrency"
    clock.advance(50)  # r0's slot lapses unrenewed at 60
    assert (await guards.admit(capped("r3"))).allowed
    assert (await guards.snapshot([], [])).runs_in_flight == 2


# Leases


async def test_lease_is_exclusive_and_expires(guards: GuardBackend, clock: Clock) -> None:
    lease = await guards.acquire_lease("node-1", "run-a", 30)
    assert lease == Lease("node-1", "run-a", 1, T0 + 30)
    assert await guards.acquire_lease("node-1", "run-b", 30) is None
    assert await guards.acquire_lease("node-2", "run-b", 30) is not None  # another target
    assert await guards.holds(lease)
    clock.advance(30)
    assert not await guards.holds(lease)
    taken = await guards.acquire_lease("node-1", "run-b", 30)
    assert taken == Lease("node-1", "run-b", 2, T0 + 60)
    assert {held.target: held for held in (await guards.snapshot([], [])).leases} == {
        "node-1": taken
    }


async def test_renew_extends_lease_slot_and_trial(guards: GuardBackend, clock: Clock) -> None:
    await open_breaker(guards)
    clock.advance(300)
    assert (await guards.admit(attempt("trial", max_concurrent=1, run_ttl=60))).allowed
    lease = await guards.acquire_lease("node-1", "trial", 60)
    assert lease is not None
    clock.advance(50)
    renewed = await guards.renew("trial", lease, 60)
    assert renewed == Lease("node-1", "trial", lease.token, clock.now + 60)
    clock.advance(20)  # past the first deadline, inside the renewed one
    assert await guards.holds(lease)
    assert await guards.acquire_lease("node-1", "thief", 60) is None
    verdict = await guards.admit(attempt("other"))
    assert (verdict.guard, verdict.retry_after) == ("circuit_breaker", 40.0)  # trial extended
    assert (await guards.snapshot([], [])).runs_in_flight == 1  # the slot too
    clock.advance(40)
    assert await guards.renew("trial", lease, 60) is None  # lost: too late
    assert (await guards.admit(attempt("other"))).allowed


async def test_fencing_token_grows_across_holders(guards: GuardBackend, clock: Clock) -> None:
    first = await guards.acquire_lease("node-1", "run-a", 30)
    assert first is not None
    await guards.release_lease(first)
    second = await guards.acquire_lease("node-1", "run-b", 30)
    assert second is not None
    assert second.token > first.token
    await guards.release_lease(first)  # a stale holder cannot drop the new lease
    assert await guards.holds(second)
    assert not await guards.holds(first)
    clock.advance(30)  # expires unreleased: the counter survives
    third = await guards.acquire_lease("node-1", "run-c", 30)
    assert third is not None
    assert third.token > second.token
    assert not await guards.holds(second)
    assert await guards.renew("run-b", second, 30) is None


async def test_a_lease_is_its_token_and_its_owner(guards: GuardBackend) -> None:
    """After a flush the counter restarts: an old holder's token number may come round again."""
    current = await guards.acquire_lease("node-1", "run-new", 30)
    assert current is not None
    from_before_the_flush = Lease("node-1", "run-old", current.token, current.expires_at)
    assert not await guards.holds(from_before_the_flush)
    assert await guards.renew("run-old", from_before_the_flush, 30) is None
    await guards.release_lease(from_before_the_flush)
    assert await guards.holds(current)


# Seeding


async def test_admit_raises_unseeded_before_seed(unseeded: GuardBackend) -> None:
    with pytest.raises(Unseeded):
        await unseeded.admit(attempt("r0"))
    await unseeded.seed([])
    assert (await unseeded.admit(attempt("r0"))).allowed


async def test_seed_restores_spent_budgets_and_an_open_breaker(
    unseeded: GuardBackend, clock: Clock
) -> None:
    restart = limit("restart", (5, 3600.0))
    history = [
        PastRun("ancient", ("restart",), BREAKER, T0 - 4000, T0 - 3990, True),  # out of window
        *(
            PastRun(f"old{i}", ("restart",), BREAKER, T0 - 100 + 10 * i, T0 - 90 + 10 * i, False)
            for i in range(3)
        ),
    ]
    await unseeded.seed(history)
    # Once seeded, seeding again changes nothing (another replica may have been first).
    await unseeded.seed([PastRun("late", ("restart",), BREAKER, T0 - 10, T0 - 5, True)])
    snapshot = await unseeded.snapshot([restart], [BREAKER])
    assert snapshot.budgets["restart"][0].used == 3
    view = snapshot.breakers["svc"]
    assert (view.state, view.opened_at) == (OPEN, T0 - 70)
    verdict = await unseeded.admit(attempt("now", restart))
    assert (verdict.guard, verdict.retry_after) == ("circuit_breaker", 230.0)
    for run in ("a", "b"):
        assert (await unseeded.admit(attempt(run, restart, breaker=OTHER_BREAKER))).allowed
    verdict = await unseeded.admit(attempt("c", restart, breaker=OTHER_BREAKER))
    assert verdict.detail == "rate limit restart spent: 5/5 in 3600s"


async def test_seed_lapses_a_trial_the_store_never_saw_finish(
    unseeded: GuardBackend, clock: Clock
) -> None:
    failed = [PastRun(f"f{i}", (), BREAKER, T0 - 900, T0 - 800, False) for i in range(3)]
    trial = PastRun("trial", (), BREAKER, T0 - 400)  # still running, or lost with its replica
    await unseeded.seed([*failed, trial])
    assert await breaker_state(unseeded) is HALF_OPEN
    assert await unseeded.admit(attempt("next")) == Verdict(True, breaker=HALF_OPEN)
    assert await unseeded.finish("next", BREAKER, True) == Transition("svc", HALF_OPEN, CLOSED)


# Property: both backends and the reference model agree step by step

PROPERTY_BREAKERS = [BreakerSpec(f"b{k}", failures=2, window=15.0, cooldown=6.0) for k in range(2)]
GLOBAL = limit("global", (8, 30.0))
PER_KEY = [limit(f"k{k}", (3, 10.0), (6, 40.0)) for k in range(2)]

finish = st.tuples(
    st.just("finish"), st.integers(0, 7), st.sampled_from([False, False, True, True, None])
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("attempt"), st.integers(0, 1)),
        finish,
        finish,  # twice as likely: trials have to finish for their outcome to count
        # Binary fractions: window edges are hit exactly, with no rounding to disagree on.
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0])),
    ),
    min_size=20,
    max_size=60,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=steps)
async def test_backends_match_the_reference_model(
    redis_client: redis.asyncio.Redis, steps: list[tuple[Any, ...]]
) -> None:
    clock = Clock(T0)
    prefix = f"test:{uuid.uuid4().hex}:"
    memory = MemoryGuards(clock)
    in_redis = RedisGuards(redis_client, prefix, clock)
    model = ReferenceGuards()
    in_flight: list[tuple[str, BreakerSpec]] = []
    try:
        await memory.seed([])
        await in_redis.seed([])
        for number, step in enumerate(steps):
            if step[0] == "attempt":
                key = step[1]
                run = attempt(
                    f"run-{number}",
                    PER_KEY[key],
                    GLOBAL,
                    breaker=PROPERTY_BREAKERS[key],
                    max_concurrent=3,
                    run_ttl=8.0,
                )
                verdict = await memory.admit(run)
                assert await in_redis.admit(run) == verdict
                expected = model.admit(run, clock.now)
                assert (verdict.allowed, verdict.guard, verdict.breaker.value) == (
                    expected.allowed,
                    expected.guard,
                    expected.breaker,
                )
                event(f"verdict {verdict.guard or 'allowed'}, breaker {verdict.breaker}")
                if verdict.allowed:
                    in_flight.append((run.run_id, run.breaker))
            elif step[0] == "finish" and in_flight:
                run_id, spec = in_flight.pop(step[1] % len(in_flight))
                transition = await memory.finish(run_id, spec, step[2])
                assert await in_redis.finish(run_id, spec, step[2]) == transition
                before, after = model.finish(run_id, spec, step[2], clock.now)
                event(f"transition {before} -> {after}")
                assert (transition.before.value, transition.after.value) == (before, after)
            elif step[0] == "advance":
                clock.advance(step[1])
            snapshot = await memory.snapshot([*PER_KEY, GLOBAL], PROPERTY_BREAKERS)
            assert await in_redis.snapshot([*PER_KEY, GLOBAL], PROPERTY_BREAKERS) == snapshot
            for spec in PROPERTY_BREAKERS:
                view = snapshot.breakers[spec.key]
                assert view.state.value == model.breaker(spec.key).state
                assert view.recent_failures == model.recent_failures(spec, clock.now)
            for lim in [*PER_KEY, GLOBAL]:
                for budget in snapshot.budgets[lim.key]:
                    assert budget.used == model.used(lim.key, budget.window.per, clock.now)
            assert snapshot.runs_in_flight == model.in_flight(clock.now)
    finally:
        await delete_prefix(redis_client, prefix)


# Redis only: atomic across processes, and failing closed when Redis goes away

SHARED = limit("shared", (3, 3600.0))


def admit_many(url: str, prefix: str, barrier: Barrier, worker: int, count: int) -> int:
    """In a process of its own: connect, wait for the others, then admit `count` at once."""

    async def main() -> int:
        guards = await RedisGuards.connect(url, prefix)  # Redis' TIME: no fake clock here
        try:
            await guards.ping()  # connected before the start line
            barrier.wait(timeout=30)
            verdicts = await asyncio.gather(
                *(
                    guards.admit(attempt(f"w{worker}-{i}", SHARED, max_concurrent=10_000))
                    for i in range(count)
                )
            )
        finally:
            await guards.close()
        return sum(verdict.allowed for verdict in verdicts)

    return asyncio.run(main())


def _admit_many_into(queue: Any, *args: Any) -> None:
    queue.put(admit_many(*args))


async def test_one_limit_holds_across_processes(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    await RedisGuards(redis_client, redis_prefix).seed([])
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    workers = [
        context.Process(
            target=_admit_many_into, args=(results, REDIS_URL, redis_prefix, barrier, n, 50)
        )
        for n in range(4)
    ]
    for worker in workers:
        worker.start()
    try:
        allowed = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        results.close()
        results.join_thread()
    assert sum(allowed) == 3
    snapshot = await RedisGuards(redis_client, redis_prefix).snapshot([SHARED], [])
    assert snapshot.budgets["shared"][0].used == 3


async def test_redis_outage_fails_closed_then_needs_a_seed(redis_server: RedisServer) -> None:
    redis_server.start()
    guards = await RedisGuards.connect(f"redis://127.0.0.1:{redis_server.port}/0", "outage:")
    try:
        await answers(guards, redis_server)
        await guards.seed([])
        assert (await guards.admit(attempt("before", SHARED))).allowed

        redis_server.stop()
        with pytest.raises(GuardsUnavailable, match="unavailable"):
            await guards.admit(attempt("during", SHARED))
        with pytest.raises(GuardsUnavailable):
            await guards.ping()

        redis_server.start()  # same port, empty
        await answers(guards, redis_server)
        with pytest.raises(Unseeded):
            await guards.admit(attempt("after", SHARED))
        now = time.time()
        history = [PastRun(f"old{i}", ("shared",), BREAKER, now - 600 + i) for i in range(2)]
        await guards.seed(history)
        assert (await guards.snapshot([SHARED], [])).budgets["shared"][0].used == 2
        assert (await guards.admit(attempt("after", SHARED))).allowed
        assert (await guards.admit(attempt("one-too-many", SHARED))).guard == "rate_limit"
    finally:
        await guards.close()
