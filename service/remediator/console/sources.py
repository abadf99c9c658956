"""What the console's pages read and change: the store, the guards, the policies in force,
the approval desk and the demotions, the same parts the operator API uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from remediator.config import Settings
from remediator.console import render
from remediator.console.ledger_counts import LedgerCounts
from remediator.console.people import Visitor
from remediator.guards.guards import Guards
from remediator.policy.policyset import PoliciesInForce
from remediator.remediation.approvals import ApprovalDesk
from remediator.remediation.demotions import Demotions
from remediator.store import AlertLog, Approvals, ControlState, Outbox, RunLedger

MAX_FORM_BYTES = 64 * 1024  # the console's forms are a few short fields


class ConsoleStore(AlertLog, RunLedger, Outbox, Approvals, ControlState, Protocol):
    """The alerts, the runs with their steps and messages, the approval requests and
    demotions, the kill switch and the audit log."""


@dataclass(frozen=True)
class Sources:
    settings: Settings
    store: ConsoleStore
    guards: Guards
    policies: PoliciesInForce
    desk: ApprovalDesk  # every answer goes through it, as the API's and Slack's do
    demotions: Demotions
    clock: Callable[[], float]
    ledgers: LedgerCounts  # the Policies page's ledger, counted at most once a minute

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def page(
        self,
        template: str,
        visitor: Visitor,
        *,
        status: int = 200,
        **values: Any,
    ) -> web.Response:
        """A page of the console, with what every page shows: who is looking, and whether
        remediation is paused."""
        paused = await self.guards.paused()
        return render.page(
            template, status=status, visitor=visitor, paused=paused, now=self.now(), **values
        )

    async def form(self, request: web.Request) -> Mapping[str, str]:
        """A posted form's text fields, within the body timeout."""
        async with asyncio.timeout(self.settings.body_timeout_seconds):
            posted = await request.post()
        return {name: value for name, value in posted.items() if isinstance(value, str)}
