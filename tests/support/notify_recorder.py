"""A real HTTP server standing in for PagerDuty and Slack: it records what the channels send.

Every request is kept (method, path, headers, JSON body) and answered with the default answer,
unless a test queued others with `answer_next` (say a 429 with Retry-After, or a 400 and its
error text) or told it to `hold_next` requests until it is closed (for send timeouts, without
sleeping).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# What PagerDuty's Events API answers an event it accepted.
PD_ACCEPTED = {"status": "success", "message": "Event processed", "dedup_key": "x"}


@dataclass(frozen=True)
class Answer:
    status: int
    body: str | dict[str, Any] = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    json: Any  # None when the body was not JSON
    text: str


class Recorder:
    def __init__(self, default: Answer) -> None:
        self.default = default
        self.requests: list[Recorded] = []
        self._queued: deque[Answer] = deque()
        self._holding = 0
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def answer_next(
        self,
        status: int,
        body: str | dict[str, Any] = "",
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        self._queued.extend([Answer(status, body, headers or {})] * times)

    def hold_next(self, times: int = 1) -> None:
        """Leave the next requests unanswered until the recorder closes."""
        self._holding += times

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers), parsed, text)
        )
        if self._holding:
            self._holding -= 1
            await self._release.wait()
        answer = self._queued.popleft() if self._queued else self.default
        if isinstance(answer.body, dict):
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        return web.Response(text=answer.body, status=answer.status, headers=answer.headers)
