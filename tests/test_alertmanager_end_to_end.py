"""A real Alertmanager posting real webhooks at the service, as in production."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.alerts import AlertStatus
from remediator.cli import main
from remediator.store import Store
from tests.support.alertmanager import post_to_alertmanager
from tests.support.service_process import ServiceProcess, eventually


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[ServiceProcess]:
    started = await ServiceProcess.start(
        tmp_path, database_url=database_url, webhook_token="s3cret"
    )
    yield started
    assert started.stop() == 0


async def test_each_alert_is_stored_once_across_repeats_then_resolved_once(
    alertmanager: str, service: ServiceProcess, store: Store
) -> None:
    await post_to_alertmanager(alertmanager, ends_at=datetime.now(UTC) + timedelta(hours=1))

    async def every_alert_delivered_three_times() -> bool:
        records = await store.recent_alerts(10)
        return len(records) == 3 and all(record.deliveries >= 3 for record in records)

    await eventually(every_alert_delivered_three_times, what="three deliveries of each alert")
    records = await store.recent_alerts(10)
    assert sorted(record.labels.get("pod", "") for record in records) == ["", "api-1", "api-2"]
    assert {record.status for record in records} == {AlertStatus.FIRING}
    events = await store.all_events(100)
    assert sorted(event.kind for event in events) == [AlertStatus.FIRING] * 3
    assert len({event.fingerprint for event in events}) == 3

    async def each_alert_handled() -> bool:
        return len(await store.list_remediations(100)) >= 3

    await eventually(each_alert_handled, what="the dispatcher to handle each alert")
    handled = await store.list_remediations(100)
    assert sorted(r.fingerprint for r in handled) == sorted({e.fingerprint for e in events})

    await post_to_alertmanager(alertmanager, ends_at=datetime.now(UTC) - timedelta(seconds=1))

    async def every_alert_resolved() -> bool:
        records = await store.recent_alerts(10)
        return {record.status for record in records} == {AlertStatus.RESOLVED}

    await eventually(every_alert_resolved, what="the resolution of each alert")
    assert len(await store.recent_alerts(10)) == 3
    events = await store.all_events(100)
    assert (
        sorted(event.kind for event in events)
        == [AlertStatus.FIRING] * 3 + [AlertStatus.RESOLVED] * 3
    )
    metrics = await fetch(f"{service.url}/metrics")
    assert 'remediator_intake_requests_total{code="401"}' not in metrics


async def fetch(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return await answer.text()


# Four deployments' memory high at once: the shipped high-memory-usage changes at most three
# targets in 10 minutes (its blast radius), so dry-run, guarded as live mode is, runs three.
MEMORY_HIGH = [
    {
        "alertname": "HighMemoryUsage",
        "namespace": "claude-deployment-prod",
        "deployment": f"shop-{n}",
        "container": "app",
        "pod": f"shop-{n}-7d9f8b6c5-q8m2z",
        "severity": "warning",
    }
    for n in range(4)
]


async def test_a_replay_of_what_a_real_alertmanager_sent_agrees_with_the_run(
    alertmanager: str,
    service: ServiceProcess,
    store: Store,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    await post_to_alertmanager(
        alertmanager, now + timedelta(hours=1), MEMORY_HIGH, starts_at=now - timedelta(minutes=1)
    )

    async def each_decided() -> bool:
        done = [r for r in await store.list_remediations(100) if r.outcome.finished]
        return len(done) == len(MEMORY_HIGH)

    await eventually(each_decided, what="the service to decide each alert", timeout=60)
    recorded = Counter(
        (r.outcome.value, r.guard) for r in await store.list_remediations(100) if r.kind == "firing"
    )
    assert recorded == Counter({("dry_run", None): 3, ("blocked", "blast_radius"): 1})
    argv = ["policies", "replay", "--database-url", database_url, "--mode", "dry-run", "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    replayed = json.loads(capsys.readouterr().out)["alerts"]
    assert Counter((a["outcome"], a["guard"]) for a in replayed) == recorded
