"""An unexpected exception (a bug) while an event is handled: the event is recorded as an
error and escalated by the severity matrix, never marked done with nothing on record."""

from __future__ import annotations

from pathlib import Path

from remediator.engine.outcome import RunOutcome
from remediator.guards.memory import MemoryGuards
from remediator.store import Store
from tests.support.clocks import Clock
from tests.support.escalation import outbox
from tests.support.faults import (
    BUG,
    LABELS,
    RaisingGuards,
    answers_ok,
    answers_ok_then_nothing,
    dispatcher_of,
    post_alert,
)


async def post(store: Store, clock: Clock, status: str) -> None:
    await post_alert(store, clock, LABELS, "fp-1", status)


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
    actions = {"http.check": answers_ok, "http.request": answers_ok_then_nothing()}
    dispatcher = dispatcher_of(store, tmp_path, clock, MemoryGuards(clock), actions)
    await post(store, clock, "firing")
    await dispatcher.run_once()
    clock.advance(60)
    await post(store, clock, "resolved")
    assert await dispatcher.run_once() == 1  # its on_resolved step's action returns nothing
    undo = next(r for r in await store.list_remediations(10) if r.kind == "resolved")
    assert undo.outcome is RunOutcome.ERROR, undo
    assert undo.reason.startswith("internal error: AttributeError: ")
    key = "remediator/probe-and-fix/Application/-/shop/on_resolved"  # an undo's own incident
    assert (await outbox(store, key))[-2:] == [("pagerduty", "trigger"), ("slack", "trigger")]
    assert await store.pending_events(10) == []
