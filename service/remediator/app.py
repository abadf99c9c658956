"""The aiohttp application: intake, health, metrics; and running it until SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from remediator.actions.registry import open_actions
from remediator.api import OperatorApi
from remediator.auth import WebhookAuth
from remediator.config import Settings
from remediator.guards.backends import open_guard_backend
from remediator.guards.base import GuardBackend
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.health import health
from remediator.intake import Intake
from remediator.metrics import Metrics
from remediator.notify.channels import ChannelSet, open_channels
from remediator.notify.ladder import Ladder
from remediator.notify.outbox import OutboxSender
from remediator.openapi import routes as openapi_routes
from remediator.policy_reload import LivePolicies
from remediator.remediation.dispatcher import CLAIM_OVER_LEASE, Dispatcher
from remediator.remediation.run import Runner
from remediator.retention import prune_periodically
from remediator.store import Store, open_store
from remediator.tls import ServedCertificate

log = structlog.get_logger("remediator.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GUARDS = web.AppKey("guards", Guards)
INTAKE = web.AppKey("intake", Intake)
CHANNELS = web.AppKey("channels", ChannelSet)


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
    store: Store,
    policies: LivePolicies,
    guard_backend: GuardBackend | None = None,
) -> web.Application:
    metrics = policies.metrics
    intake = Intake(store, WebhookAuth.from_settings(settings), metrics, settings.max_body_bytes)
    guards = Guards(
        guard_backend or MemoryGuards(),
        store,
        metrics,
        live=settings.mode == "live",
        guardrails=lambda: policies.current.guardrails,
        lease_ttl=settings.lease_seconds,
    )
    backend_name = "redis" if settings.redis_url else "guards"
    token = settings.api_token.get_secret_value() if settings.api_token else None
    api = OperatorApi(store, guards, policies, token)

    channels = ChannelSet()  # filled in when the application starts

    async def health_handler(_: web.Request) -> web.Response:
        return await health(store, policies, guards, backend_name, channels)

    async def metrics_handler(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    # aiohttp's own limit backs up the Content-Length check for chunked bodies.
    app = web.Application(middlewares=[request_context], client_max_size=settings.max_body_bytes)
    app.router.add_post("/api/v1/alerts", intake.handle)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_routes(api.routes())
    app.router.add_routes(openapi_routes(settings))
    app[GUARDS] = guards
    app[INTAKE] = intake
    app[CHANNELS] = channels
    return app


async def create_app(
    settings: Settings, certificate: ServedCertificate | None = None
) -> web.Application:
    """The application over a freshly opened store, which closes when the application does;
    while it runs, the certificate it is served with is read again when its files change."""
    policies = LivePolicies.load(settings.policies, Metrics())
    pool = (settings.database_pool_min, settings.database_pool_max)
    store = await open_store(settings.database_url, pool=pool)
    guard_backend = await open_guard_backend(settings.redis_url)
    app = build_app(settings, store, policies, guard_backend)
    stop_watching = asyncio.Event()

    async def watch_policies(_: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[bool]] = set()

        def on_sighup() -> None:
            task = loop.create_task(policies.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        watcher = loop.create_task(policies.watch(stop_watching))
        yield
        loop.remove_signal_handler(signal.SIGHUP)
        stop_watching.set()
        await watcher

    async def close_store(_: web.Application) -> None:
        await guard_backend.close()
        await store.close()
        log.info("store closed")

    async def dispatch(app: web.Application) -> AsyncIterator[None]:
        async with open_actions(
            settings.kubeconfig,
            aws_region=settings.aws_region,
            aws_role_arn=settings.aws_role_arn,
            aws_endpoint_url=settings.aws_endpoint_url,
        ) as actions:
            runner = Runner(store, app[GUARDS], policies, actions)
            # An event's claim outlives the target lease its run holds (both renewed every
            # third of their time), so the worker that takes a dead worker's event over finds
            # the target free, not still held by the dead run.
            claim = timedelta(seconds=settings.lease_seconds * CLAIM_OVER_LEASE)
            dispatcher = Dispatcher(
                store, runner, lease=claim, in_flight=settings.max_events_in_flight
            )
            app[INTAKE].on_new_events = dispatcher.wake
            stop = asyncio.Event()
            task = asyncio.create_task(dispatcher.run(stop))
            yield
            stop.set()
            await task

    async def escalate(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            opened = open_channels(policies.current.matrix, session)
            app[CHANNELS].channels.update(opened.channels)
            app[CHANNELS].problems.update(opened.problems)
            for problem in opened.problems.values():
                log.error("escalation channel cannot send", problem=problem)
            ladder = Ladder(store, lambda: policies.current.matrix)
            sender = OutboxSender(
                store,
                {**opened.channels, ladder.name: ladder},
                policies.metrics,
                lease=timedelta(seconds=settings.lease_seconds),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(sender.run(stop))
            yield
            stop.set()
            await task

    async def prune(_: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(prune_periodically(store, settings.retention_days, stop))
        yield
        stop.set()
        await task

    async def watch_certificate(_: web.Application) -> AsyncIterator[None]:
        if certificate is None:
            yield
            return
        stop = asyncio.Event()
        task = asyncio.create_task(certificate.watch(stop))
        yield
        stop.set()
        await task

    app.cleanup_ctx.append(watch_policies)
    app.cleanup_ctx.append(watch_certificate)
    app.cleanup_ctx.append(dispatch)
    app.cleanup_ctx.append(escalate)
    app.cleanup_ctx.append(prune)
    app.on_cleanup.append(close_store)
    log.info(
        "listening",
        listen=settings.listen,
        mode=settings.mode,
        store=settings.database_url.split(":", 1)[0],
        webhook_auth=WebhookAuth.from_settings(settings).enabled,
        policies=len(policies.current.policies),
    )
    return app


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then finish in-flight requests and close the store.

    HTTPS when the settings name a certificate and key: webhook credentials then never cross
    the network in the clear, and a plain-HTTP client fails its handshake before any request.
    """
    certificate = ServedCertificate.of(settings)
    web.run_app(
        _served(settings, certificate),
        host=settings.host,
        port=settings.port,
        ssl_context=None if certificate is None else certificate.context,
        access_log=None,
        print=None,
        shutdown_timeout=30,
    )


async def _served(settings: Settings, certificate: ServedCertificate | None) -> web.Application:
    app = await create_app(settings, certificate)
    app.on_startup.append(_freeze_startup_heap)  # after every cleanup context has started
    return app


async def _freeze_startup_heap(_: web.Application) -> None:
    """What start-up built (modules, policies, clients: over 100,000 objects) lives as long as
    the process. Left to the garbage collector, each full collection walks all of it, a pause
    of about 50 ms every few seconds under load that every request in flight waits through;
    frozen, a full collection walks only what came since."""
    gc.collect()
    gc.freeze()
