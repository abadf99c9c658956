"""Reading a request's body within a size and a time limit, and the JSON a refusal answers.

aiohttp waits for a body as long as its sender keeps the connection open: one authenticated
client that sends its headers and then stalls would hold a request, and its connection, for
ever. Every handler that reads a body reads it here, within REMEDIATOR_BODY_TIMEOUT_SECONDS,
and answers 408 past it; a body over REMEDIATOR_MAX_BODY_BYTES is answered 413.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog
from aiohttp import web
from typing_extensions import TypedDict  # pydantic documents these; typing's needs 3.12

log = structlog.get_logger("remediator.http")

LINGERING_SECONDS = 2.0
"""After an answer sent before its body was read (408, 401, 413), how long aiohttp goes on
reading the rest before it closes the connection (its own default: 10 s)."""


class ErrorAnswer(TypedDict):
    """Every refusal but an invalid webhook payload's, and 503 when the store cannot write."""

    error: str


def error_answer(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(ErrorAnswer(error=message), status=status, headers=headers)


class BodyRefused(Exception):
    """A body not taken: larger than the limit (413), or not arrived in time (408)."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.headers = headers

    def answer(self) -> web.Response:
        return error_answer(self.status, str(self), self.headers)


async def bounded_body(request: web.Request, max_bytes: int, seconds: float) -> bytes:
    """The whole body, or BodyRefused: said or found to be larger than `max_bytes` (413; the
    application's client_max_size is the same limit), or not arrived within `seconds` (408)."""
    too_large = BodyRefused(
        413, f"body larger than the limit of {max_bytes} bytes (REMEDIATOR_MAX_BODY_BYTES)"
    )
    if (request.content_length or 0) > max_bytes:
        raise too_large
    try:
        return await read_body(request, seconds)
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except BodyTimedOut as exc:
        raise BodyRefused(408, str(exc), {"Connection": "close"}) from None


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
