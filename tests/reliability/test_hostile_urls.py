"""Hostile URLs (issue 16, item 1): an `instance` label that would move the shipped health
check elsewhere (another path or query, credentials, a fragment, loopback, the cloud metadata
address, numeric IP forms, a name resolving to loopback) sends no request and is escalated.

The service runs in this process in live mode, over the shipped policies; the probe's stand-in
is a recording HTTP server on loopback, which guardrails allow by its exact address and port,
as an operator allows a host. Every hostile instance aims at that stand-in; a benign alert
beside them reaches it, so the test can tell.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.config import Settings
from remediator.notify.escalator import dedup_key
from remediator.runtime.service import create_app
from remediator.store import Remediation, Store, open_store
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, FakeKubernetes
from tests.support.figures import Figures, scale
from tests.support.notify_recorder import Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES, shipped_guardrails
from tests.support.service_process import eventually
from tests.support.webhooks import webhook, webhook_alert

SCENARIO = "Hostile URLs: an `instance` adding a path, query, credentials, `#`, loopback, metadata"
EXPECTED = "0 requests sent, all refused and escalated"
TOKEN = "s3cret"


def hostile_instances(stand_in: str, port: int, other: int, generated: int) -> list[str]:
    """Each aims the health check at the allowed stand-in's other paths, or elsewhere: `other`
    is a port on loopback of a service the allow-list does not name."""
    fixed = [
        f"{stand_in}/latest/meta-data/?x=",
        f"user:pw@{stand_in}",
        f"{stand_in}#",
        f"{stand_in}?x=",
        f"{stand_in}/admin",
        f"{stand_in}\\@evil.example",
        f"{stand_in}:80",
        f"%31%32%37.0.0.1:{port}",
        "169.254.169.254",
        "[fd00:ec2::254]",
        "metadata.google.internal",
        f"[::1]:{port}",
        f"0.0.0.0:{port}",
        f"2130706433:{port}",
        f"0x7f.1:{port}",
        f"0177.0.0.1:{port}",
        f"localhost:{other}",  # allowed by a glob, resolves to loopback: refused connecting
    ]
    rng = random.Random(16)
    pieces = ["/", "?", "#", "@", "\\", "%2f", "/..", "?a=", "#x", "user@", "%00", " ", "\t"]
    made: list[str] = []
    while len(set(made)) < generated:  # distinct: one alert (fingerprint) each
        where = rng.choice(["before", "after", "both"])
        left = rng.choice(pieces) if where != "after" else ""
        right = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 3)))
        made.append(f"{left}{stand_in}{right if where != 'before' else rng.choice(pieces)}")
    return fixed + list(dict.fromkeys(made))


def fingerprint(instance: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_OID, instance).hex[:16]


async def post(client: TestClient[Any, Any], instance: str) -> int:
    labels = {
        "alertname": "ApplicationDown",
        "namespace": NAMESPACE,
        "deployment": "api",
        "instance": instance,
        "severity": "critical",
    }
    alert = webhook_alert(labels, fingerprint=fingerprint(instance), starts_at="2026-06-01T10:00Z")
    answer = await client.post(
        "/api/v1/alerts", json=webhook(alert), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return answer.status


@pytest.fixture
async def probe() -> AsyncIterator[Recorder]:
    """The health endpoint every hostile instance aims at, recording what reaches it."""
    recorder = Recorder(Answer(500, "down"))
    await recorder.start()
    yield recorder
    await recorder.close()


@pytest.fixture
async def other() -> AsyncIterator[Recorder]:
    """Another service on loopback, which no entry of the allow-list names."""
    recorder = Recorder(Answer(200, "secret"))
    await recorder.start()
    yield recorder
    await recorder.close()


@pytest.fixture
async def service(
    tmp_path: Path,
    probe: Recorder,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    kubernetes: FakeKubernetes,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[TestClient[Any, Any], Store]]:
    for name in [name for name in os.environ if name.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, directory)
    matrix = directory / "escalation.yaml"
    matrix.write_text(
        matrix.read_text().replace(
            "    routing_key_env: PAGERDUTY_ROUTING_KEY\n",
            f"    routing_key_env: PAGERDUTY_ROUTING_KEY\n"
            f"    events_url: {pagerduty_api.url}/v2/enqueue\n",
        )
    )
    stand_in = probe.url.removeprefix("http://")
    hosts = f"['*.svc', '{stand_in}', 'localhos*']"
    rails = shipped_guardrails(f"{{allowed_hosts: {hosts}, max_targets: null}}", stand_ins=False)
    (directory / "guardrails.yaml").write_text(rails)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    kubernetes.seed_deployment(NAMESPACE, "api", replicas=3)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=kubernetes.url))
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    settings = Settings(
        database_url=database_url,
        policies=directory,
        mode="live",
        webhook_token=TOKEN,
        kubeconfig=kubeconfig,
        lease_seconds=3,
    )
    app = await create_app(settings)
    store = await open_store(database_url)
    try:
        async with TestClient(TestServer(app)) as client:
            yield client, store
    finally:
        await store.close()


async def escalated(store: Store, remediation: Remediation) -> bool:
    sent = {e.channel for e in await store.outbox_for(dedup_key(remediation)) if e.sent_at}
    return bool(remediation.plan.channels) and set(remediation.plan.channels) <= sent


def port_of(recorder: Recorder) -> int:
    return int(recorder.url.rsplit(":", 1)[1])


async def test_no_hostile_instance_sends_a_request(
    service: tuple[TestClient[Any, Any], Store],
    probe: Recorder,
    other: Recorder,
    figures: Figures,
) -> None:
    client, store = service
    stand_in = probe.url.removeprefix("http://")
    hostile = hostile_instances(stand_in, port_of(probe), port_of(other), scale(8, 60))
    for instance in hostile:
        assert await post(client, instance) == 200

    async def handled() -> dict[str, Remediation]:
        found = {r.fingerprint: r for r in await store.list_remediations(2 * len(hostile) + 10)}
        return {i: found[fingerprint(i)] for i in hostile if fingerprint(i) in found}

    async def all_escalated() -> bool:
        done = await handled()
        return len(done) == len(hostile) and all([await escalated(store, r) for r in done.values()])

    await eventually(all_escalated, what="every hostile alert escalated", timeout=scale(60, 300))
    done = await handled()
    refused = {i: r for i, r in done.items() if r.outcome in ("refused", "failed")}
    with_reason = [i for i, r in refused.items() if "refused" in r.reason]
    requests = len(probe.requests) + len(other.requests)
    # The control: a benign instance reaches the stand-in (its health check, then the recheck).
    assert await post(client, stand_in) == 200
    await eventually(partial(_reached, probe, requests), what="the benign health check")
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"{len(hostile)} hostile instances, {requests} requests sent, {len(with_reason)}"
            f" refused with the reason and escalated"
        ),
        passed=requests == 0 and len(with_reason) == len(hostile),
    )
    assert requests == 0, [(r.method, r.path) for r in [*probe.requests, *other.requests]]
    assert sorted(with_reason) == sorted(hostile), {
        i: (r.outcome, r.reason) for i, r in done.items()
    }


async def _reached(probe: Recorder, before: int) -> bool:
    return len(probe.requests) > before
