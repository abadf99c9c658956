"""kill -9 in the middle of a run: the next worker takes the event over once the lease lapses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.actions.base import Outcome, StepContext
from remediator.actions.kubernetes import KubernetesActions
from remediator.alerts import Notification
from remediator.engine.decide import decide
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Plan
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.notify.escalator import dedup_key
from remediator.policy.parameters import RolloutRestart
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.record import Decided
from remediator.remediation.run import Runner
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Store
from tests.support.clocks import Clock
from tests.support.cluster import Cluster
from tests.support.policies import SHIPPED_POLICIES, STAND_INS_ALLOWED
from tests.support.service_process import ServiceProcess, eventually
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import POLICY


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
    (policies / "guardrails.yaml").write_text(STAND_INS_ALLOWED)
    (policies / "probe-and-fix.yaml").write_text(POLICY)
    settings = {
        "database_url": database_url,
        "webhook_token": "s3cret",
        "mode": "live",
        "policies": str(policies),
        "lease_seconds": "3",
    }
    first = await ServiceProcess.start(tmp_path, **settings)
    labels = {"alertname": "AppDown", "app": "shop", "instance": hook[1]}
    body = webhook(webhook_alert(labels, fingerprint="fp-crash", starts_at="2027-01-15T08:00:00Z"))
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


RESTART = """\
name: restart-api
match:
  - alertname="ApiDown"
severity: P2
namespaces: ["{namespace}"]
target:
  kind: Deployment
  namespace: "{namespace}"
  name: api
steps:
  - action: kubernetes.rollout_restart
rate_limit:
  windows:
    - {{max: 3, per: 1h}}
"""


async def test_a_change_made_but_not_recorded_before_a_crash_is_not_made_again(
    tmp_path: Path, store: Store, cluster: Cluster, actions: KubernetesActions
) -> None:
    """The worst moment to die: after the API call, before the step's record."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "escalation.yaml").write_text((SHIPPED_POLICIES / "escalation.yaml").read_text())
    (policies / "restart-api.yaml").write_text(RESTART.format(namespace=cluster.namespace))
    await cluster.seed_deployment("api")
    clock = Clock()
    clock.now = time.time()  # the API server stamps restarts with the wall clock
    live = LivePolicies.load(policies, Metrics().policies)
    guards = Guards(
        MemoryGuards(clock),
        store,
        Metrics().guards,
        live=True,
        guardrails=lambda: live.current.guardrails,
        clock=clock,
    )
    runner = Runner(store, guards, live, actions.actions(), clock=clock)
    received = datetime.fromtimestamp(clock(), UTC)
    alert = webhook_alert(
        {"alertname": "ApiDown"}, fingerprint="fp-api", starts_at=received.isoformat()
    )
    body = webhook(alert)
    await store.record_notification(Notification.model_validate(body), b"{}", received)
    lease = datetime.fromtimestamp(clock() + 60, UTC)
    [event] = await store.claim_events("dead", received, lease, 10)
    # The dead worker recorded its run, restarted the Deployment, and died before recording
    # the step: the store says nothing of the restart; the Deployment does.
    record = await store.alert(event.fingerprint, event.starts_at)
    assert record is not None
    plan = decide(record.as_alert(event.kind), live.current, received)
    assert isinstance(plan, Plan)
    dead = await runner.record.note(event, record, RunOutcome.RUNNING, "dry-run", Decided.of(plan))
    restarted = await actions.rollout_restart(
        RolloutRestart(), StepContext(plan.target, False, dead.started_at)
    )
    assert restarted.outcome is Outcome.OK
    generation = (await cluster.deployment("api"))["metadata"]["generation"]

    clock.advance(61)  # its claim lapses: this worker takes the event over
    assert await Dispatcher(store, runner, clock=clock, worker="next").run_once() == 1
    interrupted, taken_over = reversed(await store.list_remediations(10))
    assert interrupted.outcome == "interrupted"
    [step] = await store.steps(taken_over.id)
    assert step.outcome == "skipped"
    assert "already restarted by this run" in step.message
    assert (await cluster.deployment("api"))["metadata"]["generation"] == generation


async def test_an_outcome_recorded_but_not_told_before_a_crash_is_told_by_the_next_worker(
    store: Store,
) -> None:
    """Another bad moment: after the run's end is recorded, before its messages are queued."""
    clock = Clock()
    clock.now = time.time()
    live = LivePolicies.load(SHIPPED_POLICIES, Metrics().policies)
    guards = Guards(
        MemoryGuards(clock),
        store,
        Metrics().guards,
        live=False,
        guardrails=lambda: live.current.guardrails,
        clock=clock,
    )
    runner = Runner(store, guards, live, {}, clock=clock)
    received = datetime.fromtimestamp(clock(), UTC)
    labels = {
        "alertname": "HighMemoryUsage",
        "namespace": "claude-deployment-prod",
        "deployment": "api",
        "pod": "api-0",
        "severity": "warning",
    }
    body = webhook(webhook_alert(labels, fingerprint="fp-1", starts_at=received.isoformat()))
    await store.record_notification(Notification.model_validate(body), b"{}", received)
    lease = datetime.fromtimestamp(clock() + 90, UTC)
    [event] = await store.claim_events("dead", received, lease, 10)
    record = await store.alert(event.fingerprint, event.starts_at)
    assert record is not None
    plan = decide(record.as_alert(event.kind), live.current, received)
    assert isinstance(plan, Plan)
    dead = await runner.record.note(event, record, RunOutcome.RUNNING, "dry-run", Decided.of(plan))
    await store.save_remediation(replace(dead, outcome="dry_run", finished_at=received))

    clock.advance(91)  # its claim lapses: this worker finds the event handled, and untold
    assert await Dispatcher(store, runner, clock=clock, worker="next").run_once() == 1
    assert [r.outcome for r in await store.list_remediations(10)] == ["dry_run"]
    told = await store.outbox_for(dedup_key(dead))
    assert {entry.remediation_id for entry in told} == {dead.id}
    channels = [entry.channel for entry in told if entry.action == "trigger"]
    assert len(channels) == len(set(channels)) > 0  # each channel told once
