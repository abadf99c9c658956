"""A world for runs: an application to remediate, a runner and a dispatcher over a real
store, and the policy that acts on the application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.actions.egress import guarded_session
from remediator.actions.http import HttpActions
from remediator.actions.prometheus import PrometheusActions
from remediator.alerts import Notification
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.remediation.steps import Retrying
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Remediation, Store
from tests.support.clocks import Clock
from tests.support.policies import STAND_INS_ALLOWED, shipped_matrix
from tests.support.webhooks import webhook, webhook_alert

POLICY = """\
name: probe-and-fix
match:
  - alertname="AppDown"
severity: P2
target:
  kind: Application
  name: "{{ labels.app }}"
  url: "http://{{ labels.instance }}"
steps:
  - id: health
    action: http.check
    params: {url: "http://{{ labels.instance }}/health"}
  - id: fix
    action: http.request
    when: not steps.health.ok
    params: {method: PUT, url: "http://{{ labels.instance }}/admin/fix", json: {mode: safe}}
on_resolved:
  - action: http.request
    params: {method: PUT, url: "http://{{ labels.instance }}/admin/unfix"}
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: 5, per: 1h}
circuit_breaker:
  failures: 2
  window: 1h
  cooldown: 30m
"""


@dataclass
class Application:
    """The system being remediated: its health and the hooks the policy calls."""

    healthy: bool = False
    heals_on_fix: bool = False  # /health answers 200 once the fix hook was called
    fix_status: int = 200
    fix_hangs: bool = False
    fix_gate: asyncio.Event | None = None  # the fix hook answers once this is set
    calls: list[tuple[str, Any]] = field(default_factory=list)
    while_checked: Callable[[], Awaitable[None]] | None = None  # runs during the health check

    def routes(self) -> web.Application:
        async def health(_: web.Request) -> web.Response:
            if self.while_checked is not None:
                await self.while_checked()
            return web.Response(status=200 if self.healthy else 503, text="health")

        async def admin(request: web.Request) -> web.Response:
            body = await request.json() if request.can_read_body else None
            self.calls.append((request.match_info["hook"], body))
            if self.heals_on_fix and request.match_info["hook"] == "fix":
                self.healthy = True
            if self.fix_hangs:
                await asyncio.Event().wait()  # never answers
            if self.fix_gate is not None and request.match_info["hook"] == "fix":
                await self.fix_gate.wait()
            return web.json_response({}, status=self.fix_status)

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_put("/admin/{hook}", admin)
        app.router.add_post("/admin/{hook}", admin)
        return app


@dataclass
class World:
    store: Store
    clock: Clock
    application: Application
    instance: str
    dispatcher: Dispatcher
    runner: Runner
    guards: Guards
    live: LivePolicies
    metrics: Metrics = field(default_factory=Metrics)  # the runner's

    async def post(
        self,
        status: str,
        starts_at: str = "2027-01-15T08:00:00Z",
        *,
        annotations: dict[str, str] | None = None,
        ends_at: str | None = None,
    ) -> None:
        """The alert in this state; a resolution ends at `ends_at` (its fixed default unless
        given)."""
        labels = {"alertname": "AppDown", "app": "shop", "instance": self.instance}
        await self.post_alert(labels, status, starts_at, annotations=annotations, ends_at=ends_at)

    async def post_alert(
        self,
        labels: dict[str, str],
        status: str = "firing",
        starts_at: str = "2027-01-15T08:00:00Z",
        *,
        annotations: dict[str, str] | None = None,
        ends_at: str | None = None,
    ) -> None:
        """Any alert, as Alertmanager would send it (fingerprinted by its start)."""
        end = {"ends_at": ends_at} if ends_at is not None else {}
        alert = webhook_alert(
            labels,
            fingerprint=f"fp-{starts_at}",
            starts_at=starts_at,
            status=status,
            annotations=annotations,
            **end,
        )
        body = webhook(alert, group_key=f'{{}}:{{alertname="{labels["alertname"]}"}}')
        received = datetime.fromtimestamp(self.clock(), UTC)
        await self.store.record_notification(Notification.model_validate(body), b"{}", received)

    async def runs(self) -> list[Remediation]:
        return list(reversed(await self.store.list_remediations(50)))


def write_policies(directory: Path, policy: str, guardrails: str = STAND_INS_ALLOWED) -> Path:
    """The escalation policy shipped (its resolves sent at once), the guard rails (the
    stand-ins allowed, unless told) and the policy under test, in a new directory."""
    directory.mkdir()
    (directory / "escalation.yaml").write_text(shipped_matrix())
    (directory / "guardrails.yaml").write_text(guardrails)
    (directory / "probe-and-fix.yaml").write_text(policy)
    return directory


@contextlib.asynccontextmanager
async def open_world(
    store: Store, policies: Path, *, external_url: str | None = None
) -> AsyncIterator[World]:
    """A runner over the policies in the directory, acting on an Application it serves;
    its messages link their runs at `external_url`, when given."""
    application = Application()
    clock = Clock()
    live = LivePolicies.load(policies, Metrics().policies)
    egress = guarded_session(lambda: live.current.guardrails.egress)
    async with TestServer(application.routes()) as server, egress as session:
        guards = Guards(
            MemoryGuards(clock),
            store,
            Metrics().guards,
            live=True,
            guardrails=lambda: live.current.guardrails,
            clock=clock,
        )
        fast = Retrying(attempts=3, first_wait=0.01, max_wait=0.02)
        actions = HttpActions(session).actions() | PrometheusActions(session).actions()
        metrics = Metrics()
        runner = Runner(
            store, guards, live, actions, clock=clock, retrying=fast, check_interval=0,
            metrics=metrics.runs, external_url=external_url,
        )  # fmt: skip
        yield World(
            store,
            clock,
            application,
            f"127.0.0.1:{server.port}",
            Dispatcher(store, runner, clock=clock, worker="test"),
            runner,
            guards,
            live,
            metrics,
        )
