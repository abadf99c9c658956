"""A loopback HTTP server whose every answer is a body of a given size, made as it is sent.

The body is never held in memory (64 KiB chunks, written one after the other), and the server
counts the bytes it managed to send before the client stopped reading and closed: what a
bounded reader must keep small.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

CHUNK = 64 * 1024


@dataclass
class BigAnswers:
    """Serves `size` bytes of `fill` (a JSON array opening when `json`) with `status`."""

    size: int
    status: int = 200
    json: bool = False
    sent: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def finished(self, timeout: float = 30.0) -> int:
        """The bytes sent, once the answer ended (all sent, or the client went away)."""
        await asyncio.wait_for(self.answered.wait(), timeout)
        return self.sent

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.sent = 0
        self.answered.clear()
        response = web.StreamResponse(status=self.status)
        response.content_type = "application/json" if self.json else "text/plain"
        response.content_length = self.size
        try:
            await response.prepare(request)
            chunk = (b"[" + b"0," * (CHUNK // 2))[:CHUNK] if self.json else b"x" * CHUNK
            while self.sent < self.size:
                piece = chunk[: self.size - self.sent]
                await response.write(piece)
                self.sent += len(piece)
                chunk = b"0," * (CHUNK // 2) if self.json else chunk
        except ConnectionError:
            pass  # the client closed: what was sent so far is the figure
        finally:
            self.answered.set()
        return response
