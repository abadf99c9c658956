"""A recording HTTP proxy between Alertmanager and the service: what was delivered, and the answer.

It forwards each request as it came (method, path, headers, body) on a fresh connection, and
passes the answer back as it came (status, body, Content-Type, Retry-After). An upstream that
cannot be reached, or that drops the request before answering (a killed service), is answered
503, which is what Alertmanager makes of a connection error too: it retries both. Each delivery
is recorded with the alert states it carried, so a test can prove "no 2xx without a durable
row": every alert of every 2xx-answered request is in the store, stored no later than the
answer, and no 4xx was ever answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from remediator.alerts import AlertStatus, Notification

# Headers that belong to one connection, not to the request: aiohttp sets its own.
_HOP_BY_HOP = {"connection", "content-length", "host", "keep-alive", "transfer-encoding"}
_PASSED_BACK = ("Content-Type", "Retry-After", "WWW-Authenticate")
_UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=60)  # longer than Alertmanager waits


@dataclass(frozen=True)
class AlertState:
    """What identifies a delivered alert: its fingerprint, startsAt and status."""

    fingerprint: str
    starts_at: datetime
    status: AlertStatus
    labels: dict[str, str] = field(compare=False, hash=False)


@dataclass(frozen=True)
class Delivery:
    received_at: datetime  # by the proxy, before forwarding
    answered_at: datetime  # by the proxy, when the answer went back to Alertmanager
    status: int  # what Alertmanager was answered
    upstream: str  # "answered", "refused" (nothing listening) or "dropped" (cut off mid-request)
    alerts: tuple[AlertState, ...]  # empty when the body is not a valid webhook payload

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Hold:
    """A request held halfway through its body: `reached` once its first half is sent,
    the rest sent (or not, to a killed service) once `release` is set."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class DeliveryLog:
    upstream: str  # the service's base URL, e.g. http://127.0.0.1:9095
    deliveries: list[Delivery] = field(default_factory=list)
    in_flight: int = 0
    forwarded: asyncio.Event = field(default_factory=asyncio.Event)  # set at each forward
    url: str = field(default="", init=False)  # where Alertmanager sends, once started
    _runner: web.AppRunner | None = field(default=None, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _hold: Hold | None = field(default=None, init=False)

    async def start(self, port: int) -> None:
        # One connection per request: a kept-alive connection to a killed service would fail
        # the next request before it reached the restarted one.
        connector = aiohttp.TCPConnector(force_close=True)
        self._session = aiohttp.ClientSession(connector=connector, timeout=_UPSTREAM_TIMEOUT)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        received_at = datetime.now(UTC)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        self.in_flight += 1
        self.forwarded.set()
        try:
            answer, upstream = await self._send(request, headers, body)
        finally:
            self.in_flight -= 1
        self.deliveries.append(
            Delivery(received_at, datetime.now(UTC), answer.status, upstream, _states(body))
        )
        return answer

    def hold_next(self) -> Hold:
        """Hold the next request forwarded halfway through its body: while it is held, the
        service has a part of it, and cannot have stored it (a kill then is certain to land
        between its receipt and its commit)."""
        self._hold = Hold()
        return self._hold

    async def _send(
        self, request: web.Request, headers: dict[str, str], body: bytes
    ) -> tuple[web.Response, str]:
        assert self._session is not None
        data: bytes | AsyncIterator[bytes] = body
        if self._hold is not None and len(body) > 1:
            data, self._hold = _in_halves(body, self._hold), None
            headers = {**headers, "Content-Length": str(len(body))}
        try:
            async with self._session.request(
                request.method, f"{self.upstream}{request.rel_url}", headers=headers, data=data
            ) as answer:
                content = await answer.read()
                passed = {h: answer.headers[h] for h in _PASSED_BACK if h in answer.headers}
                return web.Response(status=answer.status, body=content, headers=passed), "answered"
        except aiohttp.ClientConnectorError:
            return _unreachable("refused"), "refused"
        except (aiohttp.ClientError, TimeoutError):
            return _unreachable("dropped"), "dropped"

    def acknowledged_states(self) -> Iterator[tuple[AlertState, datetime]]:
        """Each alert state of each 2xx-answered delivery, with the time it was answered."""
        for delivery in self.deliveries:
            if delivery.acknowledged:
                for state in delivery.alerts:
                    yield state, delivery.answered_at

    def quick_answer_seconds(self, default: float = 0.005) -> float:
        """How long the upstream takes to answer a quick request: the first quartile of the
        last 50 answers. A kill sooner than that after a forward cuts most requests off."""
        taken = sorted(
            (d.answered_at - d.received_at).total_seconds()
            for d in self.deliveries[-50:]
            if d.upstream == "answered"
        )
        return taken[len(taken) // 4] if taken else default

    def count(self, *, upstream: str | None = None, status: int | None = None) -> int:
        return sum(
            1
            for d in self.deliveries
            if (upstream is None or d.upstream == upstream)
            and (status is None or d.status == status)
        )

    async def next_forward(self, timeout: float) -> bool:
        """Wait for the next request to be forwarded; False if none came in time."""
        self.forwarded.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.forwarded.wait(), timeout)
        return self.forwarded.is_set()


async def _in_halves(body: bytes, hold: Hold) -> AsyncIterator[bytes]:
    half = len(body) // 2
    yield body[:half]
    hold.reached.set()
    await hold.release.wait()
    yield body[half:]


def _unreachable(why: str) -> web.Response:
    return web.json_response({"error": f"upstream {why} (delivery log)"}, status=503)


def _states(body: bytes) -> tuple[AlertState, ...]:
    try:
        notification = Notification.model_validate_json(body)
    except ValidationError:
        return ()
    return tuple(
        AlertState(alert.fingerprint, alert.starts_at, alert.status, dict(alert.labels))
        for alert in notification.alerts
    )
