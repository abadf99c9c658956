"""From Alertmanager to a fix, as in production: the real Alertmanager posts, the service runs
the shipped policies in live mode against the fake Kubernetes API, and the alert's resolution
ends the run."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.notify.escalator import dedup_key
from remediator.store import Remediation, Store
from tests.support.alertmanager import post_to_alertmanager
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, RESTARTED_AT, FakeKubernetes
from tests.support.policies import SHIPPED_POLICIES, shipped_guardrails
from tests.support.service_process import ServiceProcess, eventually
from tests.support.services import free_port


@pytest.fixture
async def kubernetes() -> AsyncIterator[FakeKubernetes]:
    fake = FakeKubernetes()
    await fake.start(free_port())
    yield fake
    await fake.close()


@pytest.fixture
async def application(kubernetes: FakeKubernetes) -> AsyncIterator[str]:
    """The application's health endpoint: down until its deployment has been restarted."""

    async def health(_: web.Request) -> web.Response:
        deployment = kubernetes.get("Deployment", NAMESPACE, "api")
        annotations = (deployment or {})["spec"]["template"]["metadata"].get("annotations", {})
        return web.Response(status=200 if RESTARTED_AT in annotations else 503)

    app = web.Application()
    app.router.add_get("/health", health)
    async with TestServer(app) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """The shipped policies, with room in their rate limits for several episodes."""
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, directory)
    (directory / "guardrails.yaml").write_text(shipped_guardrails(""))  # and the stand-ins
    for name, limit in [
        ("application-down", "{max: 2, per: 1h}"),
        ("high-error-rate", "{max: 1, per: 1h}"),
    ]:
        path = directory / f"{name}.yaml"
        path.write_text(path.read_text().replace(limit, "{max: 10, per: 1h}"))
    return directory


@pytest.fixture
async def service(
    tmp_path: Path, database_url: str, kubernetes: FakeKubernetes, policies: Path
) -> AsyncIterator[ServiceProcess]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=kubernetes.url))
    started = await ServiceProcess.start(
        tmp_path,
        database_url=database_url,
        webhook_token="s3cret",
        mode="live",
        kubeconfig=str(kubeconfig),
        policies=str(policies),
    )
    yield started
    assert started.stop() == 0


def application_down(instance: str) -> dict[str, str]:
    return {
        "alertname": "ApplicationDown",
        "namespace": NAMESPACE,
        "deployment": "api",
        "instance": instance,
        "severity": "critical",
    }


async def runs_until(store: Store, outcomes: list[str], *, kind: str = "firing") -> list[Any]:
    async def reached() -> bool:
        runs = [r for r in await store.list_remediations(50) if r.kind == kind]
        return sorted(r.outcome for r in runs) == sorted(outcomes)

    try:
        await eventually(reached, what=f"{kind} runs ending {outcomes}", timeout=60)
    except AssertionError as exc:
        seen = [(r.kind, r.outcome, r.reason) for r in await store.list_remediations(50)]
        alerts = [(a.starts_at, a.status.value) for a in await store.recent_alerts(10)]
        raise AssertionError(f"{exc}; runs: {seen}; alerts: {alerts}") from None
    return list(reversed([r for r in await store.list_remediations(50) if r.kind == kind]))


async def test_application_down_is_restarted_once_then_resolved(
    alertmanager: str,
    service: ServiceProcess,
    store: Store,
    kubernetes: FakeKubernetes,
    application: str,
) -> None:
    kubernetes.seed_deployment(NAMESPACE, "api", replicas=3, ready=0)
    alert = [application_down(application)]
    await post_to_alertmanager(alertmanager, datetime.now(UTC) + timedelta(hours=1), alert)
    [run] = await runs_until(store, ["verifying"])
    steps = await store.steps(run.id)
    assert [(step.action, step.outcome) for step in steps] == [
        ("http.check", "failed"),
        ("kubernetes.diagnose", "ok"),
        ("kubernetes.rollout_restart", "ok"),
        ("kubernetes.rollout_status", "ok"),
        ("http.check", "ok"),
        ("kubernetes.rollout_undo", "skipped"),
    ]
    patches = [w for w in kubernetes.writes if w[0] == "PATCH"]
    assert len(patches) == 1
    # The P1 page, updated with the outcome, carries what diagnose read before the restart.
    pages = [e for e in await store.outbox_for(dedup_key(run)) if e.channel == "pagerduty"]
    seen = pages[-1].message["diagnostics"]["diagnose"]
    assert seen["rollout"]["ready_replicas"] == 0
    assert len(seen["pods"]) == 3

    async def repeated() -> bool:  # Alertmanager repeats the alert every 2 s
        records = await store.recent_alerts(10)
        return bool(records) and records[0].deliveries >= 3

    await eventually(repeated, what="Alertmanager to repeat the alert")
    await post_to_alertmanager(alertmanager, datetime.now(UTC) - timedelta(seconds=1), alert)
    [done] = await runs_until(store, ["succeeded"])
    assert done.id == run.id
    assert done.policy_revision is None  # the policies here are no git checkout
    assert len([w for w in kubernetes.writes if w[0] == "PATCH"]) == 1  # restarted once


async def test_a_high_error_rate_after_a_recent_rollout_rolls_it_back(
    alertmanager: str, service: ServiceProcess, store: Store, kubernetes: FakeKubernetes
) -> None:
    kubernetes.seed_deployment(NAMESPACE, "api", revisions=2, changed_ago=timedelta(minutes=10))
    labels = {
        "alertname": "HighErrorRate",
        "namespace": NAMESPACE,
        "deployment": "api",
        "severity": "high",
    }
    await post_to_alertmanager(alertmanager, datetime.now(UTC) + timedelta(hours=1), [labels])
    [run] = await runs_until(store, ["verifying"])
    steps = {step.action: step.outcome for step in await store.steps(run.id)}
    assert steps == {
        "kubernetes.diagnose": "ok",
        "kubernetes.rollout_status": "ok",
        "kubernetes.rollout_undo": "ok",
        "kubernetes.scale": "skipped",
    }
    deployment = kubernetes.get("Deployment", NAMESPACE, "api")
    assert deployment is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "SEEDED_REVISION", "value": "1"}]

    # The errors come back in a new episode: the restored revision is old, so no second undo
    # (back to the bad revision), but more capacity.
    await post_to_alertmanager(alertmanager, datetime.now(UTC) - timedelta(seconds=1), [labels])
    await runs_until(store, ["succeeded"])
    later = datetime.now(UTC)  # after the first episode's end, or Alertmanager merges the two
    await post_to_alertmanager(alertmanager, later + timedelta(hours=1), [labels], starts_at=later)
    [_, second] = await runs_until(store, ["succeeded", "verifying"])
    steps = {step.action: step.outcome for step in await store.steps(second.id)}
    assert steps == {
        "kubernetes.diagnose": "ok",
        "kubernetes.rollout_status": "ok",
        "kubernetes.rollout_undo": "skipped",
        "kubernetes.scale": "ok",
    }
    assert kubernetes.get("Deployment", NAMESPACE, "api")["spec"]["replicas"] == 5


async def test_failing_runs_open_the_breaker_and_the_next_alert_is_blocked(
    alertmanager: str,
    service: ServiceProcess,
    store: Store,
    kubernetes: FakeKubernetes,
    application: str,
) -> None:
    kubernetes.seed_deployment(NAMESPACE, "api", replicas=3, ready=0)
    kubernetes.fail_next("PATCH", "deployments", 422, times=100)
    alert = [application_down(application)]
    outcomes: list[str] = []
    for episode in range(3):  # application-down: 2 failures within 2h open its breaker
        # After the previous episode's end, or Alertmanager merges it into that one.
        starts_at = datetime.now(UTC)
        ends_at = datetime.now(UTC) + timedelta(hours=1)
        await post_to_alertmanager(alertmanager, ends_at, alert, starts_at=starts_at)
        outcomes.append("failed" if episode < 2 else "blocked")
        runs: list[Remediation] = await runs_until(store, outcomes)
        # Resolve it, so that the next post is a new episode rather than the same alert.
        # Ended in the past, and after it started (the episode may be under a second old).
        earliest = starts_at + timedelta(milliseconds=1)
        resolved = max(datetime.now(UTC) - timedelta(seconds=1), earliest)
        await post_to_alertmanager(alertmanager, resolved, alert, starts_at=starts_at)

        async def episode_resolved() -> bool:
            return all(r.status.value == "resolved" for r in await store.recent_alerts(10))

        await eventually(episode_resolved, what=f"episode {episode} to resolve")
    assert (runs[-1].outcome, runs[-1].guard) == ("blocked", "circuit_breaker")
    assert "is open" in runs[-1].reason


async def test_three_deployments_down_at_once_two_are_changed_the_third_is_a_shared_cause(
    alertmanager: str,
    service: ServiceProcess,
    store: Store,
    kubernetes: FakeKubernetes,
    application: str,
) -> None:
    """A dependency they share is down: every health check fails, whatever is restarted. The
    shipped application-down bound (2 targets per 10m) changes two and holds the third back,
    paged as a probable shared cause naming the two."""
    names = ["users-api", "orders-api", "payments-api"]
    alerts = []
    for name in names:
        kubernetes.seed_deployment(NAMESPACE, name, replicas=2, ready=0)
        alerts.append(application_down(application) | {"deployment": name})
    await post_to_alertmanager(alertmanager, datetime.now(UTC) + timedelta(hours=1), alerts)

    async def all_decided() -> bool:
        runs = [r for r in await store.list_remediations(50) if r.kind == "firing"]
        return len(runs) == 3 and all(r.outcome != "running" for r in runs)

    await eventually(all_decided, what="three decided runs", timeout=60)
    runs = [r for r in await store.list_remediations(50) if r.kind == "firing"]
    [held] = [r for r in runs if r.outcome == "blocked"]
    assert held.guard == "blast_radius"
    changed = {path for method, path, _ in kubernetes.writes if method == "PATCH"}
    others = [name for name in names if not held.target or not held.target.endswith(f"/{name}")]
    assert len(others) == 2
    assert {name for name in names if any(f"/deployments/{name}" in p for p in changed)} == set(
        others
    )
    assert held.reason.startswith("probable shared cause: 3 targets of application-down")
    for name in others:
        assert f"{NAMESPACE}/{name}" in held.reason
    assert "(bound 2 per 10m)" in held.reason
    assert held.plan.incident is not None
    assert held.plan.incident.startswith("remediator/application-down/blast-radius/")
    # Escalated by the severity matrix (P1: PagerDuty and Slack), saying why.
    pages = await store.outbox_for(dedup_key(held))
    assert {e.channel for e in pages if e.action == "trigger"} >= {"pagerduty", "slack"}
    assert all(e.message["reason"] == held.reason for e in pages if e.action == "trigger")
