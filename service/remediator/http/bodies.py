"""Reading a request's body within a time limit.

aiohttp waits for a body as long as its sender keeps the connection open: one authenticated
client that sends its headers and then stalls would hold a request, and its connection, for
ever. Every handler that reads a body reads it here, within REMEDIATOR_BODY_TIMEOUT_SECONDS,
and answers 408 past it.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

log = structlog.get_logger("remediator.http")

LINGERING_SECONDS = 2.0
"""After an answer sent before its body was read (408, 401, 413), how long aiohttp goes on
reading the rest before it closes the connection (its own default: 10 s)."""


class BodyTimedOut(Exception):
    """The body did not arrive within the limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the request body did not arrive within {seconds:g} s"
            " (REMEDIATOR_BODY_TIMEOUT_SECONDS)"
        )


async def read_body(request: web.Request, seconds: float) -> bytes:
    """The whole body, or BodyTimedOut when it takes longer than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        log.warning("request body timed out", path=request.path, seconds=seconds)
        raise BodyTimedOut(seconds) from None
