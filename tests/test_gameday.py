"""The game day (bench/gameday.py) plays an incident through the real service and scores its
outcome: the shipped policies handle a crash right, and a policy of a user's own that
overreacts is caught as harmful. The full set of scenarios runs under `make gameday`."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import gameday  # noqa: E402

COMPRESS = "120"  # a game minute in half a second
# Game minutes played: every change of these scenarios comes within their first four, and
# the rest of the shipped scenarios' length (15 and 20) is quiet (make gameday plays it).
MINUTES = 8


async def play(name: str, policies: Path | None = None) -> dict[str, Any]:
    argv = ["--compress", COMPRESS] + (["--policies", str(policies)] if policies else [])
    shipped = gameday.load_scenario(BENCH / "scenarios" / f"{name}.yaml")
    scenario = dataclasses.replace(shipped, minutes=MINUTES)
    result: dict[str, Any] = await gameday.play(scenario, gameday.arguments(argv))
    return result


async def test_a_crash_is_handled_right_by_the_shipped_policies() -> None:
    result = await play("crash")
    assert result["checks"] == dict.fromkeys(result["checks"], True), result
    assert [(c["service"], c["what"], c["useful"]) for c in result["changes"]] == [
        ("users-api", "restart", True)
    ]
    assert result["pages"]["pagerduty"] >= 1  # a P1: paged at once
    assert result["resolved"]


async def test_a_policy_that_overreacts_is_scored_harmful(tmp_path: Path) -> None:
    """A team's own high-response-time policy scales by 10: the load needs 5 replicas, it
    gets 13, and the game day says so."""
    policies = tmp_path / "policies"
    shutil.copytree(gameday.ROOT / "policies", policies)
    path = policies / "high-response-time.yaml"
    text = path.read_text()
    assert "      by: 2\n" in text
    assert "max_replicas: 10" in text
    path.write_text(text.replace("      by: 2\n", "      by: 10\n").replace(
        "max_replicas: 10", "max_replicas: 20"))  # fmt: skip
    result = await play("load-spike", policies)
    assert not result["handled_right"]
    assert result["harmful"] == ["web: scale 3 -> 13: 13 replicas, the load needs 5"]
    assert not result["checks"]["replicas as expected"]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The game day sets the service's secrets in the environment: only for the test."""
    for name in ("PAGERDUTY_ROUTING_KEY", "SLACK_WEBHOOK_URL", "GITHUB_TOKEN",
                 "CLAUDE_MANAGER_ADMIN_TOKEN"):  # fmt: skip
        monkeypatch.setenv(name, "")  # remembered as it was, and put back after the test
