"""A policy that keeps failing asks first: a fix that "works" (its alert resolves) but whose
alert fires again every time demotes its policy after three such cycles, until it is promoted
or a new revision of it is loaded."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from remediator.engine.ledger import LedgerEntry
from remediator.remediation.demotions import NEW_REVISION, Demotions
from remediator.store import ApprovalState
from tests.support.approvals import fixes
from tests.support.policies import STAND_INS_ALLOWED
from tests.support.world import World

GUARDRAILS = STAND_INS_ALLOWED + "approvers: [oncall]\ndemotion: {min_runs: 3, below: 0.2}\n"


@pytest.fixture
def guardrails() -> str:
    return GUARDRAILS


async def cycle(world: World, minute: int) -> str:
    """The alert fires (minute past 08:00), the fix runs, the alert resolves: the outcome of
    the firing run as it ended."""
    starts_at = f"2027-01-15T{8 + minute // 60:02d}:{minute % 60:02d}:00Z"
    world.application.healthy = False
    await world.post("firing", starts_at)
    await world.dispatcher.run_once()
    world.clock.advance(60)
    await world.post("resolved", starts_at)
    await world.dispatcher.run_once()
    firing = [r for r in await world.runs() if r.kind == "firing"]
    return firing[-1].outcome


async def test_three_fixes_that_did_not_last_make_the_policy_ask_first(world: World) -> None:
    outcomes = []
    for minute in (0, 10, 20):
        outcomes.append(await cycle(world, minute))
        world.clock.advance(8 * 60)
    assert outcomes == ["succeeded"] * 3  # each "worked": its alert resolved
    assert fixes(world) == 3

    world.application.healthy = False
    await world.post("firing", "2027-01-15T08:30:00Z")  # and fires again, a fourth time
    await world.dispatcher.run_once()

    fourth = [r for r in await world.runs() if r.kind == "firing"][-1]
    assert fourth.outcome == "awaiting_approval", fourth.reason
    assert fourth.reason.startswith("the policy is demoted to asking first (0 of its last 3 runs")
    assert fixes(world) == 3
    [request] = await world.store.approvals(ApprovalState.PENDING, 10)
    assert request.approvers == ("oncall",)
    demotion = await world.store.demotion("probe-and-fix")
    assert demotion is not None
    assert demotion.in_force
    audit = await world.store.audit_log(20)
    assert any(e.kind == "demotion" and e.subject == "probe-and-fix" for e in audit)


async def test_promoting_it_lets_it_act_again_and_counts_afresh(world: World) -> None:
    for minute in (0, 10, 20):
        await cycle(world, minute)
        world.clock.advance(8 * 60)
    assert await cycle(world, 30) == "stopped"  # demoted: it asked, and the alert resolved
    demotions = Demotions(world.store, world.live, clock=world.clock)
    assert await demotions.promote("probe-and-fix", "carol")
    assert not await demotions.promote("probe-and-fix", "carol")  # once

    world.clock.advance(8 * 60)
    outcome = await cycle(world, 40)

    assert outcome == "succeeded"
    assert fixes(world) == 4
    demotion = await world.store.demotion("probe-and-fix")
    assert demotion is not None
    assert not demotion.in_force
    assert demotion.promoted_by == "carol"


async def test_fixes_that_lasted_never_demote(world: World) -> None:
    for hour in range(4):
        assert await cycle(world, hour * 120) == "succeeded"
        world.clock.advance(2 * 3600)
    assert fixes(world) == 4
    assert await world.store.demotion("probe-and-fix") is None


async def test_a_new_revision_of_the_policy_lifts_the_demotion(world: World, tmp_path) -> None:
    for minute in (0, 10, 20):
        await cycle(world, minute)
        world.clock.advance(8 * 60)
    assert await cycle(world, 30) == "stopped"  # demoted
    policy_file = tmp_path / "policies" / "probe-and-fix.yaml"
    policy_file.write_text(policy_file.read_text().replace("mode: safe", "mode: safer"))
    await world.live.reload()

    world.clock.advance(8 * 60)
    assert await cycle(world, 40) == "succeeded"
    demotion = await world.store.demotion("probe-and-fix")
    assert demotion is not None
    assert demotion.promoted_by == NEW_REVISION


async def test_only_a_run_that_may_act_counts_the_ledger(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether its policy asks first matters only to a run the guards let act: a storm of
    alerts on one target that its rate limit holds back (5 an hour) reads no ledger for
    each."""
    reads: list[str | None] = []
    ledger_since = world.store.ledger_since

    async def counted(since: datetime, policy: str | None = None) -> list[LedgerEntry]:
        reads.append(policy)
        return await ledger_since(since, policy)

    monkeypatch.setattr(world.store, "ledger_since", counted)
    world.application.healthy = False
    for n in range(12):
        labels = {"alertname": "AppDown", "app": "shop", "instance": world.instance}
        await world.post_alert(labels, starts_at=f"2027-01-15T08:{n:02d}:00Z")
    await world.dispatcher.run_once()

    outcomes = Counter(r.guard or r.outcome for r in await world.runs() if r.kind == "firing")
    assert outcomes == {"verifying": 5, "rate_limit": 7}, outcomes
    assert reads == ["probe-and-fix"] * 5
