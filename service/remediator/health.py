"""GET /health: one check per dependency, 200 when all pass, 503 when one does not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from remediator import __version__
from remediator.policy_reload import LivePolicies
from remediator.store import Store, StoreUnavailable

_CHECK_TIMEOUT = 2.0


async def check_store(store: Store) -> dict[str, str]:
    try:
        await asyncio.wait_for(store.ping(), _CHECK_TIMEOUT)
    except (StoreUnavailable, TimeoutError) as exc:
        return {"status": "unhealthy", "detail": str(exc) or "no answer in time"}
    return {"status": "ok"}


async def health(store: Store, policies: LivePolicies) -> web.Response:
    """503 when a dependency is down; 200 but "degraded" when serving on a stale policy set."""
    checks = {"store": await check_store(store), "policies": policies.health()}
    statuses = {check["status"] for check in checks.values()}
    status = (
        "unhealthy" if "unhealthy" in statuses else "degraded" if "degraded" in statuses else "ok"
    )
    return web.json_response(
        {
            "status": status,
            "timestamp": datetime.now(UTC).isoformat(),
            "version": __version__,
            "checks": checks,
        },
        status=503 if status == "unhealthy" else 200,
    )
