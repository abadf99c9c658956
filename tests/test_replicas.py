"""Correctness with N replicas (issue 7), for real on this machine: three `remediator serve`
processes share one Postgres schema and one Redis; two Alertmanagers, clustered on loopback,
each deliver every notification to all three. Each alert state is remediated exactly once and
none is lost; then a replica killed -9 in the middle of a run is taken over by another once its
lease lapses, without repeating the change the dead run completed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
import redis.exceptions
from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.alerts import AlertStatus
from remediator.store import Remediation, Store, open_store
from tests.support.alertmanager import post_to_alertmanager, running_alertmanager
from tests.support.alertmanager_cluster import (
    ALERTMANAGER_CONFIG,
    WEBHOOK,
    clustered,
    webhooks_sent,
)
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, RESTARTED_AT, FakeKubernetes
from tests.support.policies import SHIPPED_POLICIES, shipped_guardrails
from tests.support.service_process import ServiceProcess, eventually
from tests.support.services import free_port, missing_service

REDIS_URL = "redis://127.0.0.1:6379/11"  # a database of this test's own, flushed around it
TOKEN = "s3cret"
LEASE_SECONDS = 3
DEPLOYMENTS = ["cart", "catalog", "checkout", "payments", "search"]
CRASHED = "orders"  # the deployment whose run loses its worker


@pytest.fixture
async def redis_db() -> AsyncIterator[str]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        await client.ping()
    except (OSError, redis.exceptions.RedisError) as exc:
        await client.aclose()
        missing_service(f"Redis at {REDIS_URL} ({exc})", "start `redis-server` on 127.0.0.1:6379")
    await client.flushdb()
    try:
        yield REDIS_URL
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def kubernetes() -> AsyncIterator[FakeKubernetes]:
    fake = FakeKubernetes()
    await fake.start(free_port())
    for name in [*DEPLOYMENTS, CRASHED]:
        fake.seed_deployment(NAMESPACE, name, replicas=3, ready=0)
    yield fake
    await fake.close()


@pytest.fixture
async def applications(kubernetes: FakeKubernetes) -> AsyncIterator[dict[str, str]]:
    """Each deployment's health endpoint (its alerts' `instance`): down until the deployment
    has been restarted and its rollout has finished with every replica ready."""

    def app(name: str) -> web.Application:
        async def health(_: web.Request) -> web.Response:
            deployment = kubernetes.get("Deployment", NAMESPACE, name) or {}
            annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
            ready = deployment["status"].get("readyReplicas", 0) >= deployment["spec"]["replicas"]
            return web.Response(status=200 if RESTARTED_AT in annotations and ready else 503)

        application = web.Application()
        application.router.add_get("/health", health)
        return application

    async with contextlib.AsyncExitStack() as stack:
        instances = {}
        for name in [*DEPLOYMENTS, CRASHED]:
            server = await stack.enter_async_context(TestServer(app(name)))
            instances[name] = f"127.0.0.1:{server.port}"
        yield instances


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """The shipped policies. The concurrency cap is raised above the number of alerts: a run's
    slot outlives its steps by up to a lease, so a burst of five alerts would meet the default
    cap of 3 although the replicas only ever run three at once; the cap is not under test. Nor
    is the blast radius: five deployments down at once would be a shared cause to it."""
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, directory)
    guardrails = directory / "guardrails.yaml"
    guardrails.write_text(shipped_guardrails("{max_concurrent_runs: 10, max_targets: null}"))
    policy = directory / "application-down.yaml"
    bound = "max_targets: {count: 2, per: 10m}"
    assert bound in policy.read_text()
    policy.write_text(policy.read_text().replace(bound, "max_targets: {count: 10, per: 10m}"))
    return directory


@pytest.fixture
async def services(
    tmp_path: Path,
    postgres_dsn: str,
    redis_db: str,
    kubernetes: FakeKubernetes,
    policies: Path,
) -> AsyncIterator[list[ServiceProcess]]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=kubernetes.url))
    settings = {
        "database_url": postgres_dsn,
        "redis_url": redis_db,
        "webhook_token": TOKEN,
        "mode": "live",
        "kubeconfig": str(kubeconfig),
        "policies": str(policies),
        "lease_seconds": str(LEASE_SECONDS),
    }
    # Started together: their migrations race for the advisory lock, as replicas' do.
    started = await asyncio.gather(
        *(ServiceProcess.start(tmp_path, **settings) for _ in range(3)), return_exceptions=True
    )
    running = [s for s in started if isinstance(s, ServiceProcess)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield running
    finally:
        codes = [s.stop() for s in running if s.process.poll() is None]
        assert codes == [0] * len(codes), codes


@pytest.fixture
def alertmanagers(
    alertmanager_binary: str, services: list[ServiceProcess], tmp_path: Path
) -> Iterator[list[str]]:
    """Two Alertmanagers gossiping with each other on loopback, each with every replica as a
    webhook of its one receiver."""
    webhooks = "".join(WEBHOOK.format(url=s.url, token=TOKEN) for s in services)
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(webhooks=webhooks))
    cluster_ports = [free_port(), free_port()]
    with contextlib.ExitStack() as peers:  # stopped one after the other, as they leave the mesh
        urls = []
        for i in range(2):
            own, other = cluster_ports[i], cluster_ports[1 - i]
            cluster_flags = [
                f"--cluster.listen-address=127.0.0.1:{own}",
                f"--cluster.advertise-address=127.0.0.1:{own}",
                f"--cluster.peer=127.0.0.1:{other}",
                # Quick to settle and to notify: the second peer waits peer-timeout before
                # sending what the first has not (by the gossiped notification log) sent.
                "--cluster.settle-timeout=2s",
                "--cluster.gossip-interval=100ms",
                "--cluster.pushpull-interval=2s",
                "--cluster.peer-timeout=1s",
                "--cluster.reconnect-interval=1s",
                "--cluster.reconnect-timeout=1m",
            ]
            started = running_alertmanager(
                alertmanager_binary,
                config,
                tmp_path,
                name=f"alertmanager-{i}",
                cluster_flags=cluster_flags,
            )
            urls.append(peers.enter_context(started))
        yield urls


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[Store]:
    opened = await open_store(postgres_dsn)
    yield opened
    await opened.close()


def application_down(name: str, instance: str) -> dict[str, str]:
    return {
        "alertname": "ApplicationDown",
        "namespace": NAMESPACE,
        "deployment": name,
        "instance": instance,
        "severity": "critical",
    }


def patches_of(kubernetes: FakeKubernetes, name: str) -> int:
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"
    return sum(1 for method, at, _ in kubernetes.writes if method == "PATCH" and at == path)


def restarts_of(kubernetes: FakeKubernetes, name: str) -> int:
    """Restarts that took effect: each changed the pod template, so made a new ReplicaSet."""
    return len(kubernetes.replica_sets_of(NAMESPACE, name)) - 1


async def firing_runs(store: Store) -> list[Remediation]:
    return [r for r in reversed(await store.list_remediations(100)) if r.kind == "firing"]


async def worker_of(dsn: str, event_id: int) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        claimed: str = await connection.fetchval(
            "SELECT claimed_by FROM alert_events WHERE id = $1", event_id
        )
    finally:
        await connection.close()
    return claimed


async def until(store: Store, condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """`eventually`, saying on failure which runs there were."""
    try:
        await eventually(condition, what=what)
    except AssertionError as exc:
        runs = [(r.target, r.kind, r.outcome, r.reason) for r in await store.list_remediations(99)]
        raise AssertionError(f"{exc}; runs: {runs}") from None


@dataclass
class Replicas:
    """Everything the test drives and inspects."""

    services: list[ServiceProcess]
    alertmanagers: list[str]
    store: Store
    kubernetes: FakeKubernetes
    applications: dict[str, str]
    dsn: str

    async def post(self, names: list[str], starts_at: datetime, ends_at: datetime) -> None:
        """The alerts of these deployments, to both Alertmanagers."""
        labels = [application_down(name, self.applications[name]) for name in names]
        await asyncio.gather(
            *(post_to_alertmanager(url, ends_at, labels, starts_at) for url in self.alertmanagers)
        )

    async def runs_of(self, name: str) -> list[Remediation]:
        return [r for r in await firing_runs(self.store) if r.target == target_of(name)]

    def effects_on(self, name: str) -> tuple[int, int]:
        return patches_of(self.kubernetes, name), restarts_of(self.kubernetes, name)


def target_of(name: str) -> str:
    return f"Deployment/{NAMESPACE}/{name}"


async def test_replicas_remediate_each_alert_state_once_and_take_over_a_dead_one_s_run(
    services: list[ServiceProcess],
    alertmanagers: list[str],
    store: Store,
    kubernetes: FakeKubernetes,
    applications: dict[str, str],
    postgres_dsn: str,
) -> None:
    await clustered(alertmanagers)
    replicas = Replicas(services, alertmanagers, store, kubernetes, applications, postgres_dsn)
    starts_at = datetime.now(UTC).replace(microsecond=0)
    await each_alert_is_remediated_once(replicas, starts_at)
    await each_alert_is_resolved_once(replicas, starts_at)
    await a_dead_replica_s_run_is_taken_over(replicas)


async def each_alert_is_remediated_once(replicas: Replicas, starts_at: datetime) -> None:
    """Five alerts, each delivered by both Alertmanagers to all three replicas, repeatedly."""
    store = replicas.store
    await replicas.post(DEPLOYMENTS, starts_at, starts_at + timedelta(hours=1))

    async def every_run_verifying() -> bool:
        runs = await firing_runs(store)
        return len(runs) >= len(DEPLOYMENTS) and all(r.outcome == "verifying" for r in runs)

    async def delivered_repeatedly() -> bool:  # to each replica, by each peer, and repeats
        records = await store.recent_alerts(50)
        return len(records) == len(DEPLOYMENTS) and all(r.deliveries >= 6 for r in records)

    await until(store, every_run_verifying, "a run per alert, verifying")
    await until(store, delivered_repeatedly, "repeated deliveries of every alert")
    sent = [await webhooks_sent(url) for url in replicas.alertmanagers]
    assert all(count > 0 for count in sent), f"webhooks sent per Alertmanager: {sent}"

    records = await store.recent_alerts(50)
    assert sorted(r.labels["deployment"] for r in records) == DEPLOYMENTS  # none lost
    assert {r.status for r in records} == {AlertStatus.FIRING}
    events = await store.all_events(100)
    assert sorted(e.kind for e in events) == [AlertStatus.FIRING] * len(DEPLOYMENTS)
    assert {e.fingerprint for e in events} == {r.fingerprint for r in records}
    runs = await firing_runs(store)
    assert sorted(r.fingerprint for r in runs) == sorted(r.fingerprint for r in records)
    for run in runs:
        steps = {step.action: step.outcome for step in await store.steps(run.id)}
        assert steps["kubernetes.rollout_restart"] == "ok", (run.target, steps)
    assert {name: replicas.effects_on(name) for name in DEPLOYMENTS} == dict.fromkeys(
        DEPLOYMENTS, (1, 1)
    )


async def each_alert_is_resolved_once(replicas: Replicas, starts_at: datetime) -> None:
    store = replicas.store
    await replicas.post(DEPLOYMENTS, starts_at, datetime.now(UTC) - timedelta(seconds=1))

    async def every_run_succeeded() -> bool:
        runs = await firing_runs(store)
        return len(runs) >= len(DEPLOYMENTS) and all(r.outcome == "succeeded" for r in runs)

    await until(store, every_run_succeeded, "every run to succeed on its alert's resolution")
    records = await store.recent_alerts(50)
    assert {r.status for r in records} == {AlertStatus.RESOLVED}
    events = await store.all_events(100)
    resolved = sorted(e.fingerprint for e in events if e.kind is AlertStatus.RESOLVED)
    assert resolved == sorted(r.fingerprint for r in records)  # exactly one resolution each
    assert len(events) == 2 * len(DEPLOYMENTS)
    everything = await store.list_remediations(100)
    assert [r.outcome for r in everything] == ["succeeded"] * len(DEPLOYMENTS)  # still once
    assert {name: replicas.effects_on(name) for name in DEPLOYMENTS} == dict.fromkeys(
        DEPLOYMENTS, (1, 1)
    )


async def a_dead_replica_s_run_is_taken_over(replicas: Replicas) -> None:
    """kill -9 of the replica running a run, while its rollout wait polls the Kubernetes API
    for a rollout that does not finish; its restart is done and recorded."""
    store, kubernetes = replicas.store, replicas.kubernetes
    kubernetes.hold_rollouts = True
    starts_at = datetime.now(UTC).replace(microsecond=0)
    await replicas.post([CRASHED], starts_at, starts_at + timedelta(hours=1))
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{CRASHED}"

    async def waiting_for_the_rollout() -> bool:  # restarted, and reading the Deployment since
        requests = [(method, at) for method, at, _ in kubernetes.requests]
        patched = [i for i, request in enumerate(requests) if request == ("PATCH", path)]
        return len(patched) == 1 and ("GET", path) in requests[patched[0] :]

    await until(store, waiting_for_the_rollout, "the run to wait for its rollout")
    [first] = await replicas.runs_of(CRASHED)
    assert first.outcome == "running"
    assert [(s.action, s.outcome) for s in await store.steps(first.id)] == [
        ("http.check", "failed"),
        ("kubernetes.diagnose", "ok"),
        ("kubernetes.rollout_restart", "ok"),  # completed and recorded before the crash
    ]
    host, pid = (await worker_of(replicas.dsn, first.event_id)).rsplit(":", 1)
    assert host == socket.gethostname()
    [victim] = [s for s in replicas.services if s.process.pid == int(pid)]
    victim.kill()

    async def taken_over() -> bool:  # the new run is past the step the dead one completed
        runs = await replicas.runs_of(CRASHED)
        blocked = [r for r in runs if r.outcome == "blocked"]
        assert not blocked, f"the successor did not take the run over: {blocked[0].reason}"
        if [r.outcome for r in runs] != ["interrupted", "running"]:
            return False
        return "kubernetes.rollout_restart" in [s.action for s in await store.steps(runs[1].id)]

    await until(store, taken_over, "another replica to take the run over")
    _, successor = (await worker_of(replicas.dsn, first.event_id)).rsplit(":", 1)
    assert int(successor) in {s.process.pid for s in replicas.services if s is not victim}
    kubernetes.hold_rollouts = False  # the rollout finishes now, as the new run waits for it
    kubernetes.converge(NAMESPACE, CRASHED)

    async def verifying() -> bool:
        return [r.outcome for r in await replicas.runs_of(CRASHED)] == ["interrupted", "verifying"]

    await until(store, verifying, "the new run to reach its verification")
    interrupted, second = await replicas.runs_of(CRASHED)
    assert (interrupted.id, second.event_id) == (first.id, first.event_id)
    steps = await store.steps(second.id)
    assert [(s.action, s.outcome) for s in steps] == [
        ("http.check", "failed"),  # still down: the rollout had not finished
        ("kubernetes.diagnose", "ok"),
        ("kubernetes.rollout_restart", "ok"),
        ("kubernetes.rollout_status", "ok"),
        ("http.check", "ok"),
        ("kubernetes.rollout_undo", "skipped"),
    ]
    assert steps[2].message.startswith("done by the interrupted run"), steps[2].message
    assert replicas.effects_on(CRASHED) == (1, 1)  # restarted once, by the dead replica
    [event] = [e for e in await store.all_events(100) if e.id == first.event_id]
    assert event.attempts == 2  # claimed by the dead replica, then by its successor

    await replicas.post([CRASHED], starts_at, datetime.now(UTC) - timedelta(seconds=1))

    async def succeeded() -> bool:
        return [r.outcome for r in await replicas.runs_of(CRASHED)] == ["interrupted", "succeeded"]

    await until(store, succeeded, "the new run to succeed on the alert's resolution")
    assert replicas.effects_on(CRASHED) == (1, 1)
    assert len(await firing_runs(store)) == len(DEPLOYMENTS) + 2
