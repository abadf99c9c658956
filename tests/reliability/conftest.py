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
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

LONG = os.environ.get("REMEDIATOR_CHAOS", "").lower() == "long"
REPORT = os.environ.get("REMEDIATOR_RELIABILITY_REPORT")


def scale(short: int, long: int) -> int:
    """The count a scenario runs: the issue's figure in the long run, a few in CI."""
    return long if LONG else short


@dataclass(frozen=True)
class Figure:
    scenario: str
    expected: str
    figure: str
    passed: bool
    seconds: float
    test: str


@dataclass
class Figures:
    """What one test measured, in the words of the issue's table."""

    test: str
    started: float = field(default_factory=time.monotonic)

    def record(self, scenario: str, *, expected: str, figure: str, passed: bool) -> None:
        seconds = time.monotonic() - self.started
        _RECORDED.append(Figure(scenario, expected, figure, passed, seconds, self.test))


_RECORDED: list[Figure] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REPORT and _RECORDED:
        Path(REPORT).parent.mkdir(parents=True, exist_ok=True)
        Path(REPORT).write_text(_report(_RECORDED))


def _report(recorded: list[Figure]) -> str:
    size = "long (REMEDIATOR_CHAOS=long)" if LONG else "short (the CI variant)"
    lines = [
        "# Reliability figures",
        "",
        "Written by `make chaos` from the last long run of the reliability suite",
        "(`tests/reliability/`, issue 9). Each scenario runs against real local processes:",
        "the service, PostgreSQL, Redis, Alertmanager peers, and recording stand-ins for",
        "Kubernetes, PagerDuty and Slack.",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Run: {size}",
        f"- Machine: {_machine()}",
        f"- Versions: {_versions()}",
        "- Reproduce: `make chaos` (the short variant runs in CI with `make test`)",
        "",
        "| scenario | expected | figure | pass | seconds | test |",
        "|---|---|---|---|---|---|",
    ]
    for figure in recorded:
        verdict = "yes" if figure.passed else "**no**"
        lines.append(
            f"| {figure.scenario} | {figure.expected} | {figure.figure} | {verdict} "
            f"| {figure.seconds:.0f} | `{figure.test.removeprefix('tests/reliability/')}` |"
        )
    return "\n".join(lines) + "\n"


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
