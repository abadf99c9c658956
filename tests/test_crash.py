"""kill -9 in the middle of a run: the next worker takes the event over once the lease lapses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.store import Store
from tests.conftest import SHIPPED_POLICIES
from tests.service_process import ServiceProcess, eventually
from tests.test_runs import POLICY


@dataclass
class Hook:
    """The application's fix hook: hangs while `hang` is set, so a run stops in mid-step."""

    hang: bool = True
    calls: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def health(_: web.Request) -> web.Response:
            return web.Response(status=503)

        async def fix(_: web.Request) -> web.Response:
            self.calls += 1
            if self.hang:
                await self.released.wait()
            return web.json_response({})

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_put("/admin/{hook}", fix)
        return app


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    hook = Hook()
    async with TestServer(hook.app()) as server:
        yield hook, f"127.0.0.1:{server.port}"
        hook.released.set()


async def test_a_killed_worker_s_run_is_interrupted_and_taken_over(
    tmp_path: Path, database_url: str, store: Store, hook: tuple[Hook, str]
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "escalation.yaml").write_text((SHIPPED_POLICIES / "escalation.yaml").read_text())
    (policies / "probe-and-fix.yaml").write_text(POLICY)
    settings = {
        "database_url": database_url,
        "webhook_token": "s3cret",
        "mode": "live",
        "policies": str(policies),
        "lease_seconds": "3",
    }
    first = await ServiceProcess.start(tmp_path, **settings)
    alert = {
        "status": "firing",
        "labels": {"alertname": "AppDown", "app": "shop", "instance": hook[1]},
        "annotations": {},
        "startsAt": "2027-01-15T08:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "fp-crash",
    }
    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": [alert],
    }
    try:
        headers = {"Authorization": "Bearer s3cret"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(f"{first.url}/api/v1/alerts", json=body) as answer,
        ):
            assert answer.status == 200

        async def hanging_in_the_fix() -> bool:
            return hook[0].calls == 1

        await eventually(hanging_in_the_fix, what="the run to reach its fix step")
    finally:
        first.kill()
    [running] = await store.list_remediations(10)
    assert running.outcome == "running"

    hook[0].hang = False
    second = await ServiceProcess.start(tmp_path, **settings)
    try:

        async def taken_over() -> bool:
            return {r.outcome for r in await store.list_remediations(10)} == {
                "interrupted",
                "verifying",
            }

        await eventually(taken_over, what="another worker to take the run over", timeout=60)
    finally:
        assert second.stop() == 0
    runs = {r.outcome: r for r in await store.list_remediations(10)}
    assert runs["interrupted"].id == running.id
    steps = await store.steps(runs["verifying"].id)
    assert [(step.action, step.outcome) for step in steps] == [
        ("http.check", "failed"),
        ("http.request", "ok"),  # the killed worker's fix never completed: made once, now
    ]
    assert hook[0].calls == 2
