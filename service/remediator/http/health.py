"""GET /health: one check per dependency, 200 when all pass, 503 when one does not.

Anyone may ask (probes carry no token), and hears the status only; the checks, with their
details (who paused remediation and why, which reload was refused), need the operator token.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from remediator import __version__
from remediator.guards.base import GuardsUnavailable
from remediator.guards.guards import Guards
from remediator.notify.channels import ChannelSet
from remediator.policy.policyset import PoliciesInForce
from remediator.store import Store, StoreUnavailable

_CHECK_TIMEOUT = 2.0


async def check_store(store: Store) -> dict[str, str]:
    try:
        await asyncio.wait_for(store.ping(), _CHECK_TIMEOUT)
    except (StoreUnavailable, TimeoutError) as exc:
        return {"status": "unhealthy", "detail": str(exc) or "no answer in time"}
    return {"status": "ok"}


async def check_guards(guards: Guards) -> dict[str, str]:
    """Unhealthy when Redis cannot be reached; the service as a whole is only degraded by it
    (see `health`): intake goes on without Redis, only remediation stops."""
    try:
        await asyncio.wait_for(guards.backend.ping(), _CHECK_TIMEOUT)
    except (GuardsUnavailable, TimeoutError) as exc:
        detail = str(exc) or "no answer in time"
        return {"status": "unhealthy", "detail": f"{detail}; remediation is blocked"}
    return {"status": "ok"}


async def check_kill_switch(guards: Guards) -> dict[str, str]:
    try:
        pause = await guards.paused()
    except StoreUnavailable:
        return {"status": "unknown"}
    if pause is None:
        return {"status": "ok"}
    return {
        "status": "degraded",
        "detail": f"remediation paused by {pause.paused_by} at {pause.paused_at.isoformat()}:"
        f" {pause.reason}",
    }


async def health(
    store: Store,
    policies: PoliciesInForce,
    guards: Guards,
    guard_backend: str,
    channels: ChannelSet,
    *,
    detailed: bool,
) -> web.Response:
    """503 when the store is down; 200 but "degraded" when remediation is held back. The
    checks are in the answer only when `detailed` (the caller holds the operator token)."""
    checks = {
        "store": await check_store(store),
        "policies": policies.health(),
        guard_backend: await check_guards(guards),
        "kill_switch": await check_kill_switch(guards),
        "escalation": channels.health(),
    }
    # Only the store makes the service unhealthy: without the guard backend intake goes on.
    statuses = {
        "degraded" if name == guard_backend and check["status"] == "unhealthy" else check["status"]
        for name, check in checks.items()
    }
    status = (
        "unhealthy" if "unhealthy" in statuses else "degraded" if "degraded" in statuses else "ok"
    )
    answer: dict[str, object] = {"status": status}
    if detailed:
        answer |= {"timestamp": datetime.now(UTC).isoformat(), "version": __version__}
        answer["checks"] = checks
    return web.json_response(answer, status=503 if status == "unhealthy" else 200)
