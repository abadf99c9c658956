"""How many events are in their busy parts at once: deciding, guarding, recording.

A replica holds many events in flight (a hung health check, a rollout wait of minutes), but
runs their work in one event loop beside the intake. An event holds a place while it works
with the store and the CPU, and lets it go while it waits on something outside: an action's
call and its retries, or its turn under the cap. So a few events work at a time, the loop
stays free for the intake's acknowledgements, and a slow step still holds nothing back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar

BUSY = 4  # events working at once, by default


class Busy:
    def __init__(self, limit: int = BUSY) -> None:
        self._places = asyncio.Semaphore(limit)
        self._holding: ContextVar[bool] = ContextVar("holding_a_busy_place", default=False)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """A place, for the block (this task's, and the tasks it starts inherit none)."""
        await self._places.acquire()
        token = self._holding.set(True)
        try:
            yield
        finally:
            self._holding.reset(token)
            self._places.release()

    @contextlib.asynccontextmanager
    async def let_go(self) -> AsyncIterator[None]:
        """Around a wait on something outside: the place is another's meanwhile, and taken
        again after (nothing, where this task holds none)."""
        if not self._holding.get():
            yield
            return
        self._places.release()
        self._holding.set(False)
        try:
            yield
        finally:
            await self._places.acquire()
            self._holding.set(True)
