"""Slow downstream (issue 9): the Kubernetes API and PagerDuty, each behind a fault proxy that
resets, black-holes or slows their connections, under a real service in live mode.

What it proves: every wait is bounded by a timeout, every retry by its configuration (the
runner's attempts per step, the outbox's quick retries and backoff), PagerDuty's breaker
opens after its failures and then costs it no attempt, a page PagerDuty does not take reaches
Slack and email through the matrix's fallback saying so, and a slow PagerDuty delays no other
channel.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from remediator.actions.kubernetes import REQUEST_TIMEOUT
from remediator.notify.outbox import QuickRetries
from remediator.remediation.steps import ATTEMPTS
from remediator.store import Remediation, Store, open_store
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, FakeKubernetes
from tests.support.fault_proxy import FaultProxy
from tests.support.figures import Figures, scale
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import PD_ACCEPTED, Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES, shipped_matrix
from tests.support.service_process import ServiceProcess, eventually
from tests.support.services import free_port
from tests.support.webhooks import webhook, webhook_alert

SCENARIO = "Slow downstream (Kubernetes API, PagerDuty) through the fault proxy"
EXPECTED = "timeouts, bounded retries, per-channel breaker, fallback channel"
TOKEN = "s3cret"
# PagerDuty's and Slack's timeout per attempt: the shipped 10 s in the long run; 2 s in CI, so
# that a black-holed page has used its quick retries within seconds.
CHANNEL_TIMEOUT = scale(1, 10)
QUICK = QuickRetries()  # what the service's outbox is built with
FIRST_BACKOFF = 10.0  # the outbox's wait after a message's first failed send: 5 s * 2**1
BREAKER_FAILURES = 5  # failed sends in a row that open a channel's breaker (outbox.py)
DELIVERED_WITHIN = 60.0  # the figure for an escalation
FALLBACK_SAYS = "PagerDuty could not be reached"
PAGERDUTY_LATENCY = 5.0  # seconds late, each of PagerDuty's answers, in the slow case
SLACK_WITHIN = 4.0  # Slack's message, while PagerDuty is slow: before its send in progress ends

RESTART_POLICY = """\
name: downstream-restart
description: One change, so that every request the run makes is a request of that change.
match:
  - alertname="DownstreamStall"
severity: P2
target:
  kind: Deployment
  namespace: "{{ labels.namespace }}"
  name: "{{ labels.deployment }}"
steps:
  - action: kubernetes.rollout_restart
    params: {min_available: 0}
    timeout: 45s
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: 10, per: 1h}
"""
STEP_TIMEOUT = 45.0
DEPLOYMENTS = ("reset-api", "hole-api", "slow-api")


@dataclass
class Downstream:
    """The service, and every stand-in it talks to with the proxies in between."""

    service: ServiceProcess
    store: Store
    kubernetes: FakeKubernetes
    kubernetes_proxy: FaultProxy
    pagerduty: Recorder
    pagerduty_proxy: FaultProxy
    slack: Recorder
    mailbox: Mailbox
    dsn: str

    async def post(self, labels: dict[str, str], *, status: str = "firing") -> None:
        name = labels["alertname"] + labels.get("deployment", labels.get("instance", ""))
        alert = webhook_alert(
            labels,
            fingerprint=hashlib.sha256(name.encode()).hexdigest()[:16],
            starts_at="2026-03-01T10:00:00Z",
            status=status,
            ends_at=datetime.now(UTC).isoformat(),
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.service.url}/api/v1/alerts",
                json=webhook(alert),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as answer,
        ):
            assert answer.status == 200, await answer.text()

    async def run_of(self, deployment: str) -> Remediation | None:
        target = f"Deployment/{NAMESPACE}/{deployment}"
        runs = [r for r in await self.store.list_remediations(50) if r.target == target]
        return runs[0] if runs else None

    def patches_of(self, deployment: str) -> int:
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{deployment}"
        return sum(1 for method, at, _ in self.kubernetes.writes if (method, at) == ("PATCH", path))

    def pages(self) -> list[dict[str, Any]]:
        return [r.json for r in self.pagerduty.requests]

    def slack_texts(self) -> list[str]:
        return [str(r.json) for r in self.slack.requests]

    def emails(self) -> list[str]:
        return [envelope.content.decode() for envelope, _ in self.mailbox.received]

    def fallback_emails(self) -> list[str]:
        return [m for m in self.emails() if FALLBACK_SAYS in m]

    async def outbox_errors(self, channel: str) -> list[str]:
        connection = await asyncpg.connect(self.dsn)
        try:
            rows = await connection.fetch(
                "SELECT last_error FROM outbox WHERE channel = $1 AND last_error IS NOT NULL",
                channel,
            )
        finally:
            await connection.close()
        return [row["last_error"] for row in rows]


def matrix_for(text: str, *, pagerduty_url: str, smtp_port: int) -> str:
    """The shipped matrix with this test's stand-ins and channel timeout."""
    replacements = {
        "    routing_key_env: PAGERDUTY_ROUTING_KEY\n": (
            "    routing_key_env: PAGERDUTY_ROUTING_KEY\n"
            f"    events_url: {pagerduty_url}/v2/enqueue\n"
            f"    timeout: {CHANNEL_TIMEOUT}s\n"
        ),
        "    webhook_url_env: SLACK_WEBHOOK_URL\n": (
            f"    webhook_url_env: SLACK_WEBHOOK_URL\n    timeout: {CHANNEL_TIMEOUT}s\n"
        ),
        "smtp_host: smtp.example.com": "smtp_host: 127.0.0.1",
        "smtp_port: 587": f"smtp_port: {smtp_port}",
        "    username_env: SMTP_USERNAME\n    password_env: SMTP_PASSWORD\n": "",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture
async def downstream(
    tmp_path: Path,
    postgres_dsn: str,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Downstream]:
    async with contextlib.AsyncExitStack() as stack:
        kubernetes = FakeKubernetes()
        await kubernetes.start(free_port())
        stack.push_async_callback(kubernetes.close)
        for name in DEPLOYMENTS:
            kubernetes.seed_deployment(NAMESPACE, name, replicas=2, ready=2)
        pagerduty = Recorder(Answer(202, PD_ACCEPTED))
        slack = Recorder(Answer(200, "ok"))
        for recorder in (pagerduty, slack):
            await recorder.start()
            stack.push_async_callback(recorder.close)
        proxies = [
            await FaultProxy("127.0.0.1", int(upstream.rsplit(":", 1)[1])).start()
            for upstream in (kubernetes.url, pagerduty.url)
        ]
        for proxy in proxies:
            stack.push_async_callback(proxy.close)

        policies = tmp_path / "policies"
        shutil.copytree(SHIPPED_POLICIES, policies)
        (policies / "downstream-restart.yaml").write_text(RESTART_POLICY)
        matrix = policies / "escalation.yaml"
        matrix.write_text(
            matrix_for(shipped_matrix(), pagerduty_url=proxies[1].url, smtp_port=mailbox[1])
        )
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG.format(url=proxies[0].url))
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack.url}/services/T0/B0/secret")
        service = await ServiceProcess.start(
            tmp_path,
            database_url=postgres_dsn,
            webhook_token=TOKEN,
            mode="live",
            kubeconfig=str(kubeconfig),
            policies=str(policies),
        )
        stack.callback(stopped_cleanly, service)
        for proxy in proxies:  # faults end first: no send waits on a black hole at shutdown
            stack.push_async_callback(proxy.close)
        store = await open_store(postgres_dsn)
        stack.push_async_callback(store.close)
        yield Downstream(
            service,
            store,
            kubernetes,
            proxies[0],
            pagerduty,
            proxies[1],
            slack,
            mailbox[0],
            postgres_dsn,
        )


def stopped_cleanly(service: ServiceProcess) -> None:
    assert service.stop() == 0, service.log_path.read_text()[-3000:]


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str, timeout: float) -> None:
    async def holds() -> bool:
        outcome = condition()
        return await outcome if isinstance(outcome, Awaitable) else outcome

    await eventually(holds, what=what, timeout=timeout)


def stall(deployment: str) -> dict[str, str]:
    return {
        "alertname": "DownstreamStall",
        "namespace": NAMESPACE,
        "deployment": deployment,
        "severity": "high",
    }


def disk_full(instance: str) -> dict[str, str]:
    """No policy matches it: a P1 page by its severity alone (PagerDuty and Slack)."""
    return {"alertname": "DiskFull", "instance": instance, "severity": "critical"}


async def steps_of(downstream: Downstream, deployment: str) -> list[tuple[str, str, int]]:
    run = await downstream.run_of(deployment)
    assert run is not None
    return [(s.action, s.outcome, s.attempts) for s in await downstream.store.steps(run.id)]


async def test_a_kubernetes_api_that_resets_hangs_or_crawls_costs_bounded_attempts(
    downstream: Downstream, figures: Figures
) -> None:
    """Reset: the step's configured attempts, then failed and escalated. Black hole: the
    request times out, the retry makes the change once. Latency: slower, one attempt."""
    proxy = downstream.kubernetes_proxy

    async def outcome_of(deployment: str, *wanted: str) -> bool:
        run = await downstream.run_of(deployment)
        return run is not None and run.outcome in wanted

    proxy.reset()
    posted = time.monotonic()
    await downstream.post(stall("reset-api"))
    await until(lambda: outcome_of("reset-api", "failed"), "the reset run to fail", 30)
    [(_, reset_outcome, reset_attempts)] = await steps_of(downstream, "reset-api")
    resets = proxy.counts.resets
    await until(
        lambda: any("reset-api" in text for text in downstream.slack_texts()),
        "the failed run to be escalated to Slack",
        DELIVERED_WITHIN,
    )
    escalated_after = time.monotonic() - posted

    proxy.black_hole()
    await downstream.post(stall("hole-api"))
    await until(lambda: proxy.counts.black_holed >= 1, "a request to be black-holed", 30)
    proxy.passing()  # new connections pass; the held one never gets an answer
    await until(lambda: outcome_of("hole-api", "verifying", "failed"), "the held run's end", 60)
    recovered_after = time.monotonic() - proxy.counts.held_at[0]
    [(_, hole_outcome, hole_attempts)] = await steps_of(downstream, "hole-api")

    proxy.latency(1.0)  # every chunk of every answer a second late
    started = time.monotonic()
    await downstream.post(stall("slow-api"))
    await until(lambda: outcome_of("slow-api", "verifying", "failed"), "the slow run's end", 60)
    slow_seconds = time.monotonic() - started
    [(_, slow_outcome, slow_attempts)] = await steps_of(downstream, "slow-api")
    patches = {name: downstream.patches_of(name) for name in DEPLOYMENTS}

    timeout = REQUEST_TIMEOUT.sock_read or 0.0
    passed = (
        (reset_outcome, reset_attempts) == ("failed", ATTEMPTS)
        and resets <= 2 * ATTEMPTS  # aiohttp sends an idempotent request again once
        and (hole_outcome, hole_attempts) == ("ok", 2)
        and timeout <= recovered_after < STEP_TIMEOUT
        and (slow_outcome, slow_attempts) == ("ok", 1)
        and patches == {"reset-api": 0, "hole-api": 1, "slow-api": 1}
    )
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"Kubernetes API reset: step {reset_outcome} after {reset_attempts} attempts "
            f"(configured {ATTEMPTS}), {resets} connections reset, on Slack "
            f"{escalated_after:.1f} s after the alert; black hole: "
            f"request timed out and the retry made the change in {recovered_after:.1f} s "
            f"(request timeout {timeout:g} s, step timeout {STEP_TIMEOUT:g} s), attempts "
            f"{hole_attempts}; 1 s latency: {slow_attempts} attempt in {slow_seconds:.1f} s; "
            f"PATCHes {patches}"
        ),
        passed=passed,
    )
    assert (reset_outcome, reset_attempts) == ("failed", ATTEMPTS)
    assert resets <= 2 * ATTEMPTS, resets
    assert (hole_outcome, hole_attempts) == ("ok", 2)
    assert timeout <= recovered_after < STEP_TIMEOUT, recovered_after
    assert (slow_outcome, slow_attempts) == ("ok", 1)
    assert patches == {"reset-api": 0, "hole-api": 1, "slow-api": 1}


async def test_a_page_pagerduty_does_not_take_falls_back_to_slack_and_email_and_resolves_in_order(
    downstream: Downstream, figures: Figures
) -> None:
    """PagerDuty black-holed: its quick retries, each under the channel timeout, then the
    matrix's fallback tells Slack and email, saying PagerDuty was not reached. Once PagerDuty
    answers, the outbox's backoff delivers the page, and the resolve after it, never before."""
    proxy = downstream.pagerduty_proxy
    proxy.black_hole()
    posted = time.monotonic()
    await downstream.post(disk_full("db-1"))

    await until(
        lambda: any("DiskFull" in text for text in downstream.slack_texts()),
        "the P1 page on Slack, PagerDuty's partner at P1",
        DELIVERED_WITHIN,
    )
    slack_after = time.monotonic() - posted
    await until(lambda: downstream.fallback_emails() != [], "the fallback", DELIVERED_WITHIN)
    fallback_after = time.monotonic() - posted
    held = proxy.counts.black_holed
    slack_fallback = [t for t in downstream.slack_texts() if FALLBACK_SAYS in t]

    proxy.passing()
    await downstream.post(disk_full("db-1"), status="resolved")
    await until(lambda: len(downstream.pages()) >= 1, "the page's retry at PagerDuty", 60)
    # From the last attempt's timeout to the retry: the outbox's backoff, not a retry storm.
    retried_after = time.monotonic() - (proxy.counts.held_at[-1] + CHANNEL_TIMEOUT)
    await until(lambda: len(downstream.pages()) >= 2, "the resolve at PagerDuty", 60)
    actions = [page["event_action"] for page in downstream.pages()]
    await until(
        lambda: any("[resolved] DiskFull" in m for m in downstream.emails()),
        "the resolve by email, which heard the page",
        30,
    )

    passed = (
        held == QUICK.attempts
        and slack_after < DELIVERED_WITHIN
        and fallback_after < DELIVERED_WITHIN
        and len(slack_fallback) == 1
        and retried_after >= FIRST_BACKOFF
        and actions == ["trigger", "resolve"]
    )
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"PagerDuty black hole ({CHANNEL_TIMEOUT} s channel timeout): {held} attempts "
            f"(configured {QUICK.attempts}); the P1 page on Slack after {slack_after:.1f} s, "
            f"the fallback to Slack and email after {fallback_after:.1f} s (within 60 s: "
            f"{fallback_after < DELIVERED_WITHIN}); PagerDuty, answering again, had the "
            f"page's retry {retried_after:.1f} s after the last attempt (backoff "
            f"{FIRST_BACKOFF:g} s), then {actions}"
        ),
        passed=passed,
    )
    assert held == QUICK.attempts
    assert slack_after < DELIVERED_WITHIN
    assert fallback_after < DELIVERED_WITHIN
    assert len(slack_fallback) == 1, slack_fallback
    assert retried_after >= FIRST_BACKOFF, retried_after
    assert actions == ["trigger", "resolve"]  # a resolve never overtakes its page


async def test_pagerduty_s_breaker_opens_after_its_failures_and_the_pages_still_reach_people(
    downstream: Downstream, figures: Figures
) -> None:
    """PagerDuty resets every connection. Pages come one after the other: each send (a new
    page, or an earlier one's retry) costs the quick retries, until the breaker opens; then
    PagerDuty is not tried at all, and every page, tried or not, reaches email through the
    fallback."""
    proxy = downstream.pagerduty_proxy
    proxy.reset()
    pages = scale(BREAKER_FAILURES + 2, BREAKER_FAILURES + 10)
    started = time.monotonic()
    for n in range(1, pages + 1):
        await downstream.post(disk_full(f"db-{n}"))
        await until(fallen_back(downstream, n), f"page {n} to fall back to email", DELIVERED_WITHIN)
    delivered_in = time.monotonic() - started
    attempts = proxy.counts.resets
    opened = "channel breaker open" in await downstream.outbox_errors("pagerduty")

    passed = attempts == BREAKER_FAILURES * QUICK.attempts and opened
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"PagerDuty resetting, {pages} pages: {attempts} attempts "
            f"(= {BREAKER_FAILURES} failed sends x {QUICK.attempts} quick retries), then "
            f"the breaker open ({opened}) and no attempt since; all {pages} reached email "
            f"through the fallback within {delivered_in:.1f} s"
        ),
        passed=passed,
    )
    assert attempts == BREAKER_FAILURES * QUICK.attempts
    assert opened


def fallen_back(downstream: Downstream, pages: int) -> Callable[[], bool]:
    return lambda: len(downstream.fallback_emails()) >= pages


async def test_a_slow_pagerduty_delays_no_other_channel(
    downstream: Downstream, figures: Figures
) -> None:
    """PagerDuty answers, but each answer is 5 s late, with a queue of pages to send: a P2
    alert meanwhile reaches Slack at once (not after PagerDuty's send in progress), and
    PagerDuty gets each page once."""
    proxy = downstream.pagerduty_proxy
    proxy.latency(PAGERDUTY_LATENCY)
    pages = scale(8, 20)
    for n in range(pages):
        await downstream.post(disk_full(f"web-{n}"))
    await until(lambda: len(downstream.pages()) >= 1, "PagerDuty to be sending", 30)
    posted = time.monotonic()
    await downstream.post({"alertname": "QueueStuck", "instance": "mq-1", "severity": "high"})
    await until(
        lambda: any("QueueStuck" in text for text in downstream.slack_texts()),
        "the P2 message on Slack",
        DELIVERED_WITHIN,
    )
    slack_after = time.monotonic() - posted
    sent = len(downstream.pages())
    proxy.reset()  # the rest fail fast now: nothing waits on PagerDuty at shutdown
    keys = [page["dedup_key"] for page in downstream.pages()]

    passed = slack_after < SLACK_WITHIN and len(keys) == len(set(keys))
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"PagerDuty {PAGERDUTY_LATENCY:g} s late per answer, {pages} pages queued: a P2 "
            "alert reached Slack "
            f"in {slack_after:.1f} s (PagerDuty had taken {sent} meanwhile, none twice)"
        ),
        passed=passed,
    )
    assert slack_after < SLACK_WITHIN, slack_after
    assert len(keys) == len(set(keys)), keys
