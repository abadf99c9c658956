"""Guard state under Redis faults (issue 9): refused, hung, restarted empty, while alerts flow.

Two `remediator serve` replicas in live mode share one PostgreSQL schema and a redis-server of
this test's own; they act on the fake Kubernetes API and page through recording stand-ins for
PagerDuty and Slack. While Redis refuses connections, hangs its scripts (`CLIENT PAUSE WRITE`:
PING still answers, so /health looks fine) or is frozen (SIGSTOP), nothing mutates, not even
a run already under way, and every alert that arrives is stored and escalated. When Redis
comes back empty or is flushed mid-budget, the guards are re-seeded from the store's runs, so
no replica finds the budget full again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio
import redis.exceptions

from remediator.guards.base import Attempt, BreakerSpec, BreakerState, PastRun
from remediator.guards.guards import Admitted, Blocked, Guards, breaker_spec
from remediator.guards.memory import MemoryGuards
from remediator.guards.redis import RedisGuards
from remediator.metrics import Metrics
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import CircuitBreaker
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.runtime.live_policies import LivePolicies
from remediator.store import open_store
from tests.support.builders import memory_plan
from tests.support.fake_kubernetes import NAMESPACE, FakeKubernetes
from tests.support.figures import Figures, scale
from tests.support.notify_recorder import Recorder
from tests.support.policies import SHIPPED_POLICIES
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess, eventually
from tests.support.stack import (
    ALERTNAME,
    SHARED_LIMIT,
    Posted,
    Stack,
    running_stack,
    settles,
    target_of,
)

SCENARIO = "Redis refused, hung, restarted empty, while alerts flow"
EXPECTED = (
    "no mutating action while guard state is unknown; intake and escalation continue; "
    "budgets not reset by a flush"
)
BUDGET = 5  # runs per hour of the one shared rate limit
ALERTS_PER_FAULT = scale(2, 12)
POLICY = f"""\
name: guarded-restart
description: Restart, wait for the rollout, add a replica; one budget for every deployment.
match:
  - alertname="{ALERTNAME}"
severity: P1
target:
  kind: Deployment
  namespace: "{{{{ labels.namespace }}}}"
  name: "{{{{ labels.deployment }}}}"
steps:
  - action: kubernetes.rollout_restart
    params: {{min_available: 0}}
  - action: kubernetes.rollout_status
    params: {{wait_up_to: 1m}}
  - action: kubernetes.scale
    params: {{by: 1, max_replicas: 10}}
verify:
  resolved_within: 1h
rate_limit:
  key: {SHARED_LIMIT}
  windows:
    - {{max: {BUDGET}, per: 1h}}
circuit_breaker: {{failures: 100, window: 1h, cooldown: 1h}}
"""
QUICK_ALERTNAME = "GuardFaultQuick"
QUICK_VERIFY = f"""\
name: quick-verify
description: Add a replica; the alert must resolve within seconds, or the run failed.
match:
  - alertname="{QUICK_ALERTNAME}"
severity: P1
target:
  kind: Deployment
  namespace: "{{{{ labels.namespace }}}}"
  name: "{{{{ labels.deployment }}}}"
steps:
  - action: kubernetes.scale
    params: {{by: 1, max_replicas: 10}}
verify:
  resolved_within: 3s
rate_limit:
  windows:
    - {{max: 10, per: 1h}}
circuit_breaker: {{failures: 100, window: 1h, cooldown: 1h}}
"""


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a process for the block, SIGCONT after it, whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
async def stack(
    tmp_path: Path,
    postgres_dsn: str,
    redis_server: RedisServer,
    kubernetes: FakeKubernetes,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    redis_server.start()
    try:
        async with running_stack(
            tmp_path,
            replicas=2,
            policies=[POLICY, QUICK_VERIFY],
            dsn=postgres_dsn,
            redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
            kubernetes=kubernetes,
            pagerduty=pagerduty_api,
            slack=slack_api,
            monkeypatch=monkeypatch,
        ) as running:
            yield running
    finally:
        if redis_server.process is not None:  # SIGCONT, in case the test left it stopped
            os.kill(redis_server.process.pid, signal.SIGCONT)


@pytest.fixture
async def control(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """The test's own connection to its redis-server: FLUSHALL, CLIENT PAUSE."""
    client = redis.asyncio.Redis(port=redis_server.port, socket_timeout=5)
    yield client
    await client.aclose()


async def redis_health(replica: ServiceProcess) -> str:
    """What the replica's /health says of Redis."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{replica.url}/health", headers=replica.operator) as answer,
    ):
        status: str = (await answer.json())["checks"]["redis"]["status"]
        return status


async def redis_answers(control: redis.asyncio.Redis) -> bool:
    try:
        return bool(await control.ping())
    except (OSError, redis.exceptions.RedisError):
        return False


async def alerts_during_fault(stack: Stack, prefix: str) -> list[Posted]:
    """Alerts to every replica in turn while a fault holds; waits until each is decided."""
    names = [f"{prefix}-{i:02d}" for i in range(ALERTS_PER_FAULT)]
    posted = await asyncio.gather(
        *(stack.post(stack.replicas[i % len(stack.replicas)], name) for i, name in enumerate(names))
    )
    await settles(lambda: stack.all_decided(names), timeout=20.0 + 5.0 * ALERTS_PER_FAULT)
    return list(posted)


async def test_redis_refused_hung_and_flushed_never_lets_a_change_through(
    stack: Stack,
    redis_server: RedisServer,
    control: redis.asyncio.Redis,
    kubernetes: FakeKubernetes,
    figures: Figures,
) -> None:
    first, second = stack.replicas
    writes_while_down = 0
    during: list[Posted] = []

    # Before any fault: a run acts (a restart, then a scale) and waits for its verification.
    before = await stack.post(first, "before-00")
    assert await settles(lambda: stack.all_decided(["before-00"]))
    assert await stack.outcomes(["before-00"]) == {"before-00": VERIFYING}
    assert stack.mutations() > 0, "the run before the faults made no change"

    # Refused. When redis-server stops, a run is between its restart and its scale, and
    # another waits for a verification that ends (failed) during the outage; the first alert
    # resolves during it. Each run's end is recorded and escalated; nothing changes.
    kubernetes.hold_rollouts = True
    await stack.post(second, "inflight-00")
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/inflight-00"

    async def waiting_for_the_rollout() -> bool:
        requests = [(method, at) for method, at, _ in kubernetes.requests]
        patched = [i for i, request in enumerate(requests) if request == ("PATCH", path)]
        return len(patched) == 1 and ("GET", path) in requests[patched[0] + 1 :]

    await eventually(waiting_for_the_rollout, what="the in-flight run to wait for its rollout")
    await stack.post(first, "expiring-00", labels={"alertname": QUICK_ALERTNAME})
    await eventually(
        lambda: outcome_is(stack, "expiring-00", VERIFYING), what="a run to wait 3s to verify"
    )
    redis_server.stop()
    stopped_at = datetime.now(UTC)
    mark = stack.mutations()
    during += await alerts_during_fault(stack, "refused")
    await stack.post(first, "before-00", starts_at=before.starts_at, status="resolved")
    kubernetes.hold_rollouts = False
    kubernetes.converge(NAMESPACE, "inflight-00")  # the run goes on, to its scale step
    await settles(lambda: stack.all_decided(["inflight-00"]))
    await settles(lambda: outcome_is(stack, "expiring-00", ("failed", None)), timeout=20.0)
    await settles(lambda: outcome_is(stack, "before-00", ("succeeded", None)))
    writes_while_down += stack.mutations() - mark
    in_flight = await stack.run_of("inflight-00")
    in_flight_ok = (
        in_flight is not None
        and in_flight.outcome == "interrupted"
        and "before kubernetes.scale" in in_flight.reason
    )
    expired = await stack.run_of("expiring-00")
    ended_while_down = {
        "expired while refused": expired is not None
        and expired.outcome == "failed"
        and expired.finished_at is not None
        and expired.finished_at > stopped_at,
        "resolved while refused": await outcome_is(stack, "before-00", ("succeeded", None)),
    }
    redis_server.start()
    await eventually(lambda: redis_answers(control), what="redis-server to answer again")

    # Restarted empty: the guards answer again, re-seeded from the store's runs.
    after_restart = await stack.post(first, "restarted-00")
    await settles(lambda: stack.all_decided(["restarted-00"]))
    restarted = await stack.outcomes(["restarted-00"])
    used_after_restart = await budget_used(stack, second)
    admitted_before_flush = await stack.admitted_runs()

    # Hung: scripts wait on CLIENT PAUSE WRITE (PING still answers), then on a frozen server.
    # A verification ends (failed) during the pause: its breaker must count it once, although
    # the script counting it is sent twice (the client's retry) and again before the next
    # admission, and Redis runs every copy once the pause ends.
    await stack.post(second, "expiring-01", labels={"alertname": QUICK_ALERTNAME})
    await eventually(
        lambda: outcome_is(stack, "expiring-01", VERIFYING), what="a run to wait 3s to verify"
    )
    await control.execute_command("CLIENT", "PAUSE", "600000", "WRITE")
    paused_at = datetime.now(UTC)
    try:
        assert await control.ping()  # PING answers; the guards' scripts wait
        health_while_paused = await redis_health(first)
        mark = stack.mutations()
        during += await alerts_during_fault(stack, "paused")
        await settles(lambda: outcome_is(stack, "expiring-01", ("failed", None)), timeout=25.0)
        writes_while_down += stack.mutations() - mark
    finally:
        await control.execute_command("CLIENT", "UNPAUSE")
    hung_expiry = await stack.run_of("expiring-01")
    ended_while_down["expired while hung"] = (
        hung_expiry is not None
        and hung_expiry.outcome == "failed"
        and hung_expiry.finished_at is not None
        and hung_expiry.finished_at > paused_at
    )
    assert redis_server.process is not None
    with frozen(redis_server.process.pid):
        mark = stack.mutations()
        during += await alerts_during_fault(stack, "frozen")
        writes_while_down += stack.mutations() - mark
    await eventually(lambda: redis_answers(control), what="redis-server to answer again")

    counted = await failures_counted(stack, first, "quick-verify", "expiring-01")
    names = [posted.name for posted in during]
    decided = await stack.outcomes(names)
    not_blocked = {n: decided.get(n) for n in names if decided.get(n) != BLOCKED}
    escalated = await escalation_of(stack, names)
    stored = [p for p in during if p.status == 200 and p.accepted == 1 and await stack.stored(p)]

    async def ends_escalated() -> bool:
        failed = stack.paged_about("expiring-00", "failed") == {"pagerduty", "slack"}
        resolved = await stack.resolve_sent("guarded-restart", "before-00")
        return failed and resolved == {"pagerduty", "slack"}

    ends_told = await settles(ends_escalated)

    # Flushed mid-budget: one replica alone first, then the other alone, so each meets the
    # flushed state; together they must not admit more than the budget has left.
    await control.flushall()
    left = BUDGET - admitted_before_flush
    after_flush = [f"flushed-{i:02d}" for i in range(left + 3)]
    alone_first, alone_then = after_flush[: left + 1], after_flush[left + 1 :]
    with frozen(first.process.pid):
        await asyncio.gather(*(stack.post(second, name) for name in alone_first))
        await settles(lambda: stack.all_decided(alone_first))
    with frozen(second.process.pid):
        await asyncio.gather(*(stack.post(first, name) for name in alone_then))
        await settles(lambda: stack.all_decided(alone_then))
    flushed = await stack.outcomes(after_flush)
    admitted_after_flush = sum(1 for outcome, _ in flushed.values() if outcome == "verifying")
    rate_limited = sum(1 for outcome in flushed.values() if outcome == ("blocked", "rate_limit"))
    in_window = await stack.admitted_runs()

    passed = (
        writes_while_down == 0
        and in_flight_ok
        and not not_blocked
        and all(ended_while_down.values())
        and ends_told
        and counted == 1
        and health_while_paused == "unhealthy"
        and len(escalated) == len(during) == len(stored)
        and restarted == {"restarted-00": VERIFYING}
        and used_after_restart == admitted_before_flush
        and in_window <= BUDGET
        and admitted_after_flush == left
        and rate_limited == len(after_flush) - left
    )
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"{writes_while_down} mutating calls while Redis was down ({len(during)} alerts "
            f"while refused, paused and frozen; the run in flight "
            f"{in_flight.outcome if in_flight else 'missing'} before its next change; "
            f"{sum(ended_while_down.values())}/{len(ended_while_down)} runs ending meanwhile "
            f"recorded, {'and' if ends_told else 'not'} escalated; the failure ending during "
            f"the pause counted {counted} time(s) by its breaker; /health's redis check "
            f"{health_while_paused} while paused); "
            f"{len(escalated)}/{len(during)} of those alerts escalated, "
            f"{len(stored)}/{len(during)} stored; restarted empty, the budget showed "
            f"{used_after_restart} used of {admitted_before_flush} recorded runs; after "
            f"FLUSHALL {admitted_after_flush} of {len(after_flush)} alerts admitted "
            f"({left} left), {in_window} runs in the 1h window against a budget of {BUDGET}"
        ),
        passed=passed,
    )
    assert writes_while_down == 0, "a Kubernetes change was made while guard state was unknown"
    assert in_flight_ok, in_flight
    assert not not_blocked, f"not blocked as guards_unavailable: {not_blocked}"
    assert all(ended_while_down.values()), (ended_while_down, expired)
    assert ends_told, "a run that ended while Redis was down was not escalated"
    assert counted == 1, f"the failure ending while Redis hung was counted {counted} times"
    assert health_while_paused == "unhealthy", "/health hid that the guards' scripts hang"
    assert after_restart.status == 200
    assert restarted == {"restarted-00": VERIFYING}, "the guards did not resume"
    assert not set(names) - escalated, f"not escalated: {sorted(set(names) - escalated)}"
    assert len(stored) == len(during), [p for p in during if p not in stored]
    assert used_after_restart == admitted_before_flush, "the budget was reset by the restart"
    assert in_window <= BUDGET, f"{in_window} runs admitted within the hour, budget {BUDGET}"
    assert admitted_after_flush == left, flushed
    assert rate_limited == len(after_flush) - left, flushed


BLOCKED = ("blocked", "guards_unavailable")
VERIFYING = ("verifying", None)


async def outcome_is(stack: Stack, name: str, expected: tuple[str, str | None]) -> bool:
    return (await stack.outcomes([name])).get(name) == expected


async def budget_used(stack: Stack, replica: ServiceProcess) -> int:
    """What the shared rate limit's hour window holds now, as the operator API shows it."""
    guards = await stack.guards(replica)
    [limit] = [limit for limit in guards["rate_limits"] if limit["key"] == SHARED_LIMIT]
    [window] = limit["windows"]
    used: int = window["used"]
    return used


async def failures_counted(
    stack: Stack, replica: ServiceProcess, policy: str, name: str
) -> int | None:
    """The breaker's recent failures for this policy and deployment, as the API shows them
    (each replica's view first counts what that replica could not tell Redis before)."""
    for other in stack.replicas:
        await stack.guards(other)
    guards = await stack.guards(replica)
    key = f"{policy}:{target_of(name)}"
    found = [breaker["recent_failures"] for breaker in guards["breakers"] if breaker["key"] == key]
    return int(found[0]) if found else None


async def escalation_of(stack: Stack, names: list[str]) -> set[str]:
    """The alerts whose block reached both channels of their level (P1: PagerDuty, Slack)."""

    def told() -> set[str]:
        return {n for n in names if stack.paged_about(n, "blocked") == {"pagerduty", "slack"}}

    async def everyone_told() -> bool:
        return told() == set(names)

    await settles(everyone_told, timeout=30.0)
    return told()


# The guards alone, for what the scenario above relies on: an outcome Redis missed.


@pytest.mark.parametrize("backend_kind", ["memory", "redis"])
async def test_a_run_outcome_counts_once_however_often_it_is_told(
    backend_kind: str, redis_server: RedisServer, control: redis.asyncio.Redis
) -> None:
    """Told again (a retry whose first attempt landed after all, or a run the seed replayed),
    an outcome changes nothing: counted twice, a failure would open a breaker early."""
    if backend_kind == "redis":
        redis_server.start()
        await eventually(lambda: redis_answers(control), what="redis-server to answer")
        backend: MemoryGuards | RedisGuards = await RedisGuards.connect(
            f"redis://127.0.0.1:{redis_server.port}/0", "once:"
        )
    else:
        backend = MemoryGuards()
    spec = BreakerSpec("svc", failures=3, window=3600.0, cooldown=3600.0)
    now = time.time()
    try:
        await backend.seed([PastRun("replayed", (), spec, now - 60, now - 30, succeeded=False)])
        assert (await backend.admit(Attempt("again", (), spec, 10, 60.0))).allowed
        for run_id in ("replayed", "again", "again", "replayed"):
            await backend.finish(run_id, spec, succeeded=False)
        breaker = (await backend.snapshot([], [spec])).breakers["svc"]
    finally:
        await backend.close()
    assert (breaker.state, breaker.recent_failures) == (BreakerState.CLOSED, 2)


async def test_an_outcome_redis_missed_counts_before_the_next_admission(
    redis_server: RedisServer, control: redis.asyncio.Redis, tmp_path: Path, shipped: PolicySet
) -> None:
    """A run fails while Redis is frozen: its end is recorded, and no run is admitted past
    the breaker before the failure has been counted there."""
    redis_server.start()
    await eventually(lambda: redis_answers(control), what="redis-server to answer")
    backend = await RedisGuards.connect(
        f"redis://127.0.0.1:{redis_server.port}/0", "settle:", socket_timeout=0.5
    )
    store = await open_store(f"sqlite:///{tmp_path / 'guards.db'}")
    guards = Guards(
        backend, store, Metrics().guards, live=True, guardrails=lambda: shipped.guardrails
    )
    plan = dataclasses.replace(memory_plan(shipped), circuit_breaker=CircuitBreaker(failures=1))
    assert redis_server.process is not None
    try:
        first = await guards.admit(plan)
        assert isinstance(first, Admitted)
        await guards.release(first)
        with frozen(redis_server.process.pid):
            await guards.record_outcome(first.run_id, breaker_spec(plan), succeeded=False)
            during = await guards.admit(plan)
        after = await guards.admit(plan)
        runs = await store.runs_since(datetime.now(UTC) - timedelta(hours=1))
    finally:
        await backend.close()
        await store.close()
    assert isinstance(during, Blocked), during
    assert during.guard == "guards_unavailable"
    assert isinstance(after, Blocked), "admitted past a breaker that missed a failure"
    assert after.guard == "circuit_breaker"
    assert [run.succeeded for run in runs] == [False]  # recorded although Redis was not told


async def test_an_outcome_redis_missed_is_told_at_the_dispatcher_s_next_poll(
    redis_server: RedisServer, control: redis.asyncio.Redis, tmp_path: Path, shipped: PolicySet
) -> None:
    """The replica whose run failed may have nothing more to admit: its dispatcher's next
    poll tells Redis, so that another replica's next admission finds the breaker open."""
    redis_server.start()
    await eventually(lambda: redis_answers(control), what="redis-server to answer")
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    backend = await RedisGuards.connect(url, "poll:", socket_timeout=0.5)
    other_backend = await RedisGuards.connect(url, "poll:")
    store = await open_store(f"sqlite:///{tmp_path / 'guards.db'}")
    guards, other = (
        Guards(b, store, Metrics().guards, live=True, guardrails=lambda: shipped.guardrails)
        for b in (backend, other_backend)
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "escalation.yaml").write_text((SHIPPED_POLICIES / "escalation.yaml").read_text())
    live = LivePolicies.load(policies, Metrics().policies)
    dispatcher = Dispatcher(store, Runner(store, guards, live, {}))
    plan = dataclasses.replace(memory_plan(shipped), circuit_breaker=CircuitBreaker(failures=1))
    assert redis_server.process is not None
    try:
        first = await guards.admit(plan)
        assert isinstance(first, Admitted)
        await guards.release(first)
        with frozen(redis_server.process.pid):
            await guards.record_outcome(first.run_id, breaker_spec(plan), succeeded=False)
        assert await dispatcher.run_once() == 0  # an idle poll: nothing queued
        elsewhere = await other.admit(plan)
    finally:
        await backend.close()
        await other_backend.close()
        await store.close()
    assert isinstance(elsewhere, Blocked), "another replica admitted past the missed failure"
    assert elsewhere.guard == "circuit_breaker"
