"""Which guard backend: Redis when REMEDIATOR_REDIS_URL is set, else this process."""

from __future__ import annotations

from remediator.guards.base import GuardBackend
from remediator.guards.memory import MemoryGuards


async def open_guard_backend(redis_url: str | None) -> GuardBackend:
    """The backend. Redis is not asked yet: a Redis that is down is no reason not to start
    taking alerts; /health says so, and every remediation is blocked until it answers."""
    if redis_url is None:
        return MemoryGuards()
    from remediator.guards.redis import RedisGuards

    return await RedisGuards.connect(redis_url)
