"""The reliability suite (issue 9): faults, crashes, storms and hostile input, with figures.

Every scenario runs in two sizes. The short one runs in CI with the other tests; `make chaos`
sets REMEDIATOR_CHAOS=long for the issue's full counts and REMEDIATOR_RELIABILITY_REPORT to
the file the figures are written to (docs/reliability.md). A scenario records its figure
before it asserts, so a failing figure is written down too.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio
import redis.exceptions

from tests.support.fake_kubernetes import FakeKubernetes
from tests.support.figures import LONG, RECORDED, Figure, Figures
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.service_process import eventually
from tests.support.services import free_port, missing_service

REPORT = os.environ.get("REMEDIATOR_RELIABILITY_REPORT")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid)


@pytest.fixture
async def kubernetes() -> AsyncIterator[FakeKubernetes]:
    fake = FakeKubernetes()
    await fake.start(free_port())
    yield fake
    await fake.close()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A redis-server of this test's own: no database number shared with another test."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("the redis-server binary", "install it with `apt-get install redis-server`")
    assert binary is not None
    server = RedisServer(binary, free_port(), tmp_path / "redis.log")
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    client = redis.asyncio.Redis.from_url(url, socket_timeout=5)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except (OSError, redis.exceptions.RedisError):
            return False

    try:
        await eventually(answers, what="the test's redis-server to answer")
        yield url
    finally:
        await client.aclose()
        server.stop()


@pytest.fixture
def postgres_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A running cluster of this test's own, removed afterwards."""
    server = PostgresServer.create(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REPORT and RECORDED:
        report = Path(REPORT)
        earlier = report.read_text() if report.exists() else ""
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(_report(RECORDED, earlier))


HEADER = "| scenario | expected | figure | pass | seconds | run | test |"


def _report(recorded: list[Figure], earlier: str) -> str:
    """The report with this session's rows in place of the same tests' earlier ones, so one
    scenario can be run again (`make chaos CHAOS=tests/reliability/test_storm.py`) alone."""
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    size = "long" if LONG else "short"
    fresh: dict[str, list[str]] = {}
    for figure in recorded:
        test = figure.test.removeprefix("tests/reliability/")
        cells = [figure.scenario, figure.expected, figure.figure]
        cells += ["yes" if figure.passed else "**no**", f"{figure.seconds:.0f}", f"{size}, {now}"]
        fresh.setdefault(test, []).append(
            "| " + " | ".join(c.replace("|", "\\|") for c in cells) + f" | `{test}` |"
        )
    table = [row for test, row in _earlier_rows(earlier) if test not in fresh]
    table += [row for test in sorted(fresh) for row in fresh[test]]
    table.sort(key=lambda row: row.rsplit("`", 2)[-2])
    lines = [
        "# Reliability figures",
        "",
        "Written by `make chaos` (the reliability suite, `tests/reliability/`, at the issue's",
        "full counts); the short variant of the same tests runs in CI with `make test`. Each",
        "scenario runs against real local processes: the service, PostgreSQL, Redis,",
        "Alertmanager peers, and recording stand-ins for Kubernetes, PagerDuty and Slack.",
        "",
        f"- Last written: {now}",
        f"- Machine: {_machine()}",
        f"- Versions: {_versions()}",
        "- Reproduce: `make chaos`; one scenario: `make chaos CHAOS=tests/reliability/<file>`",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|",
        *table,
    ]
    return "\n".join(lines) + "\n"


def _earlier_rows(earlier: str) -> list[tuple[str, str]]:
    lines = earlier.splitlines()
    if HEADER not in lines:
        return []
    found = []
    for line in lines[lines.index(HEADER) + 2 :]:
        if line.startswith("| ") and line.endswith("` |"):
            found.append((line.rsplit("`", 2)[-2], line))
    return found


def _machine() -> str:
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kib = int(meminfo.read_text().split()[1])
        memory = f", {total_kib / 1024 / 1024:.0f} GiB"
    cpus = os.cpu_count() or 0
    return f"{platform.system()} {platform.machine()}, {cpus} cores{memory}"


def _versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for name, command in (
        ("PostgreSQL", ["psql", "--version"]),
        ("Redis", ["redis-server", "--version"]),
        ("Alertmanager", ["prometheus-alertmanager", "--version"]),
    ):
        if shutil.which(command[0]) is None:
            continue
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        words = (out.stdout or out.stderr).split()
        version = next((w for w in words if w[:1].isdigit() or w.startswith("v=")), "?")
        found.append(f"{name} {version.removeprefix('v=')}")
    return ", ".join(found)
