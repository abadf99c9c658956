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
        report = Path(REPORT)
        earlier = report.read_text() if report.exists() else ""
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(_report(_RECORDED, earlier))


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
