"""Background tasks: each starts with the application and, before it closes, is asked to stop
and awaited, so no task outlives what it uses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""Runs until the event is set, then returns."""

Opener = Callable[[], AbstractAsyncContextManager[Loop]]
"""Opens what a loop needs (clients, sessions) and gives the loop; closes it after."""

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def running(loop: Loop) -> Opener:
    """A loop that needs nothing opened for it."""
    return lambda: contextlib.nullcontext(loop)


def in_background(opener: Opener) -> CleanupContext:
    """The loop as an aiohttp cleanup context: started with the application, stopped with it."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        async with opener() as loop:
            stop = asyncio.Event()
            task = asyncio.create_task(loop(stop))
            yield
            stop.set()
            await task

    return context
