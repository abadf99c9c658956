"""The aiohttp application's routes: the webhook intake, health, metrics, the operator API,
Slack's interactivity (the approval buttons) and the OpenAPI document, behind one middleware
that gives each request an id and answers errors as JSON."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from remediator.config import Settings
from remediator.http import openapi
from remediator.http.bodies import LINGERING_SECONDS
from remediator.http.intake import Intake
from remediator.http.operator_api import OperatorApi
from remediator.http.slack_interactions import SlackInteractions, SlackStore
from remediator.remediation.approvals import ApprovalDesk

log = structlog.get_logger("remediator.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every log line of a request its id; answer errors as JSON, never a traceback."""
    structlog.contextvars.clear_contextvars()
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        headers = {name: value for name, value in exc.headers.items() if name != "Content-Type"}
        response = web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
    except Exception:
        log.exception("request failed")
        response = web.json_response(
            {"error": "internal error", "request_id": request_id}, status=500
        )
    response.headers["X-Request-Id"] = request_id
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    structlog.contextvars.clear_contextvars()
    return response


def build_app(
    settings: Settings,
    intake: Intake,
    api: OperatorApi,
    health: Handler,
    registry: CollectorRegistry,
    refresh: Callable[[], Awaitable[None]] | None = None,
    *,
    desk: ApprovalDesk,
    store: SlackStore,
) -> web.Application:
    """`refresh` sets the gauges read at scrape time, before /metrics is generated; `desk`
    takes the answers of Slack's buttons, `store` remembers the signatures seen."""

    async def metrics_handler(_: web.Request) -> web.Response:
        if refresh is not None:
            await refresh()
        # Built in a thread, never on the loop: the registry's own locks make that safe.
        response = web.Response(body=await asyncio.to_thread(generate_latest, registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    # aiohttp's own limit backs up the Content-Length check for chunked bodies.
    app = web.Application(
        middlewares=[request_context],
        client_max_size=settings.max_body_bytes,
        handler_args={"lingering_time": LINGERING_SECONDS},
    )
    app.router.add_post("/api/v1/alerts", intake.handle)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_routes(api.routes())
    app.router.add_routes(openapi.routes(settings))
    slack = SlackInteractions.from_settings(settings, desk, store)
    app.router.add_routes(slack.routes())
    app.cleanup_ctx.append(slack.lifetime)
    return app
