"""Replicas of `remediator serve` in live mode on one PostgreSQL schema and one Redis, acting
on the fake Kubernetes API and paging through recording stand-ins for PagerDuty and Slack; and
what a test asks of them (the reliability scenarios under Redis faults and flapping fixes)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.store import Remediation, Store, open_store
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, FakeKubernetes
from tests.support.notify_recorder import Recorder
from tests.support.policies import shipped_guardrails, shipped_matrix
from tests.support.service_process import ServiceProcess
from tests.support.webhooks import webhook, webhook_alert

TOKEN = "s3cret"
API_TOKEN = "operator-token"
LEASE_SECONDS = 3
SHARED_LIMIT = "guard-faults"
ALERTNAME = "GuardFault"


def matrix_with(pagerduty_url: str) -> str:
    """The shipped severity matrix, PagerDuty pointed at the recording stand-in (resolves sent
    at once: these scenarios are not about flapping incidents)."""
    text = shipped_matrix()
    line = "    routing_key_env: PAGERDUTY_ROUTING_KEY\n"
    assert line in text
    return text.replace(line, f"{line}    events_url: {pagerduty_url}/v2/enqueue\n")


def policy_directory(directory: Path, policies: list[str], pagerduty_url: str) -> Path:
    """A policy directory of the test's own: its policies, the shipped guard rails with a cap,
    a blast radius and demotion that are not under test (the scenarios change dozens of
    deployments, and fail one policy's runs on purpose), and the matrix paging the stand-ins."""
    directory.mkdir()
    rails = shipped_guardrails("{max_concurrent_runs: 50, max_targets: null, demotion: null}")
    (directory / "guardrails.yaml").write_text(rails)
    (directory / "escalation.yaml").write_text(matrix_with(pagerduty_url))
    for number, policy in enumerate(policies):
        (directory / f"policy-{number}.yaml").write_text(policy)
    return directory


def fingerprint_of(labels: dict[str, str]) -> str:
    """As Alertmanager's: from the labels alone, the same for every episode of the alert."""
    text = ",".join(f"{name}={value}" for name, value in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def target_of(name: str) -> str:
    return f"Deployment/{NAMESPACE}/{name}"


async def settles(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, interval: float = 0.1
) -> bool:
    """Poll until the condition holds; False (rather than an error) when it never does, so the
    figure can be recorded before the test asserts."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


@dataclass(frozen=True)
class Posted:
    name: str
    fingerprint: str
    starts_at: datetime
    status: int
    accepted: int


@dataclass
class Stack:
    """The replicas, the store they share, the Kubernetes API and the channels."""

    replicas: list[ServiceProcess]
    store: Store
    kubernetes: FakeKubernetes
    pagerduty: Recorder
    slack: Recorder
    alertname: str = ALERTNAME  # of the alerts `post` sends, unless its labels say otherwise

    async def post(
        self,
        replica: ServiceProcess,
        name: str,
        *,
        starts_at: datetime | None = None,
        status: str = "firing",
        labels: dict[str, str] | None = None,
    ) -> Posted:
        """One alert of `name`'s deployment, straight to one replica's webhook."""
        if self.kubernetes.get("Deployment", NAMESPACE, name) is None:
            self.kubernetes.seed_deployment(NAMESPACE, name, replicas=2)
        starts_at = starts_at or datetime.now(UTC)
        alert_labels = {
            "alertname": self.alertname,
            "namespace": NAMESPACE,
            "deployment": name,
            "severity": "critical",  # P1: PagerDuty and Slack
            **(labels or {}),
        }
        fingerprint = fingerprint_of(alert_labels)
        alert = webhook_alert(
            alert_labels,
            fingerprint=fingerprint,
            starts_at=starts_at.isoformat(),
            status=status,
            ends_at=datetime.now(UTC).isoformat(),
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{replica.url}/api/v1/alerts", json=webhook(alert), headers=headers
            ) as answer,
        ):
            body = await answer.json() if answer.status == 200 else {}
            accepted = int(body.get("accepted", 0))
            return Posted(name, fingerprint, starts_at, answer.status, accepted)

    async def firing_runs(self) -> list[Remediation]:
        """Every remediation of a firing event, oldest first."""
        found = await self.store.list_remediations(1000)
        return [r for r in reversed(found) if r.kind == "firing"]

    async def run_of(self, name: str) -> Remediation | None:
        runs = [r for r in await self.firing_runs() if r.target == target_of(name)]
        return runs[-1] if runs else None

    async def outcomes(self, names: list[str]) -> dict[str, tuple[str, str | None]]:
        """Each deployment's latest (outcome, guard), for those with a remediation."""
        latest = {r.target: r for r in await self.firing_runs()}
        return {
            name: (latest[target_of(name)].outcome, latest[target_of(name)].guard)
            for name in names
            if target_of(name) in latest
        }

    async def all_decided(self, names: list[str]) -> bool:
        """Every one of these has a remediation that is no longer running."""
        decided = await self.outcomes(names)
        return len(decided) == len(names) and all(o != "running" for o, _ in decided.values())

    def mutations(self) -> int:
        """Writes the Kubernetes API received: every PATCH, POST and DELETE."""
        return len(self.kubernetes.writes)

    def paged_about(self, name: str, outcome: str) -> set[str]:
        """The channels that received a trigger about this deployment with this outcome."""
        channels = set()
        for request in self.pagerduty.requests:
            body = request.json or {}
            payload = body.get("payload", {})
            if (
                body.get("event_action") == "trigger"
                and payload.get("component") == target_of(name)
                and payload.get("custom_details", {}).get("outcome") == outcome
            ):
                channels.add("pagerduty")
        for request in self.slack.requests:
            fields = {
                field["text"]
                for block in (request.json or {}).get("blocks", [])
                for field in block.get("fields", [])
            }
            if {f"*Target*\n{target_of(name)}", f"*Outcome*\n{outcome}"} <= fields:
                channels.add("slack")
        return channels

    async def resolve_sent(self, policy: str, name: str) -> set[str]:
        """The channels that were sent the resolve of this policy's incident on `name`."""
        entries = await self.store.outbox_for(f"remediator/{policy}/{target_of(name)}")
        return {e.channel for e in entries if e.action == "resolve" and e.sent_at is not None}

    async def stored(self, posted: Posted) -> bool:
        return await self.store.alert(posted.fingerprint, posted.starts_at) is not None

    async def guards(self, replica: ServiceProcess) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{replica.url}/api/v1/guards", headers=headers) as answer,
        ):
            assert answer.status == 200, await answer.text()
            found: dict[str, Any] = await answer.json()
            return found

    async def admitted_runs(self) -> int:
        """Runs the shared rate limit admitted in the last hour, as the store recorded them."""
        runs = await self.store.runs_since(datetime.now(UTC) - timedelta(hours=1))
        return sum(1 for run in runs if SHARED_LIMIT in run.limit_keys)


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    replicas: int,
    policies: list[str],
    dsn: str,
    redis_url: str,
    kubernetes: FakeKubernetes,
    pagerduty: Recorder,
    slack: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    **more: str,
) -> AsyncIterator[Stack]:
    """`replicas` services in live mode on one store and one Redis, started together, with
    `more` settings besides."""
    directory = policy_directory(tmp_path / "policies", policies, pagerduty.url)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=kubernetes.url))
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack.url}/services/T0/B0/secret")
    settings = {
        "database_url": dsn,
        "redis_url": redis_url,
        "webhook_token": TOKEN,
        "api_token": API_TOKEN,
        "mode": "live",
        "kubeconfig": str(kubeconfig),
        "policies": str(directory),
        "lease_seconds": str(LEASE_SECONDS),
        **more,
    }
    started = await asyncio.gather(
        *(ServiceProcess.start(tmp_path, **settings) for _ in range(replicas)),
        return_exceptions=True,
    )
    running = [s for s in started if isinstance(s, ServiceProcess)]
    store = await open_store(dsn)
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield Stack(running, store, kubernetes, pagerduty, slack)
    finally:
        await store.close()
        for service in running:
            if service.process.poll() is None:
                os.kill(service.process.pid, signal.SIGCONT)  # in case a test left it stopped
        codes = [s.stop() for s in running if s.process.poll() is None]
        assert codes == [0] * len(codes), codes
