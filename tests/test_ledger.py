"""The ledger of what works: a verified fix counts as effective only when the alert did not fire
again on its target within the window after (1h by default, a policy's `recurs_within` when
set); `remediator policies stats` reads it from either store."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediator.cli import stats
from remediator.config import Settings
from remediator.engine.ledger import ALL_ACTIONS, ledger
from remediator.store import Remediation
from tests.support.world import World


async def fixed_and_verified(world: World, starts_at: str, resolved_after: float) -> Remediation:
    """An episode: the alert fires, the fix runs, the alert resolves (the fix is verified)."""
    world.application.healthy = False
    await world.post("firing", starts_at)
    await world.dispatcher.run_once()
    world.clock.advance(resolved_after)
    await world.post("resolved", starts_at, ends_at=now_of(world).isoformat())
    await world.dispatcher.run_once()
    fixed = [r for r in await world.runs() if r.kind == "firing" and r.run_id is not None]
    assert fixed[-1].outcome == "succeeded", fixed[-1].reason
    return fixed[-1]


def now_of(world: World) -> datetime:
    return datetime.fromtimestamp(world.clock(), UTC)


async def policy_stats_cli(
    settings: Settings, policies: Path, now: datetime, *, as_json: bool = False
) -> str:
    """`remediator policies stats` as of `now`, run as the command runs (its own store)."""
    args = argparse.Namespace(since="30d", directory=policies, database_url=None, json=as_json)
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(stats.run, settings, args, out, err, now)
    assert code == 0, err.getvalue()
    return out.getvalue()


async def test_a_fix_followed_by_a_refire_within_the_hour_is_not_effective(
    world: World,
) -> None:
    first = await fixed_and_verified(world, "2027-01-15T08:00:00Z", resolved_after=120)
    world.clock.advance(40 * 60)  # the leak is back 40 minutes after the fix was verified
    await fixed_and_verified(world, "2027-01-15T08:42:00Z", resolved_after=180)
    entries = await world.store.ledger_since(first.started_at)
    # One policy's own (what a run reads to know whether its policy is demoted).
    assert await world.store.ledger_since(first.started_at, "probe-and-fix") == entries
    assert await world.store.ledger_since(first.started_at, "another-policy") == []

    soon = ledger(entries, {}, now_of(world))  # the second fix's hour has not passed yet
    [policy] = [row for row in soon if row.action == ALL_ACTIONS]
    assert (policy.runs, policy.verified, policy.effective, policy.recurred) == (2, 2, 0, 1)

    later = ledger(entries, {}, now_of(world) + timedelta(hours=1))
    rows = {row.action: row for row in later}
    assert (rows[ALL_ACTIONS].effective, rows[ALL_ACTIONS].recurred) == (1, 1)
    assert set(rows) == {ALL_ACTIONS, "http.check", "http.request"}
    assert (rows[ALL_ACTIONS].alerts, rows[ALL_ACTIONS].unpaged) == (2, 2)
    assert rows[ALL_ACTIONS].pages_avoided == 1.0
    remediated = rows[ALL_ACTIONS].remediated
    assert (remediated.count, remediated.p50, remediated.p90) == (2, 120.0, 180.0)

    # With the policy's own window shorter than 40 minutes the first fix lasted it.
    windows = {"probe-and-fix": timedelta(minutes=30)}
    short = ledger(entries, windows, now_of(world) + timedelta(minutes=30))
    assert (short[0].effective, short[0].recurred) == (2, 0)


async def test_a_fix_not_followed_by_a_refire_within_the_hour_is_effective(
    world: World,
) -> None:
    first = await fixed_and_verified(world, "2027-01-15T08:00:00Z", resolved_after=120)
    world.clock.advance(61 * 60)  # fires again, but past the hour: a new incident
    await fixed_and_verified(world, "2027-01-15T09:03:00Z", resolved_after=120)
    entries = await world.store.ledger_since(first.started_at)

    [policy, *_] = ledger(entries, {}, now_of(world) + timedelta(hours=2))
    assert (policy.runs, policy.verified, policy.effective, policy.recurred) == (2, 2, 2, 0)


async def test_stats_show_runs_failures_and_pages_on_either_store(
    world: World, settings: Settings, tmp_path: Path
) -> None:
    await fixed_and_verified(world, "2027-01-15T08:00:00Z", resolved_after=120)
    world.clock.advance(2 * 3600)
    world.application.fix_status = 500  # the next fix fails: escalated
    await world.post("firing", "2027-01-15T10:02:00Z")
    await world.dispatcher.run_once()
    world.clock.advance(30 * 60)
    await world.post("resolved", "2027-01-15T10:02:00Z", ends_at=now_of(world).isoformat())
    await world.dispatcher.run_once()
    now = now_of(world) + timedelta(hours=2)

    text = await policy_stats_cli(settings, tmp_path / "policies", now)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["POLICY", "ACTION", "RUNS", "VERIFIED"]
    assert lines[1].split() == [
        *("probe-and-fix", "(all)", "2", "1", "1", "0", "1", "0", "2"),
        *("50%", "(1/2)", "2m/2m", "(n=1)", "30m/30m", "(n=1)"),
    ]
    assert [line.split()[0] for line in lines[2:]] == ["http.check", "http.request"]

    document = json.loads(
        await policy_stats_cli(settings, tmp_path / "policies", now, as_json=True)
    )
    [own] = [row for row in document["policies"] if row["action"] == ALL_ACTIONS]
    assert (own["runs"], own["effective"], own["failed"], own["pages_avoided"]) == (2, 1, 1, 0.5)
    assert own["escalated"] == {"count": 1, "p50": 1800.0, "p90": 1800.0}


@pytest.mark.parametrize("since", ["soon", "-1d"])
def test_stats_name_a_bad_since(since: str, tmp_path: Path) -> None:
    args = argparse.Namespace(since=since, directory=tmp_path, database_url=None, json=False)
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", webhook_token="x")
    code = stats.run(settings, args, out, err, datetime.now(UTC))
    assert code == 2
    assert err.getvalue().startswith("remediator: --since: ")
