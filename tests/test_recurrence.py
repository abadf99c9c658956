"""A fix that does not last is not a success: the policy's alert firing again on the target
within `recurs_within` after a verified fix counts that fix as failed (in the store and by the
breaker), is not run again, and is escalated."""

from __future__ import annotations

import pytest

from remediator.store import Remediation
from tests.support.world import POLICY, World

RECURS_WITHIN = 3600


@pytest.fixture
def policy() -> str:
    return POLICY + "recurs_within: 1h\n"


async def fixed_and_verified(world: World, starts_at: str) -> Remediation:
    """An episode: the alert fires, the fix runs, the alert resolves (the fix is verified)."""
    world.application.healthy = False
    await world.post("firing", starts_at)
    await world.dispatcher.run_once()
    world.clock.advance(120)
    await world.post("resolved", starts_at)
    await world.dispatcher.run_once()
    fixed = [r for r in await world.runs() if r.kind == "firing" and r.run_id is not None]
    assert fixed[-1].outcome == "succeeded", fixed[-1].reason
    return fixed[-1]


async def fires(world: World, starts_at: str) -> Remediation:
    await world.post("firing", starts_at)
    await world.dispatcher.run_once()
    return [r for r in await world.runs() if r.kind == "firing"][-1]


async def breaker_failures(world: World) -> int:
    snapshot = await world.guards.snapshot(world.live.current)
    found = [b for key, b in snapshot.breakers.items() if key.startswith("probe-and-fix:")]
    return found[0].recent_failures if found else 0


async def test_the_alert_firing_again_soon_after_a_verified_fix_is_a_failed_fix(
    world: World,
) -> None:
    first = await fixed_and_verified(world, "2027-01-15T08:00:00Z")
    world.clock.advance(40 * 60)  # the leak is back 40 minutes later
    again = await fires(world, "2027-01-15T08:42:00Z")

    assert (again.outcome, again.guard) == ("blocked", "recurrence"), again.reason
    assert again.reason.startswith(
        f"the fix did not last: AppDown fired again on {first.target} 40m after run "
        f"{first.id[:8]} was verified (recurs_within 1h)"
    )
    assert [call for call, _ in world.application.calls].count("fix") == 1  # not run again
    [run] = [r for r in await world.store.runs_since(first.started_at) if r.id == first.run_id]
    assert run.succeeded is False  # the ledger counts it as a failed fix
    assert await breaker_failures(world) == 1
    queued = await world.store.outbox_for(f"remediator/probe-and-fix/{again.target}")
    blocked = [m for m in queued if m.message.get("outcome") == "blocked"]
    assert blocked, "the recurrence was not escalated"

    world.clock.advance(10 * 60)  # a third time: still the same fix that did not last
    third = await fires(world, "2027-01-15T08:53:00Z")
    assert (third.outcome, third.guard) == ("blocked", "recurrence")
    assert await breaker_failures(world) == 1  # one fix, counted failed once


async def test_a_fix_that_held_past_recurs_within_is_not_a_recurrence(world: World) -> None:
    await fixed_and_verified(world, "2027-01-15T08:00:00Z")
    world.clock.advance(RECURS_WITHIN + 60)
    world.application.healthy = False
    later = await fires(world, "2027-01-15T09:03:00Z")
    assert later.outcome == "verifying", later.reason  # a new incident: fixed again
    assert [call for call, _ in world.application.calls].count("fix") == 2
