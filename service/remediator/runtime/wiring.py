"""The wiring: each part of the service is built here, once, and handed what it needs (its
metrics among them): the store, the guards, the live policies, the intake and the operator API,
and, opened with their clients when the application starts, the actions with the dispatcher and
the channels with the outbox sender."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web

from remediator.actions.registry import open_actions
from remediator.config import Settings
from remediator.console import Console
from remediator.guards.backends import open_guard_backend
from remediator.guards.base import GuardBackend
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.http.auth import OperatorAuth, WebhookAuth
from remediator.http.health import health
from remediator.http.intake import Intake
from remediator.http.operator_api import OperatorApi
from remediator.http.routes import build_app
from remediator.metrics import Metrics
from remediator.notify.budget import ChannelBudgets
from remediator.notify.channels import ChannelSet, open_channels
from remediator.notify.hold import HeldResolves
from remediator.notify.ladder import Ladder
from remediator.notify.outbox import OutboxSender
from remediator.notify.would_send import in_dry_run
from remediator.remediation.approvals import ApprovalDesk
from remediator.remediation.demotions import Demotions
from remediator.remediation.dispatcher import CLAIM_OVER_LEASE, Dispatcher
from remediator.remediation.run import Runner
from remediator.runtime.background import Loop
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.watch import Watcher
from remediator.store import Store, open_store

log = structlog.get_logger("remediator.runtime")

GUARDS = web.AppKey("guards", Guards)
CONSOLE = "/ui"  # where the console's pages are served


class DispatcherWake:
    """The local dispatcher's wake, for what is built before the dispatcher is (the approval
    desk): nothing until the dispatcher runs, then the dispatcher looks at once."""

    def __init__(self) -> None:
        self._wake: Callable[[], None] | None = None

    def to(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def __call__(self) -> None:
        if self._wake is not None:
            self._wake()


@dataclass(frozen=True)
class Parts:
    settings: Settings
    metrics: Metrics
    store: Store
    policies: LivePolicies
    guard_backend: GuardBackend
    guards: Guards
    intake: Intake
    api: OperatorApi
    console: Console
    channels: ChannelSet  # filled in when the outbox sender opens them
    # Every answer to an approval request goes through it (the API, the CLI, Slack).
    desk: ApprovalDesk
    wake: DispatcherWake  # the dispatcher's, once it runs: a closed request queued its event

    @classmethod
    async def open(cls, settings: Settings) -> Parts:
        """The parts over a freshly opened store and guard backend; `close` closes both."""
        metrics = Metrics()
        policies = LivePolicies.load(settings.policies, metrics.policies)
        pool = (settings.database_pool_min, settings.database_pool_max)
        store = await open_store(settings.database_url, pool=pool)
        guard_backend = await open_guard_backend(settings.redis_url)
        return cls.of(settings, store, policies, metrics, guard_backend)

    @classmethod
    def of(
        cls,
        settings: Settings,
        store: Store,
        policies: LivePolicies,
        metrics: Metrics,
        guard_backend: GuardBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Parts:
        """The parts over a store and policies already open (guarded in memory by default);
        `clock` is the approval desk's."""
        guard_backend = guard_backend or MemoryGuards()
        guards = Guards(
            guard_backend,
            store,
            metrics.guards,
            live=settings.mode == "live",
            guardrails=lambda: policies.current.guardrails,
            lease_ttl=settings.lease_seconds,
        )
        webhook_auth = WebhookAuth.from_settings(settings)
        intake = Intake(
            store,
            webhook_auth,
            metrics.intake,
            settings.max_body_bytes,
            alertnames=lambda: policies.current.alertnames,
            body_timeout=settings.body_timeout_seconds,
        )
        wake = DispatcherWake()
        desk = ApprovalDesk(store, clock=clock, wake=wake)
        operator_auth = OperatorAuth.from_settings(settings)
        demotions = Demotions(store, policies, clock=clock)
        api = OperatorApi(
            store,
            guards,
            policies,
            operator_auth,
            settings.body_timeout_seconds,
            desk=desk,
            demotions=demotions,
            clock=clock,
        )
        console = Console(
            settings,
            store,
            guards,
            policies,
            operator_auth,
            desk=desk,
            demotions=demotions,
            clock=clock,
        )
        parts = (settings, metrics, store, policies, guard_backend, guards, intake, api, console)
        return cls(*parts, ChannelSet(), desk, wake)

    def application(self) -> web.Application:
        watcher = Watcher(self.store, self.metrics.watch)
        app = build_app(
            self.settings,
            self.intake,
            self.api,
            self.health,
            self.metrics.registry,
            refresh=watcher.refresh,
            desk=self.desk,
            store=self.store,
        )
        app[GUARDS] = self.guards
        app.add_subapp(CONSOLE, self.console.application())
        return app

    async def health(self, request: web.Request) -> web.Response:
        backend_name = "redis" if self.settings.redis_url else "guards"
        detailed = self.api.is_operator(request)
        return await health(
            self.store, self.policies, self.guards, backend_name, self.channels, detailed=detailed
        )

    @asynccontextmanager
    async def dispatcher_loop(self) -> AsyncIterator[Loop]:
        """The dispatcher, over the actions opened with their clients; new events wake it."""
        settings = self.settings
        async with open_actions(
            settings.kubeconfig,
            aws_region=settings.aws_region,
            aws_role_arn=settings.aws_role_arn,
            aws_endpoint_url=settings.aws_endpoint_url,
            egress=lambda: self.policies.current.guardrails.egress,
        ) as actions:
            runner = Runner(
                self.store,
                self.guards,
                self.policies,
                actions,
                metrics=self.metrics.runs,
                external_url=settings.external_url,
            )
            # An event's claim outlives the target lease its run holds (both renewed every
            # third of their time), so the worker that takes a dead worker's event over finds
            # the target free, not still held by the dead run.
            claim = timedelta(seconds=settings.lease_seconds * CLAIM_OVER_LEASE)
            dispatcher = Dispatcher(
                self.store, runner, lease=claim, in_flight=settings.max_events_in_flight
            )
            self.intake.on_new_events = dispatcher.wake
            self.wake.to(dispatcher.wake)
            yield dispatcher.run

    @asynccontextmanager
    async def outbox_loop(self) -> AsyncIterator[Loop]:
        """The outbox sender, over the matrix's channels, the escalation ladder and the held
        resolves."""
        async with aiohttp.ClientSession() as session:
            opened = open_channels(self.policies.current.matrix, session)
            if self.settings.mode == "dry-run":
                opened.channels = in_dry_run(opened.channels, self.settings.dry_run_channels)
            self.channels.channels.update(opened.channels)
            self.channels.problems.update(opened.problems)
            for problem in opened.problems.values():
                log.error("escalation channel cannot send", problem=problem)
            ladder = Ladder(self.store, lambda: self.policies.current.matrix)
            held = HeldResolves(self.store, lambda: self.policies.current.matrix)
            sender = OutboxSender(
                self.store,
                {**opened.channels, ladder.name: ladder, held.name: held},
                self.metrics.notify,
                lease=timedelta(seconds=self.settings.lease_seconds),
                budgets=ChannelBudgets(
                    self.store, lambda: self.policies.current.matrix, self.metrics.notify
                ),
            )
            yield sender.run

    async def close(self) -> None:
        await self.guard_backend.close()
        await self.store.close()
        log.info("store closed")
