"""Benchmark of `remediator policies replay`: a week of 10,000 alert episodes through the
shipped policies, in one process, as a team's CI would run it.

Run from the repository root:

    .venv/bin/python bench/replay.py                  # 10,000 alert episodes
    .venv/bin/python bench/replay.py --alerts 1000

It writes a JSON-lines file of Alertmanager webhook payloads (one a state change: the alerts
of the shared samples and a few more, over 40 deployments and two namespaces, a seventh of
them matched by no policy, most resolving within 40 minutes), then times the command twice
on it: the replay alone, and the diff against the policies at HEAD (two replays). Each run's
output is hashed: the same on every run is part of the figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 30, tzinfo=UTC)
NAMESPACES = (
    "claude-deployment-prod",
    "claude-deployment-prod",
    "claude-deployment-prod",
    "team-a",
)
KINDS = (
    ("ApplicationDown", "critical"),
    ("HighErrorRate", "high"),
    ("HighMemoryUsage", "warning"),
    ("HighCPUUsage", "warning"),
    ("PodCrashLooping", "high"),
    ("GitHubAPIRateLimitLow", "warning"),
    ("DiskSpaceLow", "critical"),  # no policy: escalated by the matrix alone
)


def episode(index: int, rng: random.Random) -> list[dict[str, Any]]:
    """One alert episode's webhook alerts: its firing and (mostly) its resolution."""
    alertname, severity = rng.choice(KINDS)
    deployment = f"app-{rng.randrange(40):02d}"
    labels = {
        "alertname": alertname,
        "severity": severity,
        "namespace": rng.choice(NAMESPACES),
        "deployment": deployment,
        "pod": f"{deployment}-7d9f8b6c5-{index:05x}",
        "instance": f"{deployment}:5000",
    }
    starts = START + timedelta(seconds=rng.randrange(7 * 86400))
    fired = _alert("firing", labels, f"{index:016x}", starts, None)
    if rng.random() < 0.1:
        return [fired]
    ends = starts + timedelta(minutes=rng.uniform(1, 40))
    return [fired, _alert("resolved", labels, f"{index:016x}", starts, ends)]


def _alert(
    status: str, labels: dict[str, str], fingerprint: str, starts: datetime, ends: datetime | None
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {labels['deployment']}"},
        "startsAt": _time(starts),
        "endsAt": _time(ends) if ends else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_payloads(file: Path, alerts: int, seed: int) -> int:
    rng = random.Random(seed)
    lines = []
    for index in range(alerts):
        for alert in episode(index, rng):
            body = {
                "version": "4",
                "groupKey": "{}:{}",
                "truncatedAlerts": 0,
                "status": alert["status"],
                "receiver": "remediator",
                "groupLabels": {},
                "commonLabels": {},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager:9093",
                "alerts": [alert],
            }
            lines.append(json.dumps(body))
    file.write_text("\n".join(lines) + "\n")
    return len(lines)


def timed(args: list[str]) -> tuple[float, str, int]:
    """Seconds, the output's hash, the exit code of one `remediator policies replay`."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "remediator", "policies", "replay", *args],
        capture_output=True,
        check=False,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(done.stderr.decode())
    return elapsed, hashlib.sha256(done.stdout).hexdigest()[:12], done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / "week.jsonl"
        payloads = write_payloads(file, options.alerts, options.seed)
        print(f"{options.alerts} alert episodes, {payloads} payloads ({file.stat().st_size:,} B)")
        base = ["--policies", "policies", "--file", str(file)]
        for name, extra in (
            ("replay", ["--json"]),
            ("replay again", ["--json"]),
            ("diff against HEAD", ["--against", "HEAD", "--json"]),
        ):
            seconds, digest, code = timed(base + extra)
            print(f"{name:18} {seconds:6.2f} s  output sha256 {digest}  exit {code}")


if __name__ == "__main__":
    main()
