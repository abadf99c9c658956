"""The kill switch toggled mid-storm (issue 9): three live replicas work through a storm of
alerts against a Kubernetes API that throttles half the writes (429, so steps retry), and an
operator runs `remediator pause`. No mutating call may reach Kubernetes later than 1 s after
the pause answered, while intake goes on and every later alert is blocked by the switch."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.support.fake_kubernetes import NAMESPACE
from tests.support.figures import Figures, scale
from tests.support.replicas import (
    API_TOKEN,
    RecordingKubernetes,
    Replicas,
    live_replicas,
    post_webhook,
)
from tests.support.service_process import eventually
from tests.support.webhooks import webhook, webhook_alert

REPLICAS = 3
SEED = int(os.environ.get("REMEDIATOR_CHAOS_SEED", time.time_ns() % 1_000_000))
ALERTS_PER_SECOND = 10
LATE = 1.0  # seconds after the pause answered: no mutating call after that

STORM_POLICY = """\
name: storm-fix
match:
  - alertname="StormTest"
severity: P3
target:
  kind: Deployment
  namespace: "{{ labels.namespace }}"
  name: "{{ labels.deployment }}"
steps:
  - action: kubernetes.rollout_restart
    params: {min_available: 0}
  - action: kubernetes.scale
    params: {by: 1, max_replicas: 10}
verify:
  resolved_within: 1h
rate_limit:
  windows:
    - {max: 1000, per: 1h}
circuit_breaker: {failures: 1000, window: 1h, cooldown: 1m}
"""
GUARDRAILS = "max_concurrent_runs: 100\n"  # the cap is not under test


@dataclass
class Storm:
    replicas: Replicas
    kubernetes: RecordingKubernetes
    db: asyncpg.Pool
    posted: list[tuple[float, int]] = field(default_factory=list)  # when, the answer

    async def blow(self, session: aiohttp.ClientSession, first: int, count: int) -> None:
        """`count` alerts, each on a Deployment of its own, at ALERTS_PER_SECOND, spread over
        the replicas as a load balancer would."""
        for index in range(first, first + count):
            name = f"storm-{index}"
            self.kubernetes.seed_deployment(NAMESPACE, name, replicas=2, ready=2)
            labels = {"alertname": "StormTest", "namespace": NAMESPACE, "deployment": name}
            now = datetime.now(UTC).isoformat()
            body = webhook(webhook_alert(labels, fingerprint=f"fp-{name}", starts_at=now))
            service = self.replicas.alive()[index % REPLICAS]
            self.posted.append((time.time(), await post_webhook(session, service.url, body)))
            await asyncio.sleep(1 / ALERTS_PER_SECOND)  # the storm's pace

    async def in_flight(self) -> bool:
        """Runs are going and have been changing things: the moment to pull the switch."""
        running = await self.db.fetchval(
            "SELECT count(*) FROM remediations WHERE outcome = 'running'"
        )
        writes = sum(1 for c in self.kubernetes.calls if c.mutating)
        return bool(running >= 2 and writes >= 20)

    async def settled(self) -> bool:
        """Every alert stored, every event handled, no run going."""
        pending = await self.db.fetchval("SELECT count(*) FROM alert_events WHERE done_at IS NULL")
        running = await self.db.fetchval(
            "SELECT count(*) FROM remediations WHERE outcome = 'running'"
        )
        stored = await self.db.fetchval("SELECT count(*) FROM alerts")
        return bool(pending == 0 and running == 0 and stored == len(self.posted))


@pytest.fixture
async def storm(tmp_path: Path, postgres_dsn: str, own_redis: str) -> AsyncIterator[Storm]:
    async with live_replicas(
        tmp_path,
        REPLICAS,
        {"storm-fix.yaml": STORM_POLICY},
        GUARDRAILS,
        database_url=postgres_dsn,
        redis_url=own_redis,
        api_token=API_TOKEN,
    ) as deployment:
        throttling = random.Random(SEED)
        deployment.kubernetes.throttle = lambda: throttling.random() < 0.5
        yield Storm(deployment.replicas, deployment.kubernetes, deployment.db)


async def pause(url: str) -> float:
    """`remediator pause`, as an operator runs it; when it answered (the command exited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env["REMEDIATOR_API_TOKEN"] = API_TOKEN
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        "pause",
        "--reason",
        "storm drill",
        "--url",
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await command.communicate()
    answered = time.time()
    assert command.returncode == 0, out.decode()
    assert b"paused by" in out, out.decode()
    return answered


async def test_no_mutating_call_later_than_a_second_after_pause_mid_storm(
    storm: Storm, figures: Figures
) -> None:
    before, after = scale(25, 400), scale(15, 300)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        blowing = asyncio.create_task(storm.blow(session, 0, before))
        await eventually(storm.in_flight, what="runs changing things mid-storm", timeout=60)
        answered = await pause(storm.replicas.alive()[0].url)
        await blowing
        await storm.blow(session, before, after)  # the storm goes on after the pause
    await eventually(storm.settled, what="every alert stored and handled", timeout=60)

    writes = [c for c in storm.kubernetes.calls if c.mutating]
    late = [c for c in writes if c.at > answered + LATE]
    last = max(c.at for c in writes) - answered
    rows = await storm.db.fetch("SELECT outcome, guard, reason, started_at FROM remediations")
    stopped = [r for r in rows if r["guard"] == "kill_switch" and "before" in r["reason"]]
    later = [r for r in rows if r["started_at"].timestamp() > answered]
    figures.record(
        "Kill switch toggled mid-storm",
        expected="0 mutating calls later than 1 s after `pause`",
        figure=f"{len(late)} mutating calls later than 1 s after `pause` "
        f"({len(writes)} in all, the last {last:+.2f} s from it); {len(stopped)} runs stopped "
        f"mid-flight, {len(later)} alerts after it blocked",
        passed=not late,
    )
    assert not late, f"writes after the pause (+{LATE} s): {late} (REMEDIATOR_CHAOS_SEED={SEED})"
    assert all(status == 200 for _, status in storm.posted), storm.posted  # intake went on
    assert later, "no alert was handled after the pause"
    assert all(r["outcome"] == "blocked" and r["guard"] == "kill_switch" for r in later), later
    assert stopped, "the pause stopped no run in flight: the storm was not mid-way"
