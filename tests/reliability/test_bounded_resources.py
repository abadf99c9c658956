"""Bounded resources (issue 16, items 3, 4, 8 and 9): what a hostile or broken peer sends is
never held whole.

- A probe's, a hook's or a channel's 150 MB answer is read up to a cap, then the connection
  is closed: the server sends a few MiB at most (socket buffers), the record keeps 500
  characters and says the body was cut.
- A JSON answer (Prometheus) over its cap is refused with a message, not parsed from a cut.
- 10,000 (100,000 in the long run) invented alertnames add no series: only the live
  policies' alertnames are counted by name, every other one as `other`; `/metrics` is built
  off the event loop.
- A request whose body stalls after its headers is answered 408 within
  REMEDIATOR_BODY_TIMEOUT_SECONDS and its connection closed, at the intake and the operator
  API alike.
- The SQLite file, which holds raw webhook bodies, and its -wal and -shm files are 0600.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from remediator.actions.base import Outcome, StepContext
from remediator.actions.http import HttpActions
from remediator.actions.prometheus import PrometheusActions
from remediator.alerts import Notification
from remediator.answers import DOCUMENT_BYTES, EXCERPT_BYTES
from remediator.config import Settings
from remediator.engine.plan import RenderedTarget
from remediator.http.bodies import LINGERING_SECONDS
from remediator.metrics import Metrics
from remediator.notify.channel_support import post_json
from remediator.policy.loader import load_policies
from remediator.policy.parameters import HttpCheck, HttpRequest, PrometheusQuery
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import Parts
from remediator.store import open_store
from tests.support.big_answers import BigAnswers
from tests.support.figures import Figures, scale
from tests.support.policies import SHIPPED_POLICIES
from tests.support.webhooks import webhook, webhook_alert

MIB = 1024 * 1024
ANSWER_BYTES = scale(32, 150) * MIB
# Loopback socket buffers (send and receive, autotuned) hold a few MiB the client never reads.
SENT_AT_MOST = 16 * MIB
CONTEXT = StepContext(
    RenderedTarget("Application", "web", None, None, None), False, datetime(2026, 1, 1, tzinfo=UTC)
)

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INVENTED_ALERTNAMES = scale(10_000, 100_000)
Client = TestClient[Any, Any]

Call = Callable[[aiohttp.ClientSession, str], Awaitable[object]]


async def _check(session: aiohttp.ClientSession, url: str) -> object:
    params = HttpCheck(url=f"{url}/health", body_contains="never there")
    return await HttpActions(session).check(params, CONTEXT)


async def _request(session: aiohttp.ClientSession, url: str) -> object:
    params = HttpRequest(url=f"{url}/hook", json={"x": 1})
    return await HttpActions(session).request(params, CONTEXT)


async def _channel(session: aiohttp.ClientSession, url: str) -> object:
    limit = aiohttp.ClientTimeout(total=30)
    await post_json(session, f"{url}/slack", {"text": "x"}, what="Slack", ok=(200,), limit=limit)
    return None


@pytest.fixture
async def big() -> AsyncIterator[BigAnswers]:
    server = BigAnswers(ANSWER_BYTES)
    await server.start()
    yield server
    await server.close()


@pytest.mark.parametrize(
    ("call", "what"),
    [
        pytest.param(_check, "http.check", id="http.check"),
        pytest.param(_request, "http.request", id="http.request"),
        pytest.param(_channel, "a channel (Slack)", id="channel"),
    ],
)
async def test_a_huge_answer_is_read_only_up_to_the_cap(
    big: BigAnswers, call: Call, what: str, figures: Figures
) -> None:
    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as session:
            result = await call(session, big.url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sent = await big.finished()
    figures.record(
        f"{ANSWER_BYTES // MIB} MB answer to {what}",
        expected=f"read at most {EXCERPT_BYTES // 1024} KiB, connection closed",
        figure=f"{sent / MIB:.1f} MiB sent before the close, peak allocation {peak / MIB:.1f} MiB",
        passed=sent <= SENT_AT_MOST and peak < 8 * MIB,
    )
    assert sent <= SENT_AT_MOST, f"the server sent {sent} bytes: the answer was read whole"
    assert peak < 8 * MIB
    if result is not None:
        data = getattr(result, "data", {})
        assert data["body_truncated"] is True
        assert len(data["body"]) == 500


async def test_a_json_answer_over_its_cap_is_refused_with_a_message(
    figures: Figures,
) -> None:
    server = BigAnswers(ANSWER_BYTES, json=True)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            params = PrometheusQuery(url=server.url, query="up")
            result = await PrometheusActions(session).query(params, CONTEXT)
        sent = await server.finished()
    finally:
        await server.close()
    figures.record(
        f"{ANSWER_BYTES // MIB} MB Prometheus answer",
        expected=f"refused past {DOCUMENT_BYTES // MIB} MiB",
        figure=f"{sent / MIB:.1f} MiB sent before the close; {result.message}",
        passed=sent <= SENT_AT_MOST and result.outcome is Outcome.FAILED,
    )
    assert result.outcome is Outcome.FAILED
    assert result.message.endswith(f"answer larger than {DOCUMENT_BYTES} bytes, not read")
    assert sent <= SENT_AT_MOST


BODY_TIMEOUT = 1.0
STALLED_CLIENTS = scale(3, 100)
OPERATOR_TOKEN = "operator-token"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def service(tmp_path: Path, metrics: Metrics) -> AsyncIterator[Client]:
    """The application `remediator serve` runs, on SQLite, with the shipped policies."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_token=TOKEN,
        api_token=OPERATOR_TOKEN,
        body_timeout_seconds=BODY_TIMEOUT,
    )
    store = await open_store(settings.database_url)
    policies = LivePolicies.load(SHIPPED_POLICIES, metrics.policies)
    try:
        app = Parts.of(settings, store, policies, metrics).application()
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        await store.close()


def _invented(first: int, count: int) -> dict[str, Any]:
    alerts = [
        webhook_alert(
            {"alertname": f"Invented{n}", "severity": "info"},
            fingerprint=f"{n:016x}",
            starts_at="2026-11-25T09:00:00Z",
        )
        for n in range(first, first + count)
    ]
    return webhook(*alerts)


async def test_invented_alertnames_add_no_series(
    service: Client, metrics: Metrics, figures: Figures
) -> None:
    batch = 5_000  # under the 4 MiB body limit
    for first in range(0, INVENTED_ALERTNAMES, batch):
        count = min(batch, INVENTED_ALERTNAMES - first)
        body = io.BytesIO(json.dumps(_invented(first, count)).encode())
        headers = {**AUTH, "Content-Type": "application/json"}
        answer = await service.post("/api/v1/alerts", data=body, headers=headers)
        assert answer.status == 200, await answer.text()
    known = webhook_alert(
        {"alertname": "HighMemoryUsage"}, fingerprint="f" * 16, starts_at="2026-11-25T09:00:00Z"
    )
    await service.post("/api/v1/alerts", json=webhook(known), headers=AUTH)
    started = time.perf_counter()
    text = await (await service.get("/metrics")).text()
    built = time.perf_counter() - started
    series = [line for line in text.splitlines() if line.startswith("remediator_alerts_received")]
    # Two statuses and two samples (_total, _created) of each name a policy names, and `other`.
    bound = 2 * 2 * (len(load_policies(SHIPPED_POLICIES).alertnames) + 1)
    figures.record(
        f"{INVENTED_ALERTNAMES:,} invented alertnames",
        expected="series bounded by the live policies' alertnames plus `other`",
        figure=f"{len(series)} alerts_received series, /metrics {len(text) / 1024:.1f} KiB,"
        f" served in {built * 1000:.0f} ms",
        passed=len(series) <= bound,
    )
    assert (
        'remediator_alerts_received_total{alertname="other",status="firing"}'
        f" {INVENTED_ALERTNAMES}.0" in text
    )
    assert (
        'remediator_alerts_received_total{alertname="HighMemoryUsage",status="firing"} 1.0' in text
    )
    assert "Invented" not in text
    assert len(series) <= bound


class _WhereCollected(Collector):
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterable[Metric]:
        self.threads.append(threading.current_thread())
        return []


async def test_metrics_are_built_off_the_event_loop(service: Client, metrics: Metrics) -> None:
    where = _WhereCollected()
    metrics.registry.register(where)
    assert (await service.get("/metrics")).status == 200
    assert where.threads, "the registry was not collected"
    assert threading.main_thread() not in where.threads


@dataclass(frozen=True)
class Stalled:
    answer: bytes  # all the server sent, up to its close
    answered_after: float
    closed_after: float


async def _stall(host: str, port: int, path: str, token: str) -> Stalled:
    """Headers announcing a 1,000-byte body, 10 bytes of it, then nothing: until the server
    closes the connection."""
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head.encode() + b'{"alerts":')
    await writer.drain()
    started = time.monotonic()
    try:
        async with asyncio.timeout(60):
            first = await reader.read(1)
            answered = time.monotonic() - started
            rest = await reader.read()  # to the server's close
            closed = time.monotonic() - started
    finally:
        writer.close()
    return Stalled(first + rest, answered, closed)


@pytest.mark.parametrize(
    ("path", "token"),
    [
        pytest.param("/api/v1/alerts", TOKEN, id="intake"),
        pytest.param("/api/v1/pause", OPERATOR_TOKEN, id="pause"),
    ],
)
async def test_a_stalled_body_is_answered_408_and_its_connection_closed(
    service: Client, metrics: Metrics, path: str, token: str, figures: Figures
) -> None:
    host, port = service.server.host, service.server.port
    assert port is not None
    stalled = await asyncio.gather(
        *(_stall(host, port, path, token) for _ in range(STALLED_CLIENTS))
    )
    answered = max(s.answered_after for s in stalled)
    closed = max(s.closed_after for s in stalled)
    statuses = {s.answer.split(b" ", 2)[1] for s in stalled}
    figures.record(
        f"{STALLED_CLIENTS} bodies stalled after their headers ({path})",
        expected=f"408 after {BODY_TIMEOUT:g} s, connection closed",
        figure=f"answered {b', '.join(statuses).decode()} within {answered:.1f} s,"
        f" closed within {closed:.1f} s",
        passed=statuses == {b"408"} and closed < BODY_TIMEOUT + LINGERING_SECONDS + 1,
    )
    assert statuses == {b"408"}
    assert b"REMEDIATOR_BODY_TIMEOUT_SECONDS" in stalled[0].answer
    assert closed < BODY_TIMEOUT + LINGERING_SECONDS + 1
    if path == "/api/v1/alerts":
        counted = metrics.registry.get_sample_value(
            "remediator_intake_requests_total", {"code": "408"}
        )
        assert counted == STALLED_CLIENTS


async def test_the_sqlite_files_are_readable_by_their_owner_only(
    tmp_path: Path, figures: Figures
) -> None:
    path = tmp_path / "r.db"
    umask = os.umask(0o022)  # the usual default, under which files are created 0644
    try:
        store = await open_store(f"sqlite:///{path}")
        try:
            body = json.dumps(_invented(0, 1)).encode()
            notification = Notification.from_webhook(body)
            await store.record_notification(notification, body, datetime.now(UTC))
            files = {f.name: stat.S_IMODE(f.stat().st_mode) for f in tmp_path.glob("r.db*")}
        finally:
            await store.close()
    finally:
        os.umask(umask)
    shown = ", ".join(f"{name} {mode:o}" for name, mode in sorted(files.items()))
    figures.record(
        "SQLite files under umask 022",
        expected="0600: they hold raw webhook bodies",
        figure=shown,
        passed=set(files.values()) == {0o600},
    )
    assert set(files) == {"r.db", "r.db-wal", "r.db-shm"}
    assert set(files.values()) == {0o600}, shown
