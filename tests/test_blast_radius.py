"""The blast radius (`max_targets`) through the guards, over a real store, on both backends:
past its bound of distinct targets changed in a window, a run is held back with a reason a
person reads as "probable shared cause", every such block of one window is one incident, and
replicas sharing Redis never let more targets through than the bound, however many ask at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio
import redis.exceptions

from remediator.engine.plan import Plan
from remediator.guards.base import GuardBackend
from remediator.guards.guards import Admitted, Blocked, Guards
from remediator.guards.memory import MemoryGuards
from remediator.guards.redis import RedisGuards
from remediator.metrics import Metrics
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import Guardrails
from remediator.store import Store
from tests.support.builders import application_down_plan
from tests.support.clocks import Clock
from tests.support.services import missing_service

REDIS_URL = os.environ.get("REMEDIATOR_TEST_REDIS", "redis://127.0.0.1:6379/0")
NS = "claude-deployment-prod"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def redis_pair() -> AsyncIterator[tuple[str, list[redis.asyncio.Redis]]]:
    """Two replicas' clients of the local Redis and a key prefix of this test's own, deleted
    afterwards."""
    clients = [redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True) for _ in range(2)]
    try:
        await clients[0].ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        for client in clients:
            await client.aclose()
        missing_service(f"Redis at {REDIS_URL} ({exc})", "start `redis-server` on 127.0.0.1:6379")
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix, clients
    keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
    if keys:
        await clients[0].delete(*keys)
    for client in clients:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def backends(request: pytest.FixtureRequest, clock: Clock) -> list[GuardBackend]:
    """Two replicas' backends: one process's own (memory, so one backend), or one Redis."""
    if request.param == "memory":
        return [MemoryGuards(clock)]
    prefix, clients = request.getfixturevalue("redis_pair")
    return [RedisGuards(client, prefix, clock) for client in clients]


def guards_on(
    backend: GuardBackend, store: Store, clock: Clock, shipped: PolicySet, **rails: object
) -> Guards:
    guardrails = Guardrails.model_validate(
        shipped.guardrails.model_dump(mode="json") | {"max_concurrent_runs": 50} | rails
    )
    return Guards(
        backend, store, Metrics().guards, live=True, guardrails=lambda: guardrails, clock=clock
    )


def down(shipped: PolicySet, *deployments: str) -> list[Plan]:
    return [application_down_plan(shipped, name) for name in deployments]


async def test_the_third_deployment_down_is_held_as_a_probable_shared_cause(
    backends: list[GuardBackend], store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = guards_on(backends[0], store, clock, shipped)
    users, orders, payments, search = down(
        shipped, "users-api", "orders-api", "payments-api", "search"
    )
    first = await guards.admit(users)
    assert isinstance(first, Admitted)
    await guards.finish(users, first, succeeded=False)
    clock.advance(30)
    assert isinstance(await guards.admit(orders), Admitted)
    clock.advance(30)
    held = await guards.admit(payments)
    assert held == Blocked(
        "blast_radius",
        "probable shared cause: 3 targets of application-down changed or asked within 1m"
        f" (bound 2 per 10m): {NS}/users-api, {NS}/orders-api; not changing a third"
        f" ({NS}/payments-api)",
        retry_after=540.0,
        incident="remediator/application-down/blast-radius/20270115T080000Z",
    )
    clock.advance(60)
    later = await guards.admit(search)
    assert isinstance(later, Blocked)
    assert later.incident == held.incident  # one cause, one incident
    assert later.reason.startswith("probable shared cause: 3 targets of application-down")
    assert "within 2m" in later.reason
    # The shipped policy only reads when its steps that change are left out: never held.
    reads = dataclasses.replace(payments, steps=tuple(s for s in payments.steps if not s.mutating))
    assert isinstance(await guards.admit(reads), Admitted)
    # users-api again (its first run is over): already changed in the window, not counted.
    assert isinstance(await guards.admit(users), Admitted)
    # The operator API's view, from any replica.
    snapshot = await guards_on(backends[-1], store, clock, shipped).snapshot(shipped)
    view = snapshot.reaches["application-down"]
    assert [target for target, _ in view.changed] == [
        f"Deployment/{NS}/orders-api",
        f"Deployment/{NS}/users-api",
    ]
    assert snapshot.reaches["(all policies)"].remaining == 3


async def test_the_guard_rails_bound_all_policies_together(
    backends: list[GuardBackend], store: Store, clock: Clock, shipped: PolicySet
) -> None:
    guards = guards_on(backends[0], store, clock, shipped, max_targets={"count": 1, "per": "1h"})
    users, orders = down(shipped, "users-api", "orders-api")
    assert isinstance(await guards.admit(users), Admitted)
    held = await guards.admit(orders)
    assert isinstance(held, Blocked)
    assert held.reason.startswith("probable shared cause: 2 targets of all policies changed")
    assert held.incident == "remediator/blast-radius/20270115T080000Z"


async def test_replicas_asking_at_once_let_exactly_the_bound_through(
    redis_pair: tuple[str, list[redis.asyncio.Redis]],
    store: Store,
    clock: Clock,
    shipped: PolicySet,
) -> None:
    prefix, clients = redis_pair
    replicas = [
        guards_on(RedisGuards(client, prefix, clock), store, clock, shipped) for client in clients
    ]
    plans = down(shipped, *(f"service-{i}" for i in range(8)))
    answers = await asyncio.gather(*(replicas[i % 2].admit(plan) for i, plan in enumerate(plans)))
    admitted = [a for a in answers if isinstance(a, Admitted)]
    assert len(admitted) == 2
    assert sorted(a.guard for a in answers if isinstance(a, Blocked)) == ["blast_radius"] * 6
    runs = await store.runs_since(datetime.fromtimestamp(0, UTC))
    assert len(runs) == 2
    assert {run.reach_keys for run in runs} == {("application-down", "(all policies)")}
