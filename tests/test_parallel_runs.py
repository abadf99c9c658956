"""Several incidents at once: each claimed event runs on its own, so a hung step of one run
delays no other alert; events of one alert stay in order, one run acts on a target at a time,
and a run held by the concurrency cap waits for its turn instead of being dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediator.alerts import Notification
from remediator.notify.escalator import dedup_key
from remediator.remediation.busy import BUSY
from remediator.remediation.dispatcher import Dispatcher
from remediator.store import OutboxEntry, Remediation, Store
from tests.support.policies import STAND_INS_ALLOWED
from tests.support.service_process import eventually
from tests.support.webhooks import webhook, webhook_alert
from tests.support.world import POLICY, World, open_world, write_policies

STARTS_AT = "2027-01-15T08:00:00Z"
BOUND = 10.0  # seconds: far above what deciding and queueing a page take, far below a hang
# The fix alone (no health check first), paging at once as a P1 does.
FIX_ONLY = POLICY.replace("severity: P2", "severity: P1").replace(
    """  - id: health
    action: http.check
    params: {url: "http://{{ labels.instance }}/health"}
  - id: fix
    action: http.request
    when: not steps.health.ok
""",
    """  - id: fix
    action: http.request
""",
)


async def post(
    world: World, app: str, status: str = "firing", *, alertname: str = "AppDown", pod: str = ""
) -> str:
    """An alert about `app` (its target), firing or resolved; its fingerprint."""
    fingerprint = f"fp-{alertname}-{app}-{pod}"
    labels = {"alertname": alertname, "app": app, "instance": world.instance, "pod": pod}
    if alertname != "AppDown":
        labels["severity"] = "critical"
    alert = webhook_alert(labels, fingerprint=fingerprint, starts_at=STARTS_AT, status=status)
    body = webhook(alert, group_key=f'{{}}:{{alertname="{alertname}"}}')
    received = datetime.fromtimestamp(world.clock(), UTC)
    await world.store.record_notification(Notification.model_validate(body), b"{}", received)
    world.dispatcher.wake()
    return fingerprint


async def runs_of(store: Store, fingerprint: str) -> list[Remediation]:
    return [r for r in reversed(await store.list_remediations(100)) if r.fingerprint == fingerprint]


@contextlib.asynccontextmanager
async def dispatching(*dispatchers: Dispatcher) -> AsyncIterator[None]:
    """The dispatchers' loops running, as `remediator serve` runs them; stopped on the way out."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def world_with(
    store: Store, tmp_path: Path, policy: str, guardrails: str = ""
) -> AsyncIterator[World]:
    policies = write_policies(tmp_path / "policies", policy)
    if guardrails:  # the loopback stand-ins allowed, as write_policies allows them
        (policies / "guardrails.yaml").write_text(STAND_INS_ALLOWED + guardrails)
    async with open_world(store, policies) as world:
        yield world


async def test_a_hung_step_delays_no_other_alert_nor_its_page(store: Store, tmp_path: Path) -> None:
    async with world_with(store, tmp_path, FIX_ONLY) as world:
        world.application.fix_gate = gate = asyncio.Event()
        async with dispatching(world.dispatcher):
            hung = await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the first fix call", timeout=BOUND)
            # Meanwhile another incident: no policy matches, and the matrix pages at once.
            other = await post(world, "billing", alertname="DiskAlmostFull")

            async def decided_and_paged() -> bool:
                runs = await runs_of(world.store, other)
                return bool(runs) and any(
                    entry.action == "trigger" for entry in await _outbox_of(world.store, runs[0])
                )

            await eventually(decided_and_paged, what="the other alert's page", timeout=BOUND)
            [first] = await runs_of(world.store, hung)
            assert first.outcome == "running"  # still hung in its fix
            gate.set()
            await eventually(
                lambda: _outcome(world.store, hung, "verifying"), what="the fix", timeout=BOUND
            )
        [other_run] = await runs_of(world.store, other)
        assert other_run.outcome == "no_match"


async def test_two_alerts_on_one_target_take_turns_while_other_targets_go_on(
    store: Store, tmp_path: Path
) -> None:
    async with world_with(store, tmp_path, FIX_ONLY) as world:
        world.application.fix_gate = gate = asyncio.Event()
        async with dispatching(world.dispatcher):
            first = await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the first fix call", timeout=BOUND)
            second = await post(world, "shop", pod="shop-2")  # another alert, the same target
            other = await post(world, "billing")
            await eventually(
                lambda: _outcome(world.store, second, "waiting"), what="a turn", timeout=BOUND
            )
            # The other target's run goes on: its fix is under way too.
            await eventually(lambda: _called(world, 2), what="the other's fix", timeout=BOUND)
            [waiting] = await runs_of(world.store, second)
            assert waiting.guard == "target_lock"
            assert "waiting up to 10m for its turn: another run holds" in waiting.reason
            assert await _outcome(world.store, other, "running")
            world.clock.advance(10)
            gate.set()
            await eventually(
                lambda: _outcome(world.store, second, "verifying"), what="its run", timeout=BOUND
            )
        [one] = await runs_of(world.store, first)
        [two] = await runs_of(world.store, second)
        assert (one.outcome, two.id) == ("verifying", waiting.id)  # the same run, not another
        first_steps = await world.store.steps(one.id)
        second_steps = await world.store.steps(two.id)
        assert second_steps[0].started_at >= first_steps[-1].finished_at
        assert len(world.application.calls) == 3


async def test_a_resolution_is_handled_after_its_firing_whichever_replica_has_it(
    store: Store, tmp_path: Path
) -> None:
    """The alert resolves while its run makes its last change: the run goes on to verifying,
    and only then is the resolution handled (by either replica), verifying the fix and undoing
    the mitigation. Handled before, it would find no run to verify and the fix would fail."""
    async with world_with(store, tmp_path, FIX_ONLY) as world:
        world.application.fix_gate = gate = asyncio.Event()
        other = Dispatcher(store, world.dispatcher._runner, clock=world.clock, worker="other")
        async with dispatching(world.dispatcher):
            fingerprint = await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the fix call", timeout=BOUND)
            await post(world, "shop", "resolved")
            # Another replica looks now: the resolution is not its to take yet.
            assert await other.run_once() == 0
            world.clock.advance(10)
            gate.set()
            await eventually(
                lambda: _outcome(world.store, fingerprint, "succeeded", kind="resolved"),
                what="the undo",
                timeout=BOUND,
            )
        fired, undone = await runs_of(world.store, fingerprint)
        assert (fired.kind, fired.outcome, fired.reason) == (
            "firing",
            "succeeded",
            "the alert resolved in time",
        )
        assert undone.started_at >= fired.started_at
        assert [call for call, _ in world.application.calls] == ["fix", "unfix"]


CAPPED = "max_concurrent_runs: 1\nwait_for_slot: {wait}\n"


async def test_a_run_held_by_the_cap_is_paged_at_once_waits_and_then_runs(
    store: Store, tmp_path: Path
) -> None:
    async with world_with(store, tmp_path, FIX_ONLY, CAPPED.format(wait="5m")) as world:
        world.application.fix_gate = gate = asyncio.Event()
        async with dispatching(world.dispatcher):
            first = await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the first fix call", timeout=BOUND)
            second = await post(world, "billing")
            await eventually(
                lambda: _outcome(world.store, second, "waiting"), what="a slot", timeout=BOUND
            )
            [waiting] = await runs_of(world.store, second)
            assert waiting.guard == "concurrency"
            assert waiting.reason == (
                "waiting up to 5m for its turn: 1 runs in flight, the cap is 1"
            )
            # P1: paged at once, while it waits, saying so.
            paged = await _outbox_of(world.store, waiting)
            assert {e.channel for e in paged if e.action == "trigger"} >= {"pagerduty", "slack"}
            assert (
                "remediation waiting for its turn: waiting up to 5m" in paged[0].message["summary"]
            )
            gate.set()
            for fingerprint in (first, second):
                await eventually(
                    lambda f=fingerprint: _outcome(world.store, f, "verifying"),
                    what="both runs",
                    timeout=BOUND,
                )
        [ran] = await runs_of(world.store, second)
        assert ran.id == waiting.id
        assert ran.run_id is not None
        assert [call for call, _ in world.application.calls] == ["fix", "fix"]


async def test_a_run_whose_wait_for_a_slot_runs_out_is_escalated_as_blocked(
    store: Store, tmp_path: Path
) -> None:
    async with world_with(store, tmp_path, FIX_ONLY, CAPPED.format(wait="1s")) as world:
        world.application.fix_gate = gate = asyncio.Event()
        async with dispatching(world.dispatcher):
            await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the first fix call", timeout=BOUND)
            second = await post(world, "billing")
            await eventually(
                lambda: _outcome(world.store, second, "blocked"), what="the wait", timeout=BOUND
            )
            gate.set()
        [blocked] = await runs_of(world.store, second)
        assert (blocked.guard, blocked.reason) == (
            "concurrency",
            "waited 1s for its turn: 1 runs in flight, the cap is 1",
        )
        told = await _outbox_of(world.store, blocked)
        assert {e.message["outcome"] for e in told if e.channel == "slack"} >= {"blocked"}
        assert len(world.application.calls) == 1  # never acted


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_a_replica_holds_at_most_its_number_of_events_in_flight(
    store: Store, tmp_path: Path, in_flight: int
) -> None:
    async with world_with(store, tmp_path, FIX_ONLY, "max_concurrent_runs: 10\n") as world:
        world.application.fix_gate = gate = asyncio.Event()
        bounded = Dispatcher(
            store, world.dispatcher._runner, clock=world.clock, worker="w", in_flight=in_flight
        )
        world.dispatcher = bounded
        async with dispatching(bounded):
            for n in range(5):
                await post(world, f"app-{n}")
            await eventually(
                lambda: _called(world, in_flight), what="the fixes in flight", timeout=BOUND
            )
            assert bounded.in_flight == in_flight
            assert len(await store.pending_events(10)) == 5
            gate.set()
            await eventually(lambda: _called(world, 5), what="every fix", timeout=BOUND)
        assert len(world.application.calls) == 5


async def _called(world: World, times: int) -> bool:
    return len(world.application.calls) >= times


async def _outcome(store: Store, fingerprint: str, outcome: str, *, kind: str = "firing") -> bool:
    return any(r.outcome == outcome and r.kind == kind for r in await runs_of(store, fingerprint))


async def _outbox_of(store: Store, remediation: Remediation) -> list[OutboxEntry]:
    return await store.outbox_for(dedup_key(remediation))


async def test_runs_waiting_for_their_turn_keep_no_other_alert_from_its_page(
    store: Store, tmp_path: Path
) -> None:
    """Two events in flight at most; one runs, one waits for the cap: a third alert is still
    decided and paged at once (a waiting run does not count against the events in flight)."""
    async with world_with(store, tmp_path, FIX_ONLY, CAPPED.format(wait="5m")) as world:
        world.application.fix_gate = gate = asyncio.Event()
        world.dispatcher = Dispatcher(
            store, world.dispatcher._runner, clock=world.clock, worker="w", in_flight=2
        )
        async with dispatching(world.dispatcher):
            await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the first fix call", timeout=BOUND)
            waiting = await post(world, "billing")
            await eventually(
                lambda: _outcome(world.store, waiting, "waiting"), what="a slot", timeout=BOUND
            )
            other = await post(world, "ledger", alertname="DiskAlmostFull")
            await eventually(
                lambda: _outcome(world.store, other, "no_match"), what="its page", timeout=BOUND
            )
            gate.set()
            await eventually(
                lambda: _outcome(world.store, waiting, "verifying"), what="its run", timeout=BOUND
            )
        [decided] = await runs_of(world.store, other)
        assert {e.channel for e in await _outbox_of(world.store, decided)} >= {"pagerduty"}


async def test_an_event_claimed_while_the_claims_are_being_renewed_is_not_lost(
    store: Store, tmp_path: Path
) -> None:
    """The renewal asks for the claims held when it starts; one claimed before its answer
    comes back is not among them, and must not be taken for a claim lost."""
    async with world_with(store, tmp_path, FIX_ONLY) as world:
        world.application.fix_gate = gate = asyncio.Event()
        renewing, answer = asyncio.Event(), asyncio.Event()
        renew = store.renew_events

        async def slow_renewal(*args: Any) -> set[int]:
            kept = await renew(*args)
            renewing.set()
            await answer.wait()  # the answer is on its way back
            return kept

        store.renew_events = slow_renewal  # type: ignore[method-assign]
        world.dispatcher = Dispatcher(
            store, world.dispatcher._runner, clock=world.clock, lease=timedelta(seconds=0.3)
        )
        async with dispatching(world.dispatcher):
            first = await post(world, "shop")
            await eventually(lambda: _called(world, 1), what="the first fix call", timeout=BOUND)
            await asyncio.wait_for(renewing.wait(), BOUND)
            second = await post(world, "billing")  # claimed while the renewal is out
            await eventually(lambda: _called(world, 2), what="its fix call", timeout=BOUND)
            answer.set()
            gate.set()
            for fingerprint in (first, second):
                await eventually(
                    lambda f=fingerprint: _outcome(world.store, f, "verifying"),
                    what="both runs",
                    timeout=BOUND,
                )


async def test_more_hung_steps_than_busy_places_hold_no_other_alert_back(
    store: Store, tmp_path: Path
) -> None:
    """A run lets its busy place go while its action's call is out: more calls hung than there
    are places still leave other alerts to be decided and paged."""
    hung = BUSY + 2
    async with world_with(store, tmp_path, FIX_ONLY, f"max_concurrent_runs: {hung}\n") as world:
        world.application.fix_gate = gate = asyncio.Event()
        async with dispatching(world.dispatcher):
            for n in range(hung):
                await post(world, f"app-{n}")
            await eventually(lambda: _called(world, hung), what="every fix call", timeout=BOUND)
            other = await post(world, "ledger", alertname="DiskAlmostFull")
            await eventually(
                lambda: _outcome(world.store, other, "no_match"), what="its page", timeout=BOUND
            )
            gate.set()
