"""Policies (`/ui/policies`): the live set, its git revision and the last reload's error;
per policy its effectiveness ledger over the last days (runs, effective share, time to
resolve when remediated and when escalated) with a small plot of each a day, its circuit
breakers and rate-limit budgets left, its blast radius, and whether it is demoted to asking
first, with Promote for an operator (as `remediator policies promote` does).

Three reads: the ledger's entries since the first day (one statement), the demotions, and
the guards' snapshot (the runs of the last week, and the guard backend). The ledger is
counted at most once a minute per replica and period (`ledger_counts.LedgerCounts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from aiohttp import web

from remediator.console import plots
from remediator.console.people import Visitor
from remediator.console.render import percent, seconds
from remediator.console.runs import policy_link
from remediator.console.sources import Sources
from remediator.engine.ledger import PolicyStats
from remediator.guards.base import BreakerState, BreakerView, Budget, GuardsUnavailable, Snapshot
from remediator.guards.guards import GLOBAL_LIMIT, GLOBAL_REACH
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import Policy
from remediator.store import Demotion

PERIODS = (7, 14, 30)  # days the page can count over
DEFAULT_DAYS = 14
RESULTS = {
    "promoted": "Promoted: its changes no longer ask first; its ledger counts afresh.",
    "not-demoted": "It was not demoted: nothing to do.",
    "unknown": "No such policy in force.",
}


@dataclass(frozen=True)
class PolicyView:
    policy: Policy
    file: str
    link: str | None  # the file at the revision in force
    stats: PolicyStats | None  # None: no run in the period
    plots: tuple[plots.Plot, ...]
    demotion: Demotion | None  # in force
    breakers: tuple[tuple[str, BreakerView], ...]  # tripped or on trial; closed ones counted
    closed_breakers: int
    budgets: tuple[tuple[str, tuple[Budget, ...]], ...]
    reach: tuple[int, int] | None  # targets left of its blast radius, of how many


async def show(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    days = _days(request.query.get("days"))
    counted = await sources.ledgers.of(days)
    policies = sources.policies.current
    demotions = {d.policy: d for d in await sources.store.demotions() if d.in_force}
    snapshot, guard_problem = await _snapshot(sources, policies)
    labels = [(counted.first + timedelta(days=n)).isoformat() for n in range(days)]
    views = [
        _view(
            sources,
            policy,
            counted.totals,
            counted.by_day.get(policy.name, []),
            labels,
            demotions,
            snapshot,
        )
        for policy in policies.policies
    ]
    health = sources.policies.health()
    result = request.query.get("result", "")
    return await sources.page(
        "policies.html",
        visitor,
        title="Policies",
        active="policies",
        views=views,
        days=days,
        periods=PERIODS,
        counted_at=counted.at,
        revision=sources.policies.revision,
        health=health,
        guardrails=policies.guardrails,
        snapshot=snapshot,
        guard_problem=guard_problem,
        global_budgets=snapshot.budgets.get(GLOBAL_LIMIT, ()) if snapshot else (),
        global_reach=snapshot.reaches.get(GLOBAL_REACH) if snapshot else None,
        result=RESULTS.get(result, ""),
        promoted=request.query.get("policy", ""),
    )


async def promote(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    name = request.match_info["name"]
    if name not in sources.policies.current.by_name:
        return _promoted(name, "unknown")
    promoted = await sources.demotions.promote(name, visitor.identity.name)
    return _promoted(name, "promoted" if promoted else "not-demoted")


def _view(
    sources: Sources,
    policy: Policy,
    totals: dict[str, PolicyStats],
    days: list[PolicyStats],
    labels: list[str],
    demotions: dict[str, Demotion],
    snapshot: Snapshot | None,
) -> PolicyView:
    own = f"{policy.name}:"
    breakers = sorted(
        (key, view)
        for key, view in (snapshot.breakers.items() if snapshot else ())
        if key.startswith(own)
    )
    tripped = tuple((key, view) for key, view in breakers if view.state != BreakerState.CLOSED)
    budgets = tuple(
        sorted(
            (key, found)
            for key, found in (snapshot.budgets.items() if snapshot else ())
            if key == policy.name or key.startswith((f"{policy.name}/", own))
        )
    )
    reach = snapshot.reaches.get(policy.name) if snapshot else None
    return PolicyView(
        policy=policy,
        file=sources.policies.current.files.get(policy.name, ""),
        link=policy_link(sources, policy.name, sources.policies.revision),
        stats=totals.get(policy.name),
        plots=_plots(days, labels) if days else (),
        demotion=demotions.get(policy.name),
        breakers=tripped,
        closed_breakers=len(breakers) - len(tripped),
        budgets=budgets,
        reach=(reach.remaining, reach.reach.count) if reach else None,
    )


def _plots(days: list[PolicyStats], labels: list[str]) -> tuple[plots.Plot, ...]:
    return (
        plots.bars("Runs a day", labels, [day.runs for day in days]),
        plots.lines(
            "Effective share a day",
            labels,
            {"share": [day.effective_share for day in days]},
            top=1.0,
            shown=percent,
        ),
        plots.lines(
            "Time to resolve a day (p50): remediated, escalated",
            labels,
            {
                "remediated": [day.remediated.p50 for day in days],
                "escalated": [day.escalated.p50 for day in days],
            },
            shown=seconds,
        ),
    )


async def _snapshot(sources: Sources, policies: PolicySet) -> tuple[Snapshot | None, str]:
    """The guards' state, or why it cannot be read now (the page shows the rest)."""
    try:
        return await sources.guards.snapshot(policies), ""
    except GuardsUnavailable as exc:
        return None, f"the guard state is unavailable: {exc}"


def _days(text: str | None) -> int:
    try:
        days = int(text or DEFAULT_DAYS)
    except ValueError:
        return DEFAULT_DAYS
    return days if days in PERIODS else DEFAULT_DAYS


def _promoted(name: str, result: str) -> web.Response:
    query = urlencode({"policy": name, "result": result})
    return web.Response(
        status=303, headers={"Location": f"/ui/policies?{query}", "Cache-Control": "no-store"}
    )
