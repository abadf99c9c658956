"""The console benchmark (bench/console.py) measures what it says: over a month of history
seeded in PostgreSQL, signed in as a person signs in, every page it times answers 200,
History's filters and its deep page included. The full count (100,000 runs) runs by hand:
the README's Benchmarks give its figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import console  # noqa: E402
from tests.support.services import POSTGRES_ADMIN_DSN  # noqa: E402


async def test_every_page_is_timed_over_a_seeded_history(tmp_path: Path, postgres_dsn: str) -> None:
    report = tmp_path / "console.json"
    argv = ["--database-url", POSTGRES_ADMIN_DSN, "--runs", "1500", "--requests", "3"]
    args = console.parse_args([*argv, "--warmup", "1", "--no-minute-later", "--json", str(report)])

    assert await console.benchmark(args) == 0

    figures = json.loads(report.read_text())
    assert figures["seeded"]["runs"] == 1500
    assert figures["seeded"]["approvals"] > 0
    pages = {page["page"]: page for page in figures["pages"]}
    assert {"Now", "Run", "History", "Policies", "Approvals", "Control"} <= set(pages)
    assert {name for name in pages if name.startswith("History by ")} == {
        "History by alertname",
        "History by target",
        "History by policy",
        "History by outcome",
        "History by time (a day)",
        "History by policy and outcome",
    }
    assert all(page["requests"] == 3 and page["mean_bytes"] > 0 for page in pages.values())
