"""A real Alertmanager: the binary on a free port, and alerts posted to it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.support.service_process import eventually
from tests.support.services import free_port, missing_service

ALERTMANAGER_CONFIG = """
route:
  receiver: remediator
  group_by: ['alertname']
  group_wait: 200ms
  group_interval: 500ms
  repeat_interval: 1s
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


def find_alertmanager() -> str:
    """The Alertmanager binary on PATH; a missing one skips (fails in CI)."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        missing_service(
            "the Alertmanager binary",
            "install it with `apt-get install prometheus-alertmanager`",
        )
    assert found is not None
    return found


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
