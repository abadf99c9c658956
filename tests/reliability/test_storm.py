"""Storm (issue 9): thousands of distinct alerts through a real Alertmanager into two service
replicas (one PostgreSQL schema, a redis-server of the test's own, live mode against the fake
Kubernetes API).

What it proves: the global concurrency cap and rate limit hold across the replicas while
every alert is stored and acknowledged fast, and every alert that was not run is escalated.
Each admitted run restarts its Deployment and then waits a few seconds for a rollout that is
held, so that runs overlap and compete for the cap's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio

from tests.support.alertmanager import ready, running_alertmanager
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, FakeKubernetes
from tests.support.figures import Figures, scale
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES, shipped_guardrails, without_budgets
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess, eventually
from tests.support.services import free_port

SCENARIO = "Storm: 10,000 alerts in 60 s through Alertmanager into 2 replicas"
EXPECTED = "global concurrency cap and rate limits hold; the rest escalates"
TOKEN = "s3cret"
ALERTS = scale(1_000, 10_000)
STORM_SECONDS = scale(10, 60)
DEPLOYMENTS = 50  # the alerts' targets: many alerts on each
PER_NOTIFICATION = 10  # alerts Alertmanager groups into one webhook (by their `shard`)
# max_concurrent_runs: one, so that the replicas' runs compete for it across them, and most
# runs wait for their turn (then are blocked by the budget, or by their wait running out)
CAP = 1
BUDGET = scale(4, 20)  # the global rate limit: runs of all policies per hour
RUN_HOLDS = 2  # seconds each run waits for its (held) rollout, holding its slot
ACK_WITHIN = 1.0  # the p99 acknowledgement

STORM_POLICY = f"""\
name: storm-restart
description: Restart the deployment, then wait for its rollout (held by the test).
match:
  - alertname="StormAlert"
severity: P2
target:
  kind: Deployment
  namespace: "{{{{ labels.namespace }}}}"
  name: "{{{{ labels.deployment }}}}"
steps:
  - action: kubernetes.rollout_restart
    params: {{min_available: 0}}
  - action: kubernetes.rollout_status
    params: {{wait_up_to: {RUN_HOLDS}s}}
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {{max: 1, per: 1h}}
escalate: [on_failure, when_blocked]
"""
ALERTMANAGER_CONFIG = """
route:
  receiver: remediator
  group_by: ['alertname', 'shard']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: remediator
    webhook_configs:
{webhooks}
"""
WEBHOOK = """\
      - url: {url}/api/v1/alerts
        send_resolved: false
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


@pytest.fixture
def policies(tmp_path: Path, mailbox: tuple[Mailbox, int]) -> Path:
    """The shipped policies, matrix and guard rails, with a known global budget, the storm's
    policy, and the matrix's channels on this test's stand-ins (Slack's URL is in the env)."""
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, directory)
    (directory / "storm-restart.yaml").write_text(STORM_POLICY)
    guardrails = directory / "guardrails.yaml"
    guardrails.write_text(
        shipped_guardrails(
            f"max_concurrent_runs: {CAP}\nglobal_rate_limit:\n  - {{max: {BUDGET}, per: 1h}}\n"
        )
    )
    matrix = directory / "escalation.yaml"
    text = matrix.read_text()
    for old, new in {
        "smtp_host: smtp.example.com": "smtp_host: 127.0.0.1",
        "smtp_port: 587": f"smtp_port: {mailbox[1]}",
        "    username_env: SMTP_USERNAME\n    password_env: SMTP_PASSWORD\n": "",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    matrix.write_text(without_budgets(text))  # every incident escalated, each message sent
    return directory


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    redis_server.start()
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.asyncio.Redis.from_url(url, socket_timeout=5)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except (OSError, redis.RedisError):
            return False

    try:
        await eventually(answers, what="the test's redis-server to answer")
        yield url
    finally:
        await client.aclose()


@pytest.fixture
async def kubernetes() -> AsyncIterator[FakeKubernetes]:
    fake = FakeKubernetes()
    await fake.start(free_port())
    for n in range(DEPLOYMENTS):
        fake.seed_deployment(NAMESPACE, f"svc-{n}", replicas=2, ready=2)
    fake.hold_rollouts = True  # each run waits RUN_HOLDS seconds for its rollout
    yield fake
    await fake.close()


@pytest.fixture
async def slack_api() -> AsyncIterator[Recorder]:
    recorder = Recorder(Answer(200, "ok"))
    await recorder.start()
    yield recorder
    await recorder.close()


@pytest.fixture
async def replicas(
    tmp_path: Path,
    postgres_dsn: str,
    redis_url: str,
    kubernetes: FakeKubernetes,
    policies: Path,
    slack_api: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[list[ServiceProcess]]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=kubernetes.url))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    settings = {
        "database_url": postgres_dsn,
        "redis_url": redis_url,
        "webhook_token": TOKEN,
        "mode": "live",
        "kubeconfig": str(kubeconfig),
        "policies": str(policies),
        "log_level": "warning",  # a line per request would cost the storm's CPU
    }
    started = await asyncio.gather(
        *(ServiceProcess.start(tmp_path, **settings) for _ in range(2)), return_exceptions=True
    )
    running = [s for s in started if isinstance(s, ServiceProcess)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield running
    finally:
        codes = [s.stop() for s in running]
        assert codes == [0] * len(codes), codes


@pytest.fixture
def alertmanager(
    alertmanager_binary: str, replicas: list[ServiceProcess], tmp_path: Path
) -> Iterator[str]:
    """One Alertmanager with both replicas as webhooks of its receiver: every notification
    reaches both, which store each alert once between them."""
    webhooks = "".join(WEBHOOK.format(url=s.url, token=TOKEN) for s in replicas)
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(webhooks=webhooks))
    with running_alertmanager(alertmanager_binary, config, tmp_path) as url:
        yield url


def storm_alert(n: int, ends_at: datetime) -> dict[str, object]:
    return {
        "labels": {
            "alertname": "StormAlert",
            "namespace": NAMESPACE,
            "deployment": f"svc-{n % DEPLOYMENTS}",
            "pod": f"pod-{n}",
            "shard": str(n // PER_NOTIFICATION),
            "severity": "high",
        },
        "annotations": {"summary": f"storm alert {n}"},
        "startsAt": (ends_at - timedelta(hours=2)).isoformat(),
        "endsAt": ends_at.isoformat(),
    }


async def storm(alertmanager: str) -> float:
    """ALERTS distinct alerts posted to Alertmanager evenly over STORM_SECONDS; how long the
    posting took."""
    ends_at = datetime.now(UTC) + timedelta(hours=1)
    batch = 50
    interval = STORM_SECONDS * batch / ALERTS
    async with aiohttp.ClientSession() as session:
        await eventually(lambda: ready(session, alertmanager), what="Alertmanager to be ready")
        started = time.monotonic()
        for first in range(0, ALERTS, batch):
            alerts = [storm_alert(n, ends_at) for n in range(first, min(first + batch, ALERTS))]
            async with session.post(f"{alertmanager}/api/v2/alerts", json=alerts) as answer:
                assert answer.status == 200, await answer.text()
            pause = started + (first // batch + 1) * interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # the storm's pace, not a wait for an outcome
        return time.monotonic() - started


@dataclass(frozen=True)
class Intake:
    """What both replicas' /metrics say of their webhook answers."""

    codes: dict[str, float]
    buckets: dict[float, float]  # upper bound -> answers at most that slow, both replicas
    count: float

    def share_within(self, seconds: float) -> float:
        return self.buckets[seconds] / self.count if self.count else 0.0

    def p99(self) -> float:
        """The 99th percentile, interpolated in its histogram bucket, as PromQL does."""
        rank, lower, below = 0.99 * self.count, 0.0, 0.0
        for bound, cumulative in sorted(self.buckets.items()):
            if cumulative >= rank:
                if bound == float("inf"):
                    return lower
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                return lower + (bound - lower) * share
            lower, below = bound, cumulative
        return lower


async def intake_of(replicas: list[ServiceProcess]) -> Intake:
    codes: dict[str, float] = {}
    buckets: dict[float, float] = {}
    count = 0.0
    async with aiohttp.ClientSession() as session:
        for replica in replicas:
            async with session.get(f"{replica.url}/metrics") as answer:
                text = await answer.text()
            for code, value in re.findall(
                r'^remediator_intake_requests_total\{code="(\d+)"\} (\S+)$', text, re.M
            ):
                codes[code] = codes.get(code, 0.0) + float(value)
            for bound, value in re.findall(
                r'^remediator_intake_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
            ):
                buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(value)
            found = re.search(r"^remediator_intake_duration_seconds_count (\S+)$", text, re.M)
            count += float(found[1]) if found else 0.0
    return Intake(codes, buckets, count)


async def webhooks_failed(alertmanager: str) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{alertmanager}/metrics") as answer,
    ):
        text = await answer.text()
    found = re.search(
        r'^alertmanager_notifications_failed_total\{integration="webhook"\} (\S+)$', text, re.M
    )
    return float(found[1]) if found else 0.0


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals that overlap at one instant."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in moments:  # an end sorts before a start at the same instant
        running += change
        most = max(most, running)
    return most


@dataclass(frozen=True)
class Outcome:
    stored: int
    runs: list[tuple[datetime, datetime]]  # each admitted run's steps, start to end
    not_run: dict[str, int]  # remediations without a run, by guard (or outcome)
    unescalated: list[str]  # incidents of those no channel heard as blocked


async def outcome_of(dsn: str) -> Outcome:
    connection = await asyncpg.connect(dsn)
    try:
        stored = await connection.fetchval("SELECT count(*) FROM alerts")
        runs = await connection.fetch(
            "SELECT min(s.started_at) AS started, max(s.finished_at) AS finished"
            " FROM remediation_steps s JOIN remediations r ON r.id = s.remediation_id"
            " WHERE s.phase = 'steps' AND r.run_id IS NOT NULL GROUP BY s.remediation_id"
        )
        not_run = await connection.fetch(
            "SELECT coalesce(guard, outcome) AS why, count(*) AS n FROM remediations"
            " WHERE run_id IS NULL GROUP BY 1"
        )
        unescalated = await connection.fetch(
            "SELECT DISTINCT 'remediator/' || r.policy || '/' || r.target AS incident"
            " FROM remediations r WHERE r.run_id IS NULL AND NOT EXISTS ("
            "   SELECT 1 FROM outbox o WHERE o.dedup_key = 'remediator/' || r.policy || '/'"
            "   || r.target AND o.channel = 'slack' AND o.sent_at IS NOT NULL"
            "   AND (o.message::jsonb ->> 'outcome') = r.outcome)"
        )
    finally:
        await connection.close()
    return Outcome(
        stored,
        [(row["started"], row["finished"]) for row in runs],
        {row["why"]: row["n"] for row in not_run},
        [row["incident"] for row in unescalated],
    )


async def settled(dsn: str) -> bool:
    """Every alert stored, every event handled, every message (but the ladder's) sent."""
    connection = await asyncpg.connect(dsn)
    try:
        stored = await connection.fetchval("SELECT count(*) FROM alerts")
        pending = await connection.fetchval(
            "SELECT count(*) FROM alert_events WHERE done_at IS NULL"
        )
        unsent = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE channel <> 'ladder'"
            " AND sent_at IS NULL AND failed_at IS NULL"
        )
    finally:
        await connection.close()
    return bool(stored == ALERTS and pending == 0 and unsent == 0)


async def test_a_storm_of_distinct_alerts_keeps_the_cap_and_budget_and_escalates_the_rest(
    replicas: list[ServiceProcess],
    alertmanager: str,
    postgres_dsn: str,
    kubernetes: FakeKubernetes,
    figures: Figures,
) -> None:
    posted_in = await storm(alertmanager)
    with contextlib.suppress(AssertionError):  # the figures say how far it got
        await eventually(
            lambda: settled(postgres_dsn),
            what="every alert stored and handled, every message sent",
            timeout=scale(90, 600),
        )
    intake = await intake_of(replicas)
    failed_deliveries = await webhooks_failed(alertmanager)
    outcome = await outcome_of(postgres_dsn)
    at_once = most_at_once(outcome.runs)
    restarts = sum(1 for method, _, _ in kubernetes.writes if method == "PATCH")
    answered = sum(intake.codes.values())
    not_ok = {code: n for code, n in intake.codes.items() if code != "200"}
    within = intake.share_within(ACK_WITHIN)

    passed = (
        at_once <= CAP
        and len(outcome.runs) <= BUDGET
        and restarts <= BUDGET
        and outcome.stored == ALERTS
        and not not_ok
        and failed_deliveries == 0
        and within >= 0.99
        and outcome.unescalated == []
    )
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"{ALERTS} alerts posted in {posted_in:.0f} s, {answered:.0f} webhooks answered "
            f"({json.dumps(not_ok) if not_ok else 'all 200'}, {failed_deliveries:.0f} failed "
            f"at Alertmanager): {outcome.stored} stored ({outcome.stored / ALERTS:.0%}); "
            f"p99 acknowledgement {intake.p99() * 1000:.0f} ms ({within:.2%} within 1 s); "
            f"{len(outcome.runs)} runs for a budget of {BUDGET}, {restarts} restarts, at most "
            f"{at_once} at once for a cap of {CAP}; not run: {outcome.not_run}, "
            f"{len(outcome.unescalated)} of their incidents not escalated"
        ),
        passed=passed,
    )
    assert outcome.stored == ALERTS
    assert not not_ok, intake.codes
    assert failed_deliveries == 0
    assert within >= 0.99, intake.buckets
    assert at_once <= CAP, outcome.runs
    assert len(outcome.runs) <= BUDGET
    assert restarts <= BUDGET
    assert outcome.unescalated == []
