"""Acknowledgement under crashes (issue 9): no 2xx without a durable row, nothing lost.

A real Alertmanager posts to the service through a recording proxy (the delivery log) while the
test feeds it a stream of distinct alerts; then the service is killed -9 at random moments
(PostgreSQL, and SQLite with a single process), or its own PostgreSQL is crashed with
`pg_ctl stop -m immediate`. Every alert posted to Alertmanager must end up stored, every alert
of a 2xx answer must have been stored by the time of that answer, Alertmanager must never hear
a 4xx, and (SQLite) each alert episode must be run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.store import Store, StoreUnavailable, open_store
from tests.support.alertmanager import ready, running_alertmanager
from tests.support.delivery_log import AlertState, Delivery, DeliveryLog
from tests.support.figures import Figures, scale
from tests.support.policies import SHIPPED_POLICIES
from tests.support.postgres_server import PostgresServer
from tests.support.service_process import OPERATOR, ServiceProcess, eventually
from tests.support.services import free_port

TOKEN = "s3cret"
KILL_CYCLES = scale(12, 200)
OUTAGES = scale(2, 10)
OUTAGE_SECONDS = 3.0  # how long PostgreSQL stays down each time
LEASE_SECONDS = "3"  # the least the service takes: a killed worker's claims lapse in 4.5 s
AFTER_ANSWER_SECONDS = 0.03  # a kill this soon after a request lands in the work it queued
SETTLE_SECONDS = 60.0  # ample for Alertmanager's backoff (at most a few seconds) and take-overs

# Each batch of alerts is a group of its own, sent once (repeat_interval 1h): a notification
# is sent again only when it was not acknowledged, so an alert answered 2xx and not stored
# would stay lost. Alertmanager retries a failed notification with backoff for 10 s, then again
# at each group_interval, until it is acknowledged.
ALERTMANAGER_CONFIG = """
route:
  receiver: remediator
  group_by: ['alertname', 'batch']
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: remediator
    webhook_configs:
      - url: {url}/api/v1/alerts
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""

# Live, acting through an HTTP hook the test records: whatever acted must be on record.
FIXED_ALERT = "StoreCrashTest"
FIX_POLICY = """\
name: fix-on-alert
match:
  - alertname="{alertname}"
severity: P3
target:
  kind: Application
  name: "{{ labels.id }}"
  url: "http://{{ labels.instance }}"
steps:
  - action: http.request
    params:
      method: PUT
      url: "http://{{ labels.instance }}/fix/{{ labels.id }}/{{ alert.fingerprint }}"
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: 5, per: 1h}
"""


@dataclass
class AlertStream:
    """Distinct alerts posted to Alertmanager's API, a small batch at a time, until stopped."""

    alertmanager: str
    labels_of: Callable[[int], dict[str, str]]  # the labels of the n-th alert
    batch_size: int = 3
    period: float = 0.15
    posted: dict[str, datetime] = field(default_factory=dict)  # id label -> startsAt

    @contextlib.asynccontextmanager
    async def flowing(self) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(self._post_until(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    async def _post_until(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            batch = 0
            while not stop.is_set():
                starts_at = datetime.now(UTC)
                numbers = range(batch * self.batch_size, (batch + 1) * self.batch_size)
                alerts = [
                    {
                        "labels": {**self.labels_of(n), "id": f"a{n}", "batch": f"b{batch}"},
                        "startsAt": starts_at.isoformat(),
                        "endsAt": (starts_at + timedelta(hours=1)).isoformat(),
                    }
                    for n in numbers
                ]
                async with session.post(f"{self.alertmanager}/api/v2/alerts", json=alerts) as r:
                    assert r.status == 200, await r.text()
                self.posted.update({f"a{n}": starts_at for n in numbers})
                batch += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.period)


@dataclass
class CrashingService:
    """The service, killed -9 and restarted on the same port, where Alertmanager sends."""

    tmp_path: Path
    port: int
    settings: dict[str, str]
    process: ServiceProcess | None = None
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await ServiceProcess.start(
            self.tmp_path, port=self.port, client_ssl=None, **self.settings
        )

    async def kill_in_a_loop(
        self, cycles: int, log: DeliveryLog, *, after_answers: float = 0.0
    ) -> None:
        """Kill at a random moment of the load, just after a request was forwarded: at a
        random point before the service would answer it (its receipt, validation, commit),
        or, for a share `after_answers` of the kills, a little later, as the work it queued
        runs (a run's end and its event's completion are commits too)."""
        assert self.process is not None
        for _ in range(cycles):
            await asyncio.sleep(random.uniform(0.0, 0.3))  # a random moment
            if await log.next_forward(timeout=5.0):  # then the next request (a restart may wait)
                later = random.random() < after_answers
                within = AFTER_ANSWER_SECONDS if later else log.quick_answer_seconds()
                await asyncio.sleep(random.uniform(0.0, within))
            self.process.kill()
            self.kills += 1
            await self.start()

    async def kill_mid_request(self, log: DeliveryLog) -> None:
        """Kill while the service holds half of a request's body: before its commit, surely."""
        assert self.process is not None
        hold = log.hold_next()
        await asyncio.wait_for(hold.reached.wait(), timeout=30)
        self.process.kill()
        self.kills += 1
        hold.release.set()
        await self.start()

    def stop(self) -> int:
        return 0 if self.process is None else self.process.stop()


def policies_of_its_own(tmp_path: Path) -> str:
    """A copy of the shipped policies: every restart of a long run loads the same set."""
    copy = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, copy)
    return str(copy)


@pytest.fixture
def service_port() -> int:
    return free_port()


@pytest.fixture
async def delivery_log(service_port: int) -> AsyncIterator[DeliveryLog]:
    log = DeliveryLog(f"http://127.0.0.1:{service_port}")
    await log.start(free_port())
    yield log
    await log.close()


@pytest.fixture
async def alertmanager(
    alertmanager_binary: str, delivery_log: DeliveryLog, tmp_path: Path
) -> AsyncIterator[str]:
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(url=delivery_log.url, token=TOKEN))
    with running_alertmanager(alertmanager_binary, config, tmp_path) as url:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: ready(session, url), what="Alertmanager to be ready")
        yield url


@dataclass(frozen=True)
class FixCall:
    alert_id: str
    fingerprint: str
    at: datetime
    on_record: bool | None  # a run of the alert in the store then; None: it could not be read


@dataclass
class FixHook:
    """The application's fix endpoint. Each call looks in the store, as it comes, for the run
    that makes it: an action must never come before its durable record."""

    calls: list[FixCall] = field(default_factory=list)
    store: Store | None = None

    def app(self) -> web.Application:
        async def fix(request: web.Request) -> web.Response:
            at = datetime.now(UTC)
            fingerprint = request.match_info["fingerprint"]
            on_record = None
            if self.store is not None:
                with contextlib.suppress(StoreUnavailable):  # PostgreSQL down: checked later
                    runs = await self.store.list_remediations(1_000_000, FIXED_ALERT)
                    on_record = any(run.fingerprint == fingerprint for run in runs)
            self.calls.append(FixCall(request.match_info["id"], fingerprint, at, on_record))
            return web.json_response({})

        app = web.Application()
        app.router.add_put("/fix/{id}/{fingerprint}", fix)
        return app


@pytest.fixture
async def fix_hook() -> AsyncIterator[tuple[FixHook, str]]:
    hook = FixHook()
    async with TestServer(hook.app()) as server:
        yield hook, f"127.0.0.1:{server.port}"


async def within(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll until the condition holds; False if it did not in time (the figure says so)."""
    with contextlib.suppress(AssertionError):
        await eventually(condition, what="", timeout=timeout)
        return True
    return False


@dataclass(frozen=True)
class Acknowledgement:
    """What the store and the delivery log say of "no 2xx without a durable row"."""

    lost: list[str]  # alerts posted to Alertmanager and never stored
    unbacked: list[AlertState]  # answered 2xx, yet not stored by the time of the answer
    four_xx: list[Delivery]  # Alertmanager never retries those
    given_up: set[AlertState]  # delivered, never acknowledged: Alertmanager did not retry
    cut_off: int  # deliveries a kill cut off mid-request
    cut_before_commit: int  # of those, cut before their commit: rolled back, delivered again

    @property
    def holds(self) -> bool:
        return not (self.lost or self.unbacked or self.four_xx or self.given_up)

    def check(self) -> None:
        assert not self.lost, f"posted to Alertmanager, never stored: {self.lost[:20]}"
        assert not self.unbacked, f"answered 2xx before they were stored: {self.unbacked[:10]}"
        assert not self.four_xx, f"Alertmanager was answered 4xx: {self.four_xx[:5]}"
        assert not self.given_up, f"never acknowledged, not retried: {list(self.given_up)[:10]}"


async def acknowledgement(store: Store, stream: AlertStream, log: DeliveryLog) -> Acknowledgement:
    """Once every posted alert is stored (or SETTLE_SECONDS passed), check each delivery."""
    await within(lambda: _nothing_lost(store, stream), timeout=SETTLE_SECONDS)
    events = await store.all_events(1_000_000)
    queued = {(e.fingerprint, e.starts_at, e.kind): e.enqueued_at for e in events}

    def stored_at(state: AlertState) -> datetime | None:
        return queued.get((state.fingerprint, state.starts_at, state.status))

    unbacked = [
        state
        for state, answered_at in log.acknowledged_states()
        if (stored := stored_at(state)) is None or stored > answered_at
    ]
    cut_off = [d for d in log.deliveries if d.upstream == "dropped"]
    before_commit = [
        d for d in cut_off if any((stored_at(s) or d.answered_at) > d.answered_at for s in d.alerts)
    ]
    tried = {state for delivery in log.deliveries for state in delivery.alerts}
    return Acknowledgement(
        lost=await lost_alerts(store, stream),
        unbacked=unbacked,
        four_xx=[d for d in log.deliveries if 400 <= d.status < 500],
        given_up=tried - {state for state, _ in log.acknowledged_states()},
        cut_off=len(cut_off),
        cut_before_commit=len(before_commit),
    )


async def lost_alerts(store: Store, stream: AlertStream) -> list[str]:
    """Alerts posted to Alertmanager that are not in the store (by id label and startsAt)."""
    stored = {(r.labels.get("id"), r.starts_at) for r in await store.recent_alerts(1_000_000)}
    return sorted(i for i, starts_at in stream.posted.items() if (i, starts_at) not in stored)


async def _nothing_lost(store: Store, stream: AlertStream) -> bool:
    return not await lost_alerts(store, stream)


async def test_kill_9_at_random_points_between_receipt_and_commit_loses_no_alert(
    tmp_path: Path,
    postgres_dsn: str,
    service_port: int,
    delivery_log: DeliveryLog,
    alertmanager: str,
    figures: Figures,
) -> None:
    settings = {
        "database_url": postgres_dsn,
        "webhook_token": TOKEN,
        "policies": policies_of_its_own(tmp_path),
    }
    service = CrashingService(tmp_path, service_port, settings)
    await service.start()
    stream = AlertStream(alertmanager, lambda n: {"alertname": "IntakeCrashTest"})
    store = await open_store(postgres_dsn)
    try:
        async with stream.flowing():
            # One kill certain to land before its request's commit, then kills at random.
            await service.kill_mid_request(delivery_log)
            await service.kill_in_a_loop(KILL_CYCLES, delivery_log)
        found = await acknowledgement(store, stream, delivery_log)
    finally:
        await store.close()
        stopped = service.stop()
    figures.record(
        "kill -9 of the service at random points between receipt and commit, under load from"
        " a real Alertmanager",
        expected="no 2xx without a durable row; Alertmanager retries",
        figure=f"{len(found.lost)} alerts lost over {service.kills} kill cycles"
        f" ({len(stream.posted)} alerts; {found.cut_off} requests cut off by a kill,"
        f" {found.cut_before_commit} of them before their commit; {len(found.unbacked)}"
        f" answered 2xx without their row; {len(found.given_up)} not retried)",
        passed=found.holds and found.cut_before_commit > 0,
    )
    assert stopped == 0, f"the last service's exit code on SIGTERM: {stopped}"
    found.check()
    assert found.cut_before_commit > 0, f"no kill landed before a commit: {answers(delivery_log)}"


def answers(log: DeliveryLog) -> str:
    statuses = Counter(f"{d.status} ({d.upstream})" for d in log.deliveries)
    return ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))


async def test_postgres_killed_immediately_under_load_answers_503_and_loses_nothing(
    tmp_path: Path,
    postgres_server: PostgresServer,
    service_port: int,
    delivery_log: DeliveryLog,
    alertmanager: str,
    fix_hook: tuple[FixHook, str],
    figures: Figures,
) -> None:
    hook, instance = fix_hook
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(SHIPPED_POLICIES / "escalation.yaml", policies)
    (policies / "guardrails.yaml").write_text("max_concurrent_runs: 50\n")
    (policies / "fix-on-alert.yaml").write_text(FIX_POLICY.replace("{alertname}", FIXED_ALERT))
    settings = {
        "database_url": postgres_server.dsn,
        "webhook_token": TOKEN,
        "mode": "live",
        "policies": str(policies),
        "lease_seconds": LEASE_SECONDS,
    }
    service = CrashingService(tmp_path, service_port, settings)
    await service.start()
    stream = AlertStream(
        alertmanager,
        lambda n: {"alertname": FIXED_ALERT, "instance": instance, "severity": "warning"},
    )
    outage_health: list[tuple[int, str]] = []
    store = hook.store = await open_store(postgres_server.dsn)
    try:
        async with stream.flowing():
            for _ in range(OUTAGES):
                outage_health += await crash_postgres(postgres_server, service.url, delivery_log)
        found = await acknowledgement(store, stream, delivery_log)
        decided = await within(lambda: _each_decided(store, stream), timeout=SETTLE_SECONDS)
        unrecorded = await actions_without_record(store, hook)
    finally:
        hook.store = None
        await store.close()
        stopped = service.stop()
    answered_503 = delivery_log.count(upstream="answered", status=503)
    unhealthy = [h for h in outage_health if h != (503, "unhealthy")]
    checked = sum(call.on_record is not None for call in hook.calls)
    acted_twice = [i for i, n in Counter(call.alert_id for call in hook.calls).items() if n > 1]
    figures.record(
        "Postgres killed with `-m immediate` under load",
        expected="503 to Alertmanager, never 4xx; nothing acts without a durable record;"
        " no alert acted on twice",
        figure=f"{len(found.lost)} lost alerts after recovery; {len(found.four_xx)} 4xx answers"
        f" ({OUTAGES} crashes of {OUTAGE_SECONDS:.0f} s; {len(stream.posted)} alerts;"
        f" {answered_503} answered 503 while down; {len(hook.calls)} fix calls, {checked}"
        f" looked up as they came, {len(unrecorded)} without a run on record;"
        f" {len(acted_twice)} alerts acted on twice)",
        passed=found.holds and not unhealthy and not unrecorded and decided and not acted_twice,
    )
    assert stopped == 0, f"the last service's exit code on SIGTERM: {stopped}"
    found.check()
    assert answered_503 > 0
    assert not unhealthy, f"/health (status, store check) during the outages: {outage_health}"
    assert not unrecorded, f"fix calls without a durable run before them: {unrecorded[:10]}"
    assert decided, "some alert was never decided after PostgreSQL's recovery"
    # A change made while PostgreSQL died is put on record once it is back, not made again by
    # a take-over that found no record of it.
    assert not acted_twice, f"alerts whose fix was called more than once: {acted_twice}"


async def crash_postgres(
    server: PostgresServer, service_url: str, log: DeliveryLog
) -> list[tuple[int, str]]:
    """One crash under load, held a while, then recovery: /health as it was during the crash."""
    acknowledged = log.count(status=200)
    answered_503 = log.count(upstream="answered", status=503)

    async def acknowledging() -> bool:
        return log.count(status=200) > acknowledged

    async def answering_503() -> bool:  # the service itself, not the delivery log for it
        return log.count(upstream="answered", status=503) > answered_503

    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            try:
                async with session.get(f"{service_url}/health") as answer:
                    return answer.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(acknowledging, what="a delivery acknowledged before the crash")
        server.stop(mode="immediate")
        await eventually(answering_503, what="a 503 to Alertmanager while PostgreSQL is down")
        health = [await _health(session, service_url)]
        await asyncio.sleep(OUTAGE_SECONDS)  # hold the outage, alerts still flowing
        health.append(await _health(session, service_url))
        server.start()
        await eventually(healthy, what="/health to be 200 again after PostgreSQL's recovery")
    return health


async def actions_without_record(store: Store, hook: FixHook) -> list[FixCall]:
    """Fix calls without a run on record when they came. A call the hook could not check then
    (PostgreSQL down) needs a run stored now that had started before it."""
    started: dict[str, list[datetime]] = {}
    for run in await store.list_remediations(1_000_000, FIXED_ALERT):
        started.setdefault(run.fingerprint, []).append(run.started_at)
    return [
        call
        for call in hook.calls
        if call.on_record is False
        or (
            call.on_record is None
            and not any(t <= call.at for t in started.get(call.fingerprint, []))
        )
    ]


async def _each_decided(store: Store, stream: AlertStream) -> bool:
    decided = {r.fingerprint for r in await store.list_remediations(1_000_000)}
    records = await store.recent_alerts(1_000_000)
    return len(records) >= len(stream.posted) and all(r.fingerprint in decided for r in records)


async def _health(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(f"{url}/health", headers=OPERATOR) as answer:
        body = await answer.json()
        return answer.status, body["checks"]["store"]["status"]


async def test_sqlite_single_process_killed_in_a_loop_loses_nothing_and_runs_each_alert_once(
    tmp_path: Path,
    service_port: int,
    delivery_log: DeliveryLog,
    alertmanager: str,
    figures: Figures,
) -> None:
    database = tmp_path / "remediator.db"
    settings = {
        "database_url": f"sqlite:///{database}",
        "webhook_token": TOKEN,
        "lease_seconds": LEASE_SECONDS,
        "policies": policies_of_its_own(tmp_path),
    }  # dry-run, the shipped policies: each alert gets one dry-run run, on record
    service = CrashingService(tmp_path, service_port, settings)
    await service.start()
    stream = AlertStream(alertmanager, high_memory_usage)
    store = await open_store(f"sqlite:///{database}")
    try:
        async with stream.flowing():
            await service.kill_in_a_loop(KILL_CYCLES, delivery_log, after_answers=0.5)
        found = await acknowledgement(store, stream, delivery_log)
        all_run = await within(lambda: _every_event_done(store), timeout=SETTLE_SECONDS)
        runs = await _final_runs(store)
        interrupted = sum(
            r.outcome == "interrupted" for r in await store.list_remediations(1_000_000)
        )
    finally:
        await store.close()
        stopped = service.stop()
    duplicates = {episode: n for episode, n in runs.items() if n > 1}
    never_run = len(stream.posted) - len(runs)
    figures.record(
        "SQLite single process, kill -9 in a loop",
        expected="the same acknowledgement guarantee as Postgres",
        figure=f"{len(found.lost)} lost, {len(duplicates)} duplicate runs over"
        f" {service.kills} cycles ({len(stream.posted)} alerts; {found.cut_off} requests cut"
        f" off by a kill, {found.cut_before_commit} before their commit;"
        f" {len(found.unbacked)} answered 2xx without their row; {interrupted} runs"
        " interrupted by a kill and taken over)",
        passed=found.holds and all_run and not duplicates and not never_run,
    )
    assert stopped == 0, f"the last service's exit code on SIGTERM: {stopped}"
    found.check()
    assert not duplicates, f"alert episodes run more than once: {duplicates}"
    assert all_run, "events still pending or runs still running after the kills"
    assert not never_run, f"{never_run} alerts never run"


def high_memory_usage(n: int) -> dict[str, str]:
    """An alert of the shipped high-memory-usage policy, on a deployment of its own."""
    return {
        "alertname": "HighMemoryUsage",
        "namespace": "claude-deployment-prod",
        "deployment": f"api-{n}",
        "pod": f"api-{n}-0",
        "severity": "warning",
    }


async def _every_event_done(store: Store) -> bool:
    if await store.pending_events(1):
        return False
    return not [r for r in await store.list_remediations(1_000_000) if r.outcome == "running"]


async def _final_runs(store: Store) -> dict[tuple[str, datetime], int]:
    """Per alert episode, its runs that were not interrupted by a kill: one each."""
    runs: Counter[tuple[str, datetime]] = Counter()
    for remediation in await store.list_remediations(1_000_000):
        if remediation.kind == "firing" and remediation.outcome != "interrupted":
            runs[(remediation.fingerprint, remediation.starts_at)] += 1
    return dict(runs)
