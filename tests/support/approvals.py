"""Runs that ask for approval: the policy of `world` with its fix approved first, and the
answers a person gives."""

from __future__ import annotations

from remediator.remediation.approvals import ApprovalDesk
from remediator.store import ApprovalRequest, ApprovalState, Remediation, Verdict
from tests.support.world import POLICY, World


def approved_first(approval: str) -> str:
    """The world's policy, its fix (the change) asking `approval` (a YAML flow mapping)."""
    return POLICY.replace(
        "    when: not steps.health.ok\n",
        f"    when: not steps.health.ok\n    approval: {approval}\n",
    )


def desk(world: World) -> ApprovalDesk:
    return ApprovalDesk(world.store, clock=world.clock)


async def fired(world: World, starts_at: str = "2027-01-15T08:00:00Z") -> Remediation:
    """The alert fires and its event is handled: the firing run as it stands."""
    world.application.healthy = False
    await world.post("firing", starts_at)
    await world.dispatcher.run_once()
    return [r for r in await world.runs() if r.kind == "firing"][-1]


async def pending(world: World) -> ApprovalRequest:
    [request] = await world.store.approvals(ApprovalState.PENDING, 10)
    return request


async def answer(world: World, request: ApprovalRequest, who: str, verdict: Verdict) -> None:
    """`who` answers through the API, and the runner handles what that queued."""
    await desk(world).answer(request.id, who, "api", verdict)
    await world.dispatcher.run_once()


async def run_of(world: World, remediation: Remediation) -> Remediation:
    found = await world.store.remediation(remediation.id)
    assert found is not None
    return found


def fixes(world: World) -> int:
    return [call for call, _ in world.application.calls].count("fix")
