"""A real Alertmanager posting real webhooks at the service, as in production."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.alerts import AlertStatus
from remediator.store import Store
from tests.conftest import free_port
from tests.service_process import ServiceProcess, eventually

ALERTMANAGER_CONFIG = """
route:
  receiver: remediator
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: remediator
    webhook_configs:
      - url: {url}/api/v1/alerts
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: s3cret
"""

ALERTS = [
    {"alertname": "HighMemoryUsage", "namespace": "prod", "pod": "api-1", "severity": "warning"},
    {"alertname": "HighMemoryUsage", "namespace": "prod", "pod": "api-2", "severity": "warning"},
    {"alertname": "ApplicationDown", "namespace": "prod", "job": "api", "severity": "critical"},
]


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[ServiceProcess]:
    started = await ServiceProcess.start(
        tmp_path, database_url=database_url, webhook_token="s3cret"
    )
    yield started
    assert started.stop() == 0


@contextlib.contextmanager
def running_alertmanager(
    binary: str,
    config: Path,
    directory: Path,
    *,
    name: str = "alertmanager",
    cluster_flags: Sequence[str] = ("--cluster.listen-address=",),  # none: standalone
) -> Iterator[str]:
    """The real binary on a free port, its data and log in `directory`. Yields its URL."""
    with alertmanager_process(binary, config, directory, name, cluster_flags) as (url, _):
        yield url


@contextlib.contextmanager
def alertmanager_process(
    binary: str, config: Path, directory: Path, name: str, cluster_flags: Sequence[str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`running_alertmanager`, handing back the process too, for a test to signal it."""
    port = free_port()
    with (directory / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={directory / f'{name}-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *cluster_flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def alertmanager(
    alertmanager_binary: str, service: ServiceProcess, tmp_path: Path
) -> Iterator[str]:
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(url=service.url))
    with running_alertmanager(alertmanager_binary, config, tmp_path) as url:
        yield url


async def post_to_alertmanager(
    url: str,
    ends_at: datetime,
    labels_of: list[dict[str, str]] = ALERTS,
    starts_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),  # fixed: the same alert episode
) -> None:
    alerts = [
        {
            "labels": labels,
            "annotations": {"summary": f"{labels['alertname']} in the end-to-end test"},
            "startsAt": starts_at.isoformat(),
            "endsAt": ends_at.isoformat(),
        }
        for labels in labels_of
    ]
    async with aiohttp.ClientSession() as session:
        await eventually(lambda: ready(session, url), what="Alertmanager to be ready", timeout=30)
        async with session.post(f"{url}/api/v2/alerts", json=alerts) as answer:
            assert answer.status == 200, await answer.text()


async def ready(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(f"{url}/-/ready") as answer:
            return answer.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def test_each_alert_is_stored_once_across_repeats_then_resolved_once(
    alertmanager: str, service: ServiceProcess, store: Store
) -> None:
    await post_to_alertmanager(alertmanager, ends_at=datetime.now(UTC) + timedelta(hours=1))

    async def every_alert_delivered_three_times() -> bool:
        records = await store.recent_alerts(10)
        return len(records) == 3 and all(record.deliveries >= 3 for record in records)

    await eventually(every_alert_delivered_three_times, what="three deliveries of each alert")
    records = await store.recent_alerts(10)
    assert sorted(record.labels.get("pod", "") for record in records) == ["", "api-1", "api-2"]
    assert {record.status for record in records} == {AlertStatus.FIRING}
    events = await store.all_events(100)
    assert sorted(event.kind for event in events) == [AlertStatus.FIRING] * 3
    assert len({event.fingerprint for event in events}) == 3

    async def each_alert_handled() -> bool:
        return len(await store.list_remediations(100)) >= 3

    await eventually(each_alert_handled, what="the dispatcher to handle each alert")
    handled = await store.list_remediations(100)
    assert sorted(r.fingerprint for r in handled) == sorted({e.fingerprint for e in events})

    await post_to_alertmanager(alertmanager, ends_at=datetime.now(UTC) - timedelta(seconds=1))

    async def every_alert_resolved() -> bool:
        records = await store.recent_alerts(10)
        return {record.status for record in records} == {AlertStatus.RESOLVED}

    await eventually(every_alert_resolved, what="the resolution of each alert")
    assert len(await store.recent_alerts(10)) == 3
    events = await store.all_events(100)
    assert (
        sorted(event.kind for event in events)
        == [AlertStatus.FIRING] * 3 + [AlertStatus.RESOLVED] * 3
    )
    metrics = await fetch(f"{service.url}/metrics")
    assert 'remediator_intake_requests_total{code="401"}' not in metrics


async def fetch(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return await answer.text()
