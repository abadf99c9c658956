"""Alerts silently dropped (issue 16, item 5): every alert stored is decided and, when the
severity matrix says so, paged.

- A bug while an event is handled (a guard backend that raises RuntimeError, a real part with
  a fault in it) is recorded as an `error` run and paged by the severity matrix. When the store
  is down at that moment too (PostgreSQL stopped with `-m immediate` by the fault itself), the
  event is not marked done: once its claim lapses it is tried again, and recorded and paged.

- A critical alert whose `startsAt` is Go's zero time or Python's last instant (PostgreSQL's
  driver reads those as -infinity and infinity, back without a time zone) is stored with its
  time clamped to 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, the same on both stores, and
  paged like any other; its resolution, clamped the same, closes the page.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from remediator.engine.outcome import RunOutcome
from remediator.store import Remediation, StoreUnavailable, open_store
from tests.support.clocks import Clock
from tests.support.escalation import outbox
from tests.support.faults import LABELS, RaisingGuards, dispatcher_of, post_alert
from tests.support.figures import Figures, scale
from tests.support.notify_recorder import Recorder
from tests.support.postgres_server import PostgresServer
from tests.support.service_process import ServiceProcess
from tests.support.stack import TOKEN, policy_directory, settles
from tests.support.webhooks import webhook, webhook_alert

EXTREME_STARTS = {
    "0001-01-01T00:00:00Z": datetime(1970, 1, 1, tzinfo=UTC),
    "9999-12-31T23:59:59.999999Z": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    "0001-01-01T00:00:00.000001Z": datetime(1970, 1, 1, tzinfo=UTC),
    "1969-12-31T23:59:59Z": datetime(1970, 1, 1, tzinfo=UTC),
}
EXTREME_ALERTS = scale(4, 40)
BUGGY_EVENTS = 1


@pytest.fixture
async def service(
    tmp_path: Path,
    database_url: str,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[ServiceProcess]:
    """`remediator serve` in live mode with the shipped matrix and no policy: an alert escalates
    by its severity alone, a critical one to the PagerDuty and Slack stand-ins."""
    policies = policy_directory(tmp_path / "policies", [], pagerduty_api.url)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    started = await ServiceProcess.start(
        tmp_path,
        database_url=database_url,
        webhook_token=TOKEN,
        mode="live",
        policies=str(policies),
    )
    yield started
    assert started.stop() == 0


def _extreme(number: int, starts_at: str, status: str = "firing") -> dict[str, object]:
    labels = {"alertname": "ExtremeStart", "severity": "critical", "n": str(number)}
    return webhook_alert(
        labels, fingerprint=f"extreme-{number}", starts_at=starts_at, status=status
    )


def _pages(pagerduty: Recorder, action: str) -> set[str]:
    """The incidents PagerDuty heard `action` for, by dedup key."""
    return {
        r.json["dedup_key"]
        for r in pagerduty.requests
        if isinstance(r.json, dict) and r.json.get("event_action") == action
    }


async def test_a_critical_alert_with_an_extreme_start_is_stored_clamped_and_paged(
    service: ServiceProcess,
    database_url: str,
    pagerduty_api: Recorder,
    figures: Figures,
) -> None:
    starts = list(itertools.islice(itertools.cycle(EXTREME_STARTS), EXTREME_ALERTS))
    keys = {f"remediator/alert/ExtremeStart/extreme-{n}" for n in range(EXTREME_ALERTS)}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{service.url}/api/v1/alerts"
    async with aiohttp.ClientSession(headers=headers) as session:
        firing = webhook(*(_extreme(n, s) for n, s in enumerate(starts)))
        async with session.post(url, json=firing) as answer:
            assert answer.status == 200, await answer.text()

        async def heard(action: str) -> bool:
            return keys <= _pages(pagerduty_api, action)

        paged = await settles(lambda: heard("trigger"))
        resolved = webhook(*(_extreme(n, s, "resolved") for n, s in enumerate(starts)))
        async with session.post(url, json=resolved) as answer:
            assert answer.status == 200, await answer.text()
        closed = await settles(lambda: heard("resolve"))
    store = await open_store(database_url)
    try:
        stored = {r.fingerprint: r.starts_at for r in await store.recent_alerts(1000)}
    finally:
        await store.close()
    expected = {f"extreme-{n}": EXTREME_STARTS[s] for n, s in enumerate(starts)}
    backend = database_url.split(":", 1)[0]
    figures.record(
        "Critical alerts with `startsAt` at the zero time or 9999-12-31T23:59:59.999999Z"
        f" ({backend})",
        expected="stored clamped to 1970 .. 9999-12-31T23:59:59Z, paged, resolved",
        figure=f"{len(keys & _pages(pagerduty_api, 'trigger'))} of {len(keys)} paged,"
        f" {len(keys & _pages(pagerduty_api, 'resolve'))} resolved;"
        f" {sum(stored.get(f) == t for f, t in expected.items())} stored clamped",
        passed=paged and closed and stored == expected,
    )
    assert paged, f"not paged: {sorted(keys - _pages(pagerduty_api, 'trigger'))}"
    assert closed, f"not resolved: {sorted(keys - _pages(pagerduty_api, 'resolve'))}"
    assert stored == expected


async def test_a_bug_is_recorded_as_an_error_and_paged_and_retried_while_the_store_is_down(
    tmp_path: Path, postgres_server: PostgresServer, figures: Figures
) -> None:
    clock = Clock()
    store = await open_store(postgres_server.dsn)
    try:
        backend = RaisingGuards(clock, before=lambda: postgres_server.stop(mode="immediate"))
        dispatcher = dispatcher_of(store, tmp_path, clock, backend, {})
        for n in range(BUGGY_EVENTS):
            await post_alert(store, clock, {**LABELS, "n": str(n)}, f"fp-{n}", "firing")
        with pytest.raises(StoreUnavailable):  # the first event's fault takes the store down,
            await dispatcher.run_once()  # and the housekeeping after the runs finds it so
        postgres_server.start()
        kept = len(await store.pending_events(BUGGY_EVENTS + 1))
        clock.advance(120)  # their claims lapse
        assert await dispatcher.run_once() == BUGGY_EVENTS  # the bug again; the store is up
        runs = await store.list_remediations(10 * BUGGY_EVENTS)
        errors = [r for r in runs if r.outcome is RunOutcome.ERROR]
        paged = [
            r
            for r in errors
            if ("pagerduty", "trigger")
            in await outbox(store, f"remediator/alert/AppDown/{r.fingerprint}")
        ]
        left = await store.pending_events(BUGGY_EVENTS + 1)
    finally:
        await store.close()
    figures.record(
        "A bug while an event is handled (a guard backend raising RuntimeError), the store"
        " stopped at that moment (PostgreSQL `-m immediate`)",
        expected="recorded as an error and paged by the matrix; not done while the store is down",
        figure=f"{kept} of {BUGGY_EVENTS} events kept pending while the store was down;"
        f" {len(errors)} recorded as errors, {len(paged)} paged after it came back;"
        f" {len(runs) - len(errors)} other runs, {len(left)} events left",
        passed=kept == len(errors) == len(paged) == BUGGY_EVENTS and not left,
    )
    assert kept == BUGGY_EVENTS, "an event was marked done while its error could not be recorded"
    assert len(errors) == len(paged) == len(runs) == BUGGY_EVENTS
    assert not left


def key(run: Remediation) -> str:
    """The incident of an alert no policy decided for."""
    return f"remediator/alert/{run.alertname}/{run.fingerprint}"
