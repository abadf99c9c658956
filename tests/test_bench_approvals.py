"""The approvals benchmark (bench/approvals.py) measures what it says: a live service asks for
approval, each approval through the API lets exactly its own change through, once, after it.
The full counts (both stores, 1 and 2 replicas) run under `make bench`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import approvals  # noqa: E402


async def test_each_approval_lets_its_own_change_through_once(tmp_path: Path) -> None:
    report = tmp_path / "approvals.json"
    args = approvals.parse_args(["--store", "sqlite", "--alerts", "3", "--json", str(report)])

    assert await approvals.benchmark(args) == 0

    run = json.loads(report.read_text())["replicas"]["1"]
    assert (run["approved"], run["changed"], run["missing"]) == (3, 3, 0), run
    assert (run["changed_twice"], run["changed_before_approval"], run["errors"]) == (0, 0, {})
    changed = {a["app"]: a["changed_by"] for a in run["approvals"]}
    assert changed == dict.fromkeys(["r1-0000", "r1-0001", "r1-0002"], "service-r1-0")
    for approval in run["approvals"]:
        assert approval["sent"] <= approval["changed"], approval
    assert run["target"]["passed"]
