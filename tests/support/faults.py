"""Parts with a bug in them, for the tests of what a bug must not do: drop an alert silently.

Each is a real part (a guard backend, an action) that raises or misbehaves where nothing in
the service expects it to, as a regression would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from remediator.actions.base import Action, Outcome, StepContext, StepResult
from remediator.alerts import Notification
from remediator.guards.base import Attempt, GuardBackend, Verdict
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.policy.parameters import Params
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Store
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import write_policies

BUG = "the guard script answered nothing"


class RaisingGuards(MemoryGuards):
    """Guard state whose admission has a bug: it raises RuntimeError. `before` runs first
    (say, to take the store down at that moment), once."""

    def __init__(self, clock: Callable[[], float], before: Callable[[], None] | None = None):
        super().__init__(clock)
        self._before = before
        self.calls = 0

    async def admit(self, attempt: Attempt) -> Verdict:
        self.calls += 1
        if self._before is not None:
            before, self._before = self._before, None
            before()
        raise RuntimeError(BUG)


async def answers_ok(params: Params, context: StepContext) -> StepResult:
    """An action that does nothing and says it went well."""
    return StepResult(Outcome.OK, "done")


async def answers_nothing(params: Params, context: StepContext) -> StepResult:
    """An action with a bug: it returns nothing instead of its result."""
    return cast(StepResult, None)


def answers_ok_then_nothing() -> Action:
    """An action that works the first time (a fix made) and has the bug the next (its undo)."""
    calls = 0

    async def action(params: Params, context: StepContext) -> StepResult:
        nonlocal calls
        calls += 1
        return await (answers_ok if calls == 1 else answers_nothing)(params, context)

    return action


POLICY = """\
name: probe-and-fix
match:
  - alertname="AppDown"
target:
  kind: Application
  name: "{{ labels.app }}"
steps:
  - action: http.check
    params: {url: "http://app.shop.svc.cluster.local/health"}
  - action: http.request
    params: {method: PUT, url: "http://app.shop.svc.cluster.local/admin/fix"}
on_resolved:
  - action: http.request
    params: {method: PUT, url: "http://app.shop.svc.cluster.local/admin/unfix"}
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: 5, per: 1h}
"""
# Critical: P1 by the shipped matrix, PagerDuty and Slack.
LABELS = {"alertname": "AppDown", "app": "shop", "severity": "critical"}


def dispatcher_of(
    store: Store,
    tmp_path: Path,
    clock: Callable[[], float],
    backend: GuardBackend,
    actions: Mapping[str, Action],
) -> Dispatcher:
    """A dispatcher over POLICY and the shipped matrix, in live mode, with these parts."""
    live = LivePolicies.load(write_policies(tmp_path / "policies", POLICY), Metrics().policies)
    guards = Guards(
        backend,
        store,
        Metrics().guards,
        live=True,
        guardrails=lambda: live.current.guardrails,
        clock=clock,
    )
    runner = Runner(store, guards, live, actions, clock=clock, check_interval=0)
    return Dispatcher(store, runner, clock=clock, worker="test")


async def post_alert(
    store: Store, clock: Callable[[], float], labels: dict[str, str], fingerprint: str, status: str
) -> None:
    """Store one alert as the intake does, received now by `clock`."""
    alert = webhook_alert(labels, fingerprint=fingerprint, starts_at=STARTS_AT, status=status)
    received = datetime.fromtimestamp(clock(), UTC)
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", received)


STARTS_AT = "2027-01-15T08:00:00Z"
