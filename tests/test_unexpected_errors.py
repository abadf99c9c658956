"""An unexpected exception (a bug) while an event is handled: the event is recorded as an
error and escalated by the severity matrix, never marked done with nothing on record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from remediator.actions.base import Action
from remediator.alerts import Notification
from remediator.engine.outcome import RunOutcome
from remediator.guards.base import GuardBackend
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Store
from tests.support.clocks import Clock
from tests.support.escalation import outbox
from tests.support.faults import BUG, RaisingGuards, answers_nothing, answers_ok
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import write_policies

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
on_resolved:
  - action: http.request
    params: {method: PUT, url: "http://app.shop.svc.cluster.local/admin/unfix"}
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: 5, per: 1h}
"""
LABELS = {"alertname": "AppDown", "app": "shop", "severity": "critical"}
STARTS_AT = "2027-01-15T08:00:00Z"


def dispatcher_of(
    store: Store, tmp_path: Path, clock: Clock, backend: GuardBackend, actions: Mapping[str, Action]
) -> Dispatcher:
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


async def post(store: Store, clock: Clock, status: str) -> None:
    alert = webhook_alert(LABELS, fingerprint="fp-1", starts_at=STARTS_AT, status=status)
    received = datetime.fromtimestamp(clock(), UTC)
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", received)


async def test_a_bug_before_any_record_is_recorded_as_an_error_and_paged_by_severity(
    store: Store, tmp_path: Path
) -> None:
    clock = Clock()
    dispatcher = dispatcher_of(store, tmp_path, clock, RaisingGuards(clock), {})
    await post(store, clock, "firing")
    assert await dispatcher.run_once() == 1
    [run] = await store.list_remediations(10)
    assert (run.outcome, run.reason) == (RunOutcome.ERROR, f"internal error: RuntimeError: {BUG}")
    assert (run.plan.level, run.policy) == ("P1", None)
    # critical is P1 by the matrix: PagerDuty and Slack, though the policy pages only on failure
    key = "remediator/alert/AppDown/fp-1"
    assert await outbox(store, key) == [("pagerduty", "trigger"), ("slack", "trigger")]
    assert await store.pending_events(10) == []


async def test_a_bug_mid_run_ends_the_run_left_going_as_an_error_and_pages(
    store: Store, tmp_path: Path
) -> None:
    clock = Clock()
    actions = {"http.check": answers_ok, "http.request": answers_nothing}
    dispatcher = dispatcher_of(store, tmp_path, clock, MemoryGuards(clock), actions)
    await post(store, clock, "firing")
    await dispatcher.run_once()
    clock.advance(60)
    await post(store, clock, "resolved")
    assert await dispatcher.run_once() == 1  # its on_resolved step's action returns nothing
    undo = next(r for r in await store.list_remediations(10) if r.kind == "resolved")
    assert undo.outcome is RunOutcome.ERROR, undo
    assert undo.reason.startswith("internal error: AttributeError: ")
    key = "remediator/probe-and-fix/Application/-/shop"
    assert (await outbox(store, key))[-2:] == [("pagerduty", "trigger"), ("slack", "trigger")]
    assert await store.pending_events(10) == []
