"""The store as several replicas and an operator see it: waking, migrating, pruning."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from remediator.alerts import Notification
from remediator.engine.summary import PlanSummary
from remediator.runtime.retention import prune_once
from remediator.store import (
    OutboxEntry,
    Remediation,
    RunRecord,
    StepRecord,
    Store,
    open_store,
)
from remediator.store.migrations import migrations
from remediator.store.postgres import event_queue as postgres_queue
from tests.support.webhooks import webhook, webhook_alert

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
STARTS = "2027-03-01T11:59:00Z"
DAY = timedelta(days=1)


def notification(fingerprint: str, starts_at: datetime, status: str = "firing") -> Notification:
    labels = {"alertname": "ApplicationDown", "instance": fingerprint}
    alert = webhook_alert(
        labels,
        fingerprint=fingerprint,
        starts_at=starts_at.isoformat(),
        status=status,
        ends_at=(starts_at + DAY).isoformat(),
    )
    return Notification.model_validate(webhook(alert))


async def episode(store: Store, fingerprint: str, at: datetime, *, done: bool = True) -> None:
    """An alert episode heard of at `at`, its event handled (or still pending), a remediation
    with a step, and a message about it."""
    await store.record_notification(notification(fingerprint, at), b"{}", at)
    [event] = [e for e in await store.pending_events(100) if e.fingerprint == fingerprint]
    remediation_id = str(uuid.uuid4())
    if done:
        await store.claim_events("w", at, at + timedelta(minutes=1), 100)
        await store.complete_events([event.id], "w", at)
    await store.save_remediation(
        Remediation(
            id=remediation_id,
            event_id=event.id,
            fingerprint=fingerprint,
            starts_at=at,
            alertname="ApplicationDown",
            kind="firing",
            policy="p",
            policy_revision=None,
            outcome="failed",
            guard=None,
            reason="r",
            run_id=None,
            target="Deployment/prod/api",
            plan=PlanSummary(),
            started_at=at,
            finished_at=at,
        )
    )
    await store.record_step(
        StepRecord(remediation_id, "steps", 0, None, "http.check", "ok", "m", {}, 1, at, at)
    )
    await store.enqueue(
        [OutboxEntry(f"{fingerprint}-slack", "slack", "trigger", fingerprint, None, {}, at, at)]
    )
    await store.outbox_done(f"{fingerprint}-slack", sent_at=at)


async def test_retention_prunes_old_episodes_with_everything_about_them(store: Store) -> None:
    old, recent = NOW - 40 * DAY, NOW - 2 * DAY
    await episode(store, "old", old)
    await episode(store, "old-but-pending", old, done=False)
    await episode(store, "recent", recent)
    await store.audit("pause", "kill_switch", {}, old)
    await store.audit("resume", "kill_switch", {}, recent)
    for run_id, at in (("run-old", old), ("run-9-days", NOW - 9 * DAY), ("run-new", recent)):
        await store.record_admission(
            RunRecord(run_id, "p", "fp", "t", ("k",), "b", 2, 3600.0, 600.0, at)
        )

    counts = await prune_once(store, days=8, now=NOW.timestamp())

    assert counts == {
        "alerts": 1,
        "alert_events": 1,
        "remediations": 1,
        "remediation_steps": 1,
        "notifications": 1,
        "outbox": 2,  # incidents go by their last message: both old ones
        "audit_log": 1,
        "budget_firsts": 0,
        "approvals": 0,
        "approval_answers": 0,
        "runs": 2,  # the 9-day-old one too: guards re-seed from the last 7 days
        "seen_requests": 0,
    }
    kept = {record.fingerprint for record in await store.recent_alerts(10)}
    assert kept == {"old-but-pending", "recent"}  # a pending event is never pruned away
    assert [e.fingerprint for e in await store.pending_events(10)] == ["old-but-pending"]
    assert {r.fingerprint for r in await store.list_remediations(10)} == kept
    assert await store.outbox_for("old") == []
    assert await store.outbox_for("old-but-pending") == []
    assert len(await store.outbox_for("recent")) == 1
    assert [entry.kind for entry in await store.audit_log(10)] == ["resume"]
    assert [run.id for run in await store.runs_since(NOW - 100 * DAY)] == ["run-new"]
    assert set((await prune_once(store, days=8, now=NOW.timestamp())).values()) == {0}


async def test_redelivery_of_a_kept_episode_is_still_a_duplicate_after_pruning(
    store: Store,
) -> None:
    """Pruning keeps every event of a kept episode: a repeat is still recognised."""
    await episode(store, "recent", NOW - 2 * DAY)
    await prune_once(store, days=1, now=NOW.timestamp())
    assert {record.fingerprint for record in await store.recent_alerts(10)} == set()
    await episode(store, "kept", NOW - DAY / 2)
    await prune_once(store, days=1, now=NOW.timestamp())
    again = await store.record_notification(notification("kept", NOW - DAY / 2), b"{}", NOW)
    assert (again.accepted, again.duplicates) == (0, 1)


async def test_an_idle_replica_is_woken_when_another_queues_events(postgres_dsn: str) -> None:
    writer, idle = await open_store(postgres_dsn), await open_store(postgres_dsn)
    woken = asyncio.Event()
    try:
        await idle.watch_events(woken.set)
        await idle.watch_events(woken.set)  # already watching: nothing more
        await writer.record_notification(notification("fp", NOW), b"{}", NOW)
        await asyncio.wait_for(woken.wait(), 10)
    finally:
        await writer.close()
        await idle.close()


async def test_a_replica_is_not_woken_by_another_deployment_in_the_same_database(
    postgres_dsn: str,
) -> None:
    """The notification names the schema: a deployment sharing the database does not wake
    this one, so a wake is this deployment's news."""
    ours = await open_store(postgres_dsn)
    wakes: list[None] = []
    woken = asyncio.Event()

    def wake() -> None:
        wakes.append(None)
        woken.set()

    schema = postgres_dsn.partition("search_path=")[2]
    other = await asyncpg.connect(postgres_dsn.partition("?")[0])
    try:
        await ours.watch_events(wake)
        async with other.transaction():  # delivered together, in this order, at commit
            await other.execute("SELECT pg_notify('remediator_events', 'another_deployment')")
            await other.execute("SELECT pg_notify('remediator_events', $1)", schema)
        await asyncio.wait_for(woken.wait(), 10)
        assert len(wakes) == 1
    finally:
        await other.close()
        await ours.close()


async def test_only_a_delivery_that_queued_something_wakes_the_replicas(
    postgres_dsn: str,
) -> None:
    store = await open_store(postgres_dsn)
    listener = await asyncpg.connect(postgres_dsn.partition("?")[0])
    schema = postgres_dsn.partition("search_path=")[2]
    heard: asyncio.Queue[str] = asyncio.Queue()

    def hear(_: object, __: int, ___: str, payload: object) -> None:
        if payload in (schema, "marker"):  # other tests' schemas may share the database
            heard.put_nowait(str(payload))

    try:
        await listener.add_listener("remediator_events", hear)
        await store.record_notification(notification("fp", NOW), b"{}", NOW)
        assert await asyncio.wait_for(heard.get(), 10) == schema  # after its commit
        await store.record_notification(notification("fp", NOW), b"{}", NOW)  # a repeat
        await store.close()  # sends any wake still pending
        await listener.execute("SELECT pg_notify('remediator_events', 'marker')")
        # Delivered in commit order: had the repeat woken anyone, that would come first.
        assert await asyncio.wait_for(heard.get(), 10) == "marker"
    finally:
        await listener.close()


def migrate(database_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "remediator", "migrate", "--database-url", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_migrate_is_idempotent_and_replicas_starting_together_apply_each_once(
    database_url: str,
) -> None:
    latest = migrations("sqlite" if database_url.startswith("sqlite") else "postgres")[-1]
    together = [migrate(database_url) for _ in range(3)]
    outputs = [process.communicate(timeout=60) for process in together]
    assert [process.returncode for process in together] == [0, 0, 0], outputs
    assert {out for out, _ in outputs} == {
        f"schema up to date: version {latest.version} ({latest.name})\n"
    }
    again = migrate(database_url)
    assert again.communicate(timeout=60)[0].startswith("schema up to date")
    store = await open_store(database_url)
    try:
        await store.ping()
    finally:
        await store.close()
    if database_url.startswith("postgresql"):
        db = await asyncpg.connect(database_url.partition("?")[0])
        schema = database_url.partition("search_path=")[2]
        applied = await db.fetch(f"SELECT version FROM {schema}.schema_migrations")
        await db.close()
        assert sorted(row["version"] for row in applied) == list(range(1, latest.version + 1))


@pytest.mark.parametrize("limits", [("5", "2")])
def test_a_pool_smaller_than_its_minimum_is_a_setting_error(limits: tuple[str, str]) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediator",
            "serve",
            "--database-pool-min",
            limits[0],
            "--database-pool-max",
            limits[1],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "REMEDIATOR_DATABASE_POOL_MIN (5) is more than REMEDIATOR_DATABASE_POOL_MAX (2)" in (
        run.stderr
    )


async def test_the_store_s_sessions_carry_the_name_the_postgres_actions_never_signal(
    postgres_dsn: str,
) -> None:
    admin = await asyncpg.connect(postgres_dsn.partition("?")[0])
    named = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'remediator'"
    before = await admin.fetchval(named)
    store = await open_store(postgres_dsn)
    try:
        await store.watch_events(lambda: None)
        assert await admin.fetchval(named) - before == 2  # the pool's one, and the listener
    finally:
        await store.close()
        await admin.close()


async def test_an_alert_after_a_flood_is_claimed_before_the_rest_of_the_flood(
    store: Store,
) -> None:
    """The queue is fair between notifications: another incident's alert arriving after a
    flood of 50 in one request is claimed next, not after the other 49."""
    flood = [
        webhook_alert(
            {"alertname": "Flood", "n": f"{i:02}"}, fingerprint=f"flood-{i:02}", starts_at=STARTS
        )
        for i in range(50)
    ]
    await store.record_notification(Notification.model_validate(webhook(*flood)), b"{}", NOW)
    real = webhook_alert({"alertname": "Real"}, fingerprint="real", starts_at=STARTS)
    later = NOW + timedelta(seconds=1)
    await store.record_notification(Notification.model_validate(webhook(real)), b"{}", later)
    claimed = await store.claim_events("w", later, later + timedelta(minutes=1), 2)
    assert sorted(event.fingerprint for event in claimed) == ["flood-00", "real"]
    rest = await store.claim_events("w", later, later + timedelta(minutes=1), 100)
    assert [event.fingerprint for event in rest] == [f"flood-{i:02}" for i in range(1, 50)]


async def test_the_queue_finds_events_by_index_however_many_done_events_are_kept(
    postgres_dsn: str,
) -> None:
    """Done events stay for the retention period: a claim, renewal or completion that scanned
    the table would slow the dispatcher down as the history grows (10 events a second with a
    million kept), so their generic plans must not scan alert_events."""
    store = await open_store(postgres_dsn)
    await store.close()  # migrated
    db = await asyncpg.connect(postgres_dsn)
    try:
        await db.execute(
            "INSERT INTO alert_events (fingerprint, starts_at, kind, notification_id,"
            " enqueued_at, done_at) SELECT 'f' || n, $1, 'firing', 1, $1, $1"
            " FROM generate_series(1, 50000) AS n",
            NOW,
        )
        await db.execute("ANALYZE alert_events")
        await db.execute("SET plan_cache_mode = force_generic_plan")
        scans: dict[str, list[str]] = {}
        for name, arguments in (
            ("_CLAIM_EVENTS", "'w', now(), now(), 10"),
            ("_RENEW_EVENTS", "'{1,2}', 'w', now()"),
            ("_COMPLETE_EVENTS", "'{1,2}', 'w', now()"),
        ):
            await db.execute(f"PREPARE {name[1:]} AS {getattr(postgres_queue, name)}")
            plan = await db.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name[1:]}({arguments})")
            scans[name] = [
                node["Node Type"]
                for node in plan_nodes(json.loads(plan)[0]["Plan"])
                if node.get("Relation Name") == "alert_events" and "Seq" in node["Node Type"]
            ]
        assert scans == {"_CLAIM_EVENTS": [], "_RENEW_EVENTS": [], "_COMPLETE_EVENTS": []}
    finally:
        await db.close()


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
