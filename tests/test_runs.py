"""Remediation runs over a real store and a real HTTP application: decide, guard, act, verify."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from remediator.actions.registry import open_actions
from remediator.alerts import AlertStatus
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.store import Remediation, Store
from tests.support.world import POLICY, World


async def test_a_failing_check_leads_to_the_fix_and_the_resolution_to_success(
    world: World,
) -> None:
    await world.post("firing")
    assert await world.dispatcher.run_once() == 1
    [run] = await world.runs()
    assert (run.outcome, run.policy, run.target) == ("verifying", "probe-and-fix", run.target)
    steps = await world.store.steps(run.id)
    assert [(step.action, step.outcome) for step in steps] == [
        ("http.check", "failed"),
        ("http.request", "ok"),
    ]
    assert steps[0].data["status"] == 503
    assert world.application.calls == [("fix", {"mode": "safe"})]

    world.clock.advance(120)
    await world.post("resolved")
    assert await world.dispatcher.run_once() == 1
    first, undo = await world.runs()
    assert first.outcome == "succeeded"
    assert (undo.kind, undo.outcome) == ("resolved", "succeeded")
    assert world.application.calls[-1] == ("unfix", None)


VERIFIED_BY_HEALTH = POLICY.replace(
    "verify:\n  resolved_within: 10m\n",
    "verify:\n  resolved_within: 10m\n  check:\n    action: http.check\n"
    '    params: {url: "http://{{ labels.instance }}/health"}\n',
)
# The same, written short: `verify.http` is that check.
VERIFIED_BY_HEALTH_SHORT = POLICY.replace(
    "verify:\n  resolved_within: 10m\n",
    'verify:\n  resolved_within: 10m\n  http: "http://{{ labels.instance }}/health"\n',
)


async def _still_firing(world: World, run: Remediation) -> bool:
    record = await world.store.alert(run.fingerprint, run.starts_at)
    assert record is not None
    return record.status == AlertStatus.FIRING


@pytest.mark.parametrize("policy", [VERIFIED_BY_HEALTH, VERIFIED_BY_HEALTH_SHORT])
async def test_a_passing_health_check_verifies_the_run_before_the_alert_resolves(
    world: World,
) -> None:
    world.application.heals_on_fix = True
    await world.post("firing")
    assert await world.dispatcher.run_once() == 1
    [run] = await world.runs()
    assert run.outcome == "succeeded"
    assert run.reason == f"verified: http://{world.instance}/health answered 200"
    steps = await world.store.steps(run.id)
    assert [(step.phase, step.action, step.outcome) for step in steps] == [
        ("steps", "http.check", "failed"),
        ("steps", "http.request", "ok"),
        ("verify", "http.check", "ok"),
    ]
    assert steps[-1].data["status"] == 200
    assert await _still_firing(world, run)  # no resolved notification came


@pytest.mark.parametrize("policy", [VERIFIED_BY_HEALTH])
async def test_a_run_stays_verifying_while_its_health_check_fails(world: World) -> None:
    await world.post("firing")
    await world.dispatcher.run_once()
    for _ in range(3):  # the fix has not taken effect: /health still answers 503
        [run] = await world.runs()
        assert run.outcome == "verifying"
        assert [step.phase for step in await world.store.steps(run.id)] == ["steps", "steps"]
        world.clock.advance(60)
        assert await world.dispatcher.run_once() == 0

    world.application.healthy = True
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert (run.outcome, run.reason) == (
        "succeeded",
        f"verified: http://{world.instance}/health answered 200",
    )
    assert await _still_firing(world, run)
    assert world.application.calls == [("fix", {"mode": "safe"})]  # verifying changes nothing


async def test_a_healthy_check_skips_the_fix(world: World) -> None:
    world.application.healthy = True
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    steps = await world.store.steps(run.id)
    assert [step.outcome for step in steps] == ["ok", "skipped"]
    assert steps[1].message == "when 'not steps.health.ok' is false"
    assert world.application.calls == []


async def test_no_resolution_in_time_fails_and_two_failures_open_the_breaker(
    world: World,
) -> None:
    for hour in range(2):
        await world.post("firing", starts_at=f"2027-01-15T0{hour}:00:00Z")
        await world.dispatcher.run_once()
        world.clock.advance(601)  # the 10m verification window passes
        await world.dispatcher.run_once()
    outcomes = [(run.outcome, run.reason) for run in await world.runs()]
    assert outcomes == [("failed", "the alert did not resolve in time")] * 2

    await world.post("firing", starts_at="2027-01-15T03:00:00Z")
    await world.dispatcher.run_once()
    blocked = (await world.runs())[-1]
    assert (blocked.outcome, blocked.guard) == ("blocked", "circuit_breaker")
    assert len(world.application.calls) == 2  # the third alert touched nothing


async def test_a_refused_change_fails_the_run_at_once(world: World) -> None:
    world.application.fix_status = 400
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert run.outcome == "failed"
    assert run.reason.endswith("answered 400")


@pytest.mark.parametrize("policy", [POLICY.replace("steps:\n", "step_timeout: 1s\nsteps:\n")])
async def test_a_step_that_does_not_answer_times_out(world: World) -> None:
    world.application.fix_hangs = True
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert (run.outcome, run.reason) == ("failed", "http.request: timed out after 1s")


async def test_a_server_error_is_retried_then_given_up(world: World) -> None:
    world.application.fix_status = 503
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert run.outcome == "failed"
    [_, fix] = await world.store.steps(run.id)
    assert fix.attempts == 3
    assert len(world.application.calls) == 3


async def test_an_alert_resolved_while_queued_is_not_acted_on(world: World) -> None:
    await world.post("firing")
    await world.post("resolved")
    # The resolution is claimed only once the firing is done: one, then the other.
    assert await world.dispatcher.run_once() == 1
    assert await world.dispatcher.run_once() == 1
    outcomes = [(run.kind, run.outcome) for run in await world.runs()]
    assert outcomes == [("firing", "skipped")]
    assert world.application.calls == []


async def test_a_firing_alert_with_a_run_going_is_not_started_again(world: World) -> None:
    await world.post("firing")
    await world.dispatcher.run_once()
    # The same alert again, a new episode would have another startsAt: this is the same one,
    # arriving as a new event only if its state changed, so queue one by hand.
    [event_alert] = await world.runs()
    assert event_alert.outcome == "verifying"
    assert await world.dispatcher.run_once() == 0
    assert len(world.application.calls) == 1


async def test_dry_run_reads_for_real_and_changes_nothing(world: World, store: Store) -> None:
    world.guards._live = False  # as REMEDIATOR_MODE=dry-run
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert run.outcome == "dry_run"
    steps = await store.steps(run.id)
    assert [(step.outcome, step.message.split(" ")[0]) for step in steps] == [
        ("failed", f"http://{world.instance}/health"),
        ("dry_run", "would"),
    ]
    assert world.application.calls == []
    # The reason says what happened: the change it would have made, and the read that failed.
    url = f"http://{world.instance}"
    assert run.reason == (
        f"would PUT {url}/admin/fix; 1 read failed (http.check: {url}/health answered 503)"
    )


ONCE_AN_HOUR = POLICY.replace("    - {max: 5, per: 1h}", "    - {max: 1, per: 1h}")


@pytest.mark.parametrize("policy", [ONCE_AN_HOUR])
async def test_dry_run_records_what_live_mode_would_have_done(world: World) -> None:
    world.guards._live = False  # as REMEDIATOR_MODE=dry-run
    for minute in range(3):  # three episodes within three minutes; the policy allows one an hour
        starts_at = f"2027-01-15T08:0{minute}:00Z"
        await world.post("firing", starts_at)
        await world.dispatcher.run_once()
        world.clock.advance(30)
        await world.post("resolved", starts_at)
        await world.dispatcher.run_once()
        world.clock.advance(30)
    fired = [(r.outcome, r.guard) for r in await world.runs() if r.kind == "firing"]
    assert fired == [("dry_run", None), ("blocked", "rate_limit"), ("blocked", "rate_limit")]
    blocked = [r for r in await world.runs() if r.outcome == "blocked"]
    assert blocked[0].reason.startswith(
        "dry-run (the service runs in dry-run mode): would be blocked: "
    )
    assert world.application.calls == []
    # The budgets dry-run spent are shown, as live mode's would be.
    snapshot = await world.guards.snapshot(world.live.current)
    [budget] = snapshot.budgets["probe-and-fix/-/shop"]
    assert (budget.used, budget.window.max) == (1, 1)


WITH_A_SECRET = POLICY.replace(
    "json: {mode: safe}}",
    "json: {mode: safe}, headers_from_env: {Authorization: SHOP_ADMIN_TOKEN_NOT_SET}}",
)


@pytest.mark.parametrize("policy", [WITH_A_SECRET])
async def test_dry_run_says_a_secret_live_mode_would_miss_and_undoes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOP_ADMIN_TOKEN_NOT_SET", raising=False)
    world.guards._live = False  # as REMEDIATOR_MODE=dry-run
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert run.outcome == "dry_run"  # not failed for a secret dry-run does not use
    url = f"http://{world.instance}"
    unset = "environment variables not set: SHOP_ADMIN_TOKEN_NOT_SET"
    assert run.reason.startswith(f"would PUT {url}/admin/fix; would fail: {unset}")
    # Live mode would have changed nothing, so there is nothing for dry-run to undo either.
    await world.post("resolved")
    await world.dispatcher.run_once()
    undo = [(r.outcome, r.reason) for r in await world.runs() if r.kind == "resolved"]
    assert undo == [("skipped", "on_resolved: nothing to undo, the run made no change")]
    assert world.application.calls == []


async def test_a_crashed_run_is_taken_over_without_repeating_completed_steps(
    world: World,
) -> None:
    world.application.healthy = False
    await world.post("firing")
    crashed = Dispatcher(world.store, world.dispatcher._runner, clock=world.clock, worker="dead")
    [event] = await world.store.claim_events(
        "dead",
        datetime.fromtimestamp(world.clock(), UTC),
        datetime.fromtimestamp(world.clock() + 60, UTC),
        10,
    )
    assert crashed.worker == "dead"
    # The dead worker got as far as its first step, then the process was killed.
    runner = world.dispatcher._runner
    remediation = await runner.fire(event, await _record(world, event), {})
    assert remediation.outcome == "verifying"
    await world.store.save_remediation(
        Remediation(**{**remediation.__dict__, "outcome": "running", "verify_until": None})
    )
    calls_before = len(world.application.calls)

    assert await world.dispatcher.run_once() == 0  # its claim has not lapsed yet
    world.clock.advance(61)
    assert await world.dispatcher.run_once() == 1
    interrupted, taken_over = await world.runs()
    assert interrupted.outcome == "interrupted"
    assert taken_over.outcome == "verifying"
    check, fix = await world.store.steps(taken_over.id)
    assert check.message.endswith("answered 503")  # a read is simply repeated
    assert (
        fix.message
        == f"done by the interrupted run: PUT http://{world.instance}/admin/fix answered 200"
    )
    assert len(world.application.calls) == calls_before  # nothing done twice


async def test_an_alert_resolved_mid_run_stops_before_the_next_change_and_pages_nobody(
    world: World,
) -> None:
    async def resolves() -> None:
        await world.post("resolved")

    world.application.while_checked = resolves  # it recovers while the first step reads
    await world.post("firing")
    await world.dispatcher.run_once()
    [run, *_] = await world.runs()
    assert (run.outcome, run.reason) == ("stopped", "the alert resolved")
    assert world.application.calls == []  # the fix was not made on a recovered application
    assert await world.store.outbox_for(f"remediator/probe-and-fix/{run.target}") == []
    [admitted] = await world.store.runs_since(datetime.fromtimestamp(0, UTC))
    assert admitted.succeeded is True  # the resolution is what verification waits for


async def test_a_run_whose_target_lease_lapsed_does_not_act(world: World) -> None:
    async def stalls() -> None:
        world.clock.advance(61)  # a pause longer than the lease: another worker may hold it

    world.application.while_checked = stalls
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert run.outcome == "interrupted"
    assert run.reason == "target lease lost before http.request: not acting"
    assert world.application.calls == []
    queued = await world.store.outbox_for(f"remediator/probe-and-fix/{run.target}")
    assert {entry.channel for entry in queued} == {"slack", "email", "ladder"}


async def test_a_pause_stops_a_run_already_going_before_its_next_change(world: World) -> None:
    async def pauses() -> None:
        await world.guards.pause("database failover in progress", "ops")

    world.application.while_checked = pauses  # the operator pauses while the first step reads
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert (run.outcome, run.guard) == ("blocked", "kill_switch")
    assert run.reason == "paused by ops before http.request: database failover in progress"
    assert world.application.calls == []
    queued = await world.store.outbox_for(f"remediator/probe-and-fix/{run.target}")
    assert [entry.message["outcome"] for entry in queued if entry.channel == "slack"] == ["blocked"]


WITHOUT_A_CLUSTER = """\
name: restart-shop
match:
  - alertname="AppDown"
severity: P2
namespaces: [prod]
target:
  kind: Deployment
  namespace: prod
  name: "{{ labels.app }}"
steps:
  - action: kubernetes.rollout_status
  - action: kubernetes.rollout_restart
rate_limit:
  windows:
    - {max: 5, per: 1h}
"""


SCALED_WITHOUT_A_CLUSTER = WITHOUT_A_CLUSTER.replace(
    "  - action: kubernetes.rollout_restart\n",
    "  - action: kubernetes.scale\n    params: {by: 2, max_replicas: 10}\n",
)


@pytest.mark.parametrize("policy", [SCALED_WITHOUT_A_CLUSTER])
async def test_a_change_dry_run_records_what_it_was_asked_to_do(world: World) -> None:
    world.guards._live = False  # as REMEDIATOR_MODE=dry-run
    await world.post("firing")
    async with open_actions(None) as actions:  # no kubeconfig, not in a cluster
        runner = Runner(world.store, world.guards, world.live, actions, clock=world.clock)
        await Dispatcher(world.store, runner, clock=world.clock, worker="w").run_once()
    [run] = await world.runs()
    _, scale = await world.store.steps(run.id)
    assert scale.message.startswith(
        "would run kubernetes.scale on deployment prod/shop"
        " (by: 2, min_replicas: 1, max_replicas: 10): dry-run only,"
    )
    assert scale.data["params"] == {"by": 2, "min_replicas": 1, "max_replicas": 10}


@pytest.mark.parametrize("policy", [WITHOUT_A_CLUSTER])
async def test_without_a_kubernetes_api_a_live_run_can_only_dry_run_its_changes(
    world: World,
) -> None:
    await world.post("firing")
    async with open_actions(None) as actions:  # no kubeconfig, not in a cluster
        runner = Runner(world.store, world.guards, world.live, actions, clock=world.clock)
        await Dispatcher(world.store, runner, clock=world.clock, worker="w").run_once()
    [run] = await world.runs()
    status, restart = await world.store.steps(run.id)
    assert (status.outcome, restart.outcome) == ("failed", "dry_run")
    assert status.message.startswith(
        "cannot read kubernetes.rollout_status on deployment prod/shop: no"
    )
    assert restart.message.startswith(
        "would run kubernetes.rollout_restart on deployment prod/shop (wait: False,"
    )
    assert run.outcome == "dry_run"  # not verifying a fix that was never made
    assert "no Kubernetes API configured" in run.reason
    queued = await world.store.outbox_for(f"remediator/restart-shop/{run.target}")
    assert {entry.channel for entry in queued} >= {"slack", "email"}  # a person must act


async def _record(world: World, event: Any) -> Any:
    record = await world.store.alert(event.fingerprint, event.starts_at)
    assert record is not None
    return record


async def test_undoing_a_mitigation_waits_for_no_other_run_and_says_so_when_it_must(
    world: World,
) -> None:
    await world.post("firing")
    await world.dispatcher.run_once()  # fixed; verifying
    [run] = await world.runs()
    other = await world.guards.backend.acquire_lease(run.target or "", "another-run", 60)
    assert other is not None  # another alert's run acts on the same target right now
    await world.post("resolved")
    await world.dispatcher.run_once()
    assert ("unfix", None) not in world.application.calls  # not undone under another run
    undo = [r for r in await world.runs() if r.kind == "resolved"]
    assert [(r.outcome, r.guard) for r in undo] == [("blocked", "target_lock")]
    assert undo[0].reason == f"on_resolved: another run holds {run.target}"
    # An incident of its own: the resolution closed the alert's.
    queued = await world.store.outbox_for(f"remediator/probe-and-fix/{run.target}/on_resolved")
    assert [e.message["outcome"] for e in queued if e.channel == "slack"] == ["blocked"]


POSTED_FIX = POLICY.replace("params: {method: PUT, url:", "params: {method: POST, url:", 1)


@pytest.mark.parametrize("policy", [POSTED_FIX])
async def test_a_hook_call_cut_off_by_a_crash_is_not_made_again_but_left_to_a_person(
    world: World,
) -> None:
    """A POST to an application's hook cannot be read back: it is recorded as started before
    it is made, and a run taking over from a dead worker does not make it a second time (a
    PUT is idempotent, and is made again)."""
    world.application.fix_hangs = True
    await world.post("firing")
    worker = asyncio.create_task(world.dispatcher.run_once())
    while not world.application.calls:  # the call is in flight, and never answered
        await asyncio.sleep(0.01)
    [run] = await world.runs()
    steps = [(s.action, s.outcome) for s in await world.store.steps(run.id)]
    assert steps == [("http.check", "failed"), ("http.request", "started")]
    worker.cancel()  # the worker dies with the call made and its answer never recorded
    with contextlib.suppress(asyncio.CancelledError):
        await worker

    world.application.fix_hangs = False
    world.clock.advance(120)  # the dead worker's claim and lease lapse
    assert await world.dispatcher.run_once() == 1
    assert world.application.calls == [("fix", {"mode": "safe"})]  # made once, by the dead run
    taken_over = (await world.runs())[-1]
    assert taken_over.outcome == "failed"
    assert "not made again, as it may have taken effect" in (taken_over.reason or "")
