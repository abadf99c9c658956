"""The service as it runs: the application over its parts, with its background tasks (the
policy and certificate watchers, the dispatcher, the outbox sender, pruning), until SIGTERM."""

from __future__ import annotations

import gc
import os
import socket
from functools import partial

import structlog
from aiohttp import web

from remediator.config import Settings
from remediator.http.auth import WebhookAuth
from remediator.http.tls import ServedCertificate
from remediator.runtime.background import Opener, in_background, running
from remediator.runtime.retention import prune_periodically
from remediator.runtime.wiring import Parts

log = structlog.get_logger("remediator.runtime")


async def create_app(
    settings: Settings, certificate: ServedCertificate | None = None
) -> web.Application:
    """The application over a freshly opened store, which closes when the application does;
    while it runs, the certificate it is served with is read again when its files change."""
    parts = await Parts.open(settings)
    app = parts.application()
    prune = partial(prune_periodically, parts.store, settings.retention_days)
    tasks: list[Opener] = [
        running(parts.policies.follow),
        *([running(certificate.watch)] if certificate is not None else []),
        parts.dispatcher_loop,
        parts.outbox_loop,
        running(prune),
    ]
    app.cleanup_ctx.extend(in_background(task) for task in tasks)
    app.on_cleanup.append(lambda _: parts.close())
    log.info(
        "listening",
        listen=settings.listen,
        mode=settings.mode,
        store=settings.database_url.split(":", 1)[0],
        webhook_auth=WebhookAuth.from_settings(settings).enabled,
        policies=len(parts.policies.current.policies),
    )
    return app


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then finish in-flight requests and close the store.

    HTTPS when the settings name a certificate and key: webhook credentials then never cross
    the network in the clear, and a plain-HTTP client fails its handshake before any request.
    """
    listener = bound_listener(settings)  # before anything starts: a port in use stops here
    with listener:  # closed however start-up ends (policies that do not load, ...)
        certificate = ServedCertificate.of(settings)
        web.run_app(
            _served(settings, certificate),
            sock=listener,
            ssl_context=None if certificate is None else certificate.context,
            access_log=None,
            print=None,
            shutdown_timeout=30,
        )


class ListenError(Exception):
    """The address to serve on cannot be bound: in use, not this host's, or not allowed."""


def bound_listener(settings: Settings) -> socket.socket:
    """A socket bound to REMEDIATOR_LISTEN, or ListenError in one line saying why not."""
    try:
        [(family, *_), *_] = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        return socket.create_server((settings.host, settings.port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(
            f"cannot listen on {settings.listen} (REMEDIATOR_LISTEN): {reason}"
        ) from exc


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
