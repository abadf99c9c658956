"""Redis goes away and comes back empty: remediation fails closed, intake goes on, budgets hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from remediator.guards.guards import Admitted, Blocked, Guards
from remediator.guards.redis import RedisGuards
from remediator.metrics import Metrics
from remediator.policy.policyset import PolicySet
from remediator.store import Store
from tests.support.builders import memory_plan
from tests.support.redis_server import RedisServer, answers
from tests.support.samples import sample
from tests.support.service_process import ServiceProcess, eventually


async def test_guards_fail_closed_then_reseed_from_the_store(
    redis_server: RedisServer, store: Store, shipped: PolicySet
) -> None:
    redis_server.start()
    backend = await RedisGuards.connect(f"redis://127.0.0.1:{redis_server.port}/0", "outage:")
    guards = Guards(
        backend, store, Metrics().guards, live=True, guardrails=lambda: shipped.guardrails
    )
    plan = memory_plan(shipped)
    try:
        await answers(backend, redis_server)
        first = await guards.admit(plan)  # seeds the empty Redis from the store, then admits
        assert isinstance(first, Admitted)
        await guards.finish(plan, first, succeeded=True)

        redis_server.stop()
        during = await guards.admit(plan)
        assert isinstance(during, Blocked)
        assert during.guard == "guards_unavailable"
        assert "failing closed" in during.reason

        redis_server.start()  # the same port, empty: budgets must not be full again
        await answers(backend, redis_server)
        second = await guards.admit(plan)
        assert isinstance(second, Admitted)
        await guards.finish(plan, second, succeeded=True)
        third = await guards.admit(plan)
        assert isinstance(third, Blocked)
        assert third.guard == "rate_limit"  # 2 an hour: the run from before the outage counts
    finally:
        await backend.close()


async def test_the_service_keeps_taking_alerts_and_health_tells(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.start()
    service = await ServiceProcess.start(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def health() -> dict[str, Any]:
                async with session.get(f"{service.url}/health", headers=service.operator) as answer:
                    assert answer.status == 200  # never 503 for Redis: intake goes on
                    body: dict[str, Any] = await answer.json()
                    return body

            async def redis_is(status: str) -> bool:
                return bool((await health())["checks"]["redis"]["status"] == status)

            await eventually(lambda: redis_is("ok"), what="the redis check to pass")
            redis_server.stop()
            await eventually(lambda: redis_is("unhealthy"), what="the redis check to fail")
            during = await health()
            assert "remediation is blocked" in during["checks"]["redis"]["detail"]
            assert during["status"] == "degraded"  # the service as a whole is not unhealthy
            body = sample("application-down.firing.json")
            async with session.post(f"{service.url}/api/v1/alerts", json=body) as answer:
                assert answer.status == 200
            redis_server.start()
            await eventually(lambda: redis_is("ok"), what="the redis check to recover")
    finally:
        assert service.stop() == 0
