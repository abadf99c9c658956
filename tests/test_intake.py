"""The webhook intake against both stores: durable, idempotent, and clear about bad input."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.alerts import AlertStatus
from remediator.config import Settings
from remediator.metrics import Metrics
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.logs import configure_logging
from remediator.runtime.wiring import Parts
from remediator.store import AlertRecord, Store
from tests.support.samples import sample
from tests.support.webhooks import webhook, webhook_alert

Client = TestClient[Any, Any]
AUTH = {"Authorization": "Bearer s3cret"}


async def post(client: Client, body: Any, headers: dict[str, str] | None = None) -> Any:
    response = await client.post(
        "/api/v1/alerts", json=body, headers=AUTH if headers is None else headers
    )
    return response.status, await response.json()


async def test_a_notification_is_stored_and_each_alert_queued_once(
    client: Client, store: Store
) -> None:
    body = sample("high-memory-usage.firing-two-pods.json")
    assert await post(client, body) == (200, {"accepted": 2, "duplicates": 0})
    assert await post(client, body) == (200, {"accepted": 0, "duplicates": 2})

    alerts = {record.fingerprint: record for record in await store.recent_alerts(10)}
    assert set(alerts) == {"538acb84eff23449", "1799bf3a65c094ce"}
    assert all(record.deliveries == 2 for record in alerts.values())
    assert alerts["538acb84eff23449"].labels["pod"] == "claude-deployment-api-7d9f8b6c5-q8m2z"
    events = await store.pending_events(10)
    assert sorted((event.fingerprint, event.kind) for event in events) == [
        ("1799bf3a65c094ce", AlertStatus.FIRING),
        ("538acb84eff23449", AlertStatus.FIRING),
    ]


async def test_a_resolution_of_a_known_alert_is_queued_as_a_resolution(
    client: Client, store: Store
) -> None:
    await post(client, sample("application-down.firing.json"))
    assert await post(client, sample("application-down.resolved.json")) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )
    assert await post(client, sample("application-down.resolved.json")) == (
        200,
        {"accepted": 0, "duplicates": 1},
    )
    [record] = await store.recent_alerts(10)
    assert record.status is AlertStatus.RESOLVED
    assert record.ends_at is not None
    assert record.deliveries == 3
    assert [event.kind for event in await store.pending_events(10)] == [
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
    ]


async def test_a_late_firing_copy_does_not_reopen_a_resolved_alert(
    client: Client, store: Store
) -> None:
    await post(client, sample("application-down.firing.json"))
    await post(client, sample("application-down.resolved.json"))
    assert await post(client, sample("application-down.firing.json")) == (
        200,
        {"accepted": 0, "duplicates": 1},
    )
    [record] = await store.recent_alerts(10)
    assert record.status is AlertStatus.RESOLVED


async def test_the_same_alert_firing_again_later_is_a_new_episode(
    client: Client, store: Store
) -> None:
    await post(client, sample("application-down.firing.json"))
    await post(client, sample("application-down.resolved.json"))
    again = sample("application-down.firing.json")
    again["alerts"][0]["startsAt"] = "2026-11-24T08:00:00Z"
    assert await post(client, again) == (200, {"accepted": 1, "duplicates": 0})
    records = await store.recent_alerts(10)
    assert sorted(record.status for record in records) == [AlertStatus.FIRING, AlertStatus.RESOLVED]
    assert len(await store.pending_events(10)) == 3


async def test_every_alert_counts_by_its_own_status_in_a_mixed_payload(
    client: Client, store: Store
) -> None:
    await post(client, sample("high-memory-usage.firing-two-pods.json"))
    mixed = sample("high-memory-usage.firing-two-pods.json")
    mixed["alerts"][1].update(status="resolved", endsAt="2026-11-23T20:09:00Z")
    assert await post(client, mixed) == (200, {"accepted": 1, "duplicates": 1})
    statuses = {record.fingerprint: record.status for record in await store.recent_alerts(10)}
    assert statuses == {
        "538acb84eff23449": AlertStatus.FIRING,
        "1799bf3a65c094ce": AlertStatus.RESOLVED,
    }


async def test_firing_and_resolved_copies_of_one_alert_in_one_payload_are_both_kept(
    client: Client, store: Store
) -> None:
    both = sample("application-down.firing.json")
    resolved = sample("application-down.resolved.json")["alerts"][0]
    both["alerts"] = [resolved, both["alerts"][0]]
    assert await post(client, both) == (200, {"accepted": 2, "duplicates": 0})
    [record] = await store.recent_alerts(10)
    assert record.status is AlertStatus.RESOLVED
    assert [event.kind for event in await store.pending_events(10)] == [
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
    ]


async def test_the_same_instant_in_another_time_zone_is_the_same_alert(
    client: Client, store: Store
) -> None:
    await post(client, sample("application-down.firing.json"))
    shifted = sample("application-down.firing.json")
    shifted["alerts"][0]["startsAt"] = "2026-11-23T22:00:07.214279+02:00"
    assert await post(client, shifted) == (200, {"accepted": 0, "duplicates": 1})


async def test_simultaneous_deliveries_from_peers_queue_the_alert_once(
    client: Client, store: Store
) -> None:
    body = sample("high-memory-usage.firing-two-pods.json")
    answers = await asyncio.gather(*(post(client, body) for _ in range(10)))
    assert {status for status, _ in answers} == {200}
    assert sum(answer["accepted"] for _, answer in answers) == 2
    assert sum(answer["duplicates"] for _, answer in answers) == 18
    assert len(await store.pending_events(100)) == 2


# Two episodes of one alert, as a clustered Alertmanager delivers them when a peer was stopped
# (SIGSTOP) meanwhile: the old episode fired and resolved; the new one fired; then the peer,
# continued, merged a stale firing of the old episode into the new one (Alertmanager keeps the
# earlier startsAt) and sent the new episode's resolution under the OLD startsAt. The other
# peer's notification log says that resolution was sent, so it never sends its own.
FLAPPING = {"alertname": "ApplicationDown", "namespace": "claude-deployment-prod"}
FP = "5e1f0a7c2d9b4e36"
OLD, OLD_END = "2026-11-23T20:00:00Z", "2026-11-23T20:05:00Z"
NEW = "2026-11-23T20:06:00Z"
NEW_END = "2026-11-23T20:09:00Z"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def state(
    starts_at: str, status: str = "firing", ends_at: str = NEW_END, fingerprint: str = FP
) -> dict[str, Any]:
    labels = {**FLAPPING, "instance": fingerprint}
    return webhook_alert(
        labels, fingerprint=fingerprint, starts_at=starts_at, status=status, ends_at=ends_at
    )


async def episode(store: Store, starts_at: str) -> AlertRecord:
    found = await store.alert(FP, at(starts_at))
    assert found is not None, f"no episode {FP} at {starts_at}"
    return found


async def last_notification_id(database_url: str) -> int:
    """The id of the body stored last, read behind the store's back."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            found: int = db.execute("SELECT max(id) FROM notifications").fetchone()[0]
        return found
    other = await asyncpg.connect(database_url)
    try:
        found = await other.fetchval("SELECT max(id) FROM notifications")
    finally:
        await other.close()
    return found


async def old_resolved_and_new_firing(client: Client) -> None:
    assert await post(client, webhook(state(OLD))) == (200, {"accepted": 1, "duplicates": 0})
    resolved = webhook(state(OLD, "resolved", OLD_END))
    assert await post(client, resolved) == (200, {"accepted": 1, "duplicates": 0})
    assert await post(client, webhook(state(NEW))) == (200, {"accepted": 1, "duplicates": 0})


async def test_a_resolution_under_an_older_starts_at_resolves_the_later_episode_it_covers(
    client: Client, store: Store, database_url: str
) -> None:
    await old_resolved_and_new_firing(client)
    # The stale firing the continued peer processed: a copy of the resolved old episode.
    assert await post(client, webhook(state(OLD))) == (200, {"accepted": 0, "duplicates": 1})
    before = await episode(store, OLD)
    merged = webhook(state(OLD, "resolved", NEW_END))
    assert await post(client, merged) == (200, {"accepted": 1, "duplicates": 0})
    merged_id = await last_notification_id(database_url)

    new = await episode(store, NEW)
    assert (new.status, new.ends_at) == (AlertStatus.RESOLVED, at(NEW_END))
    old = await episode(store, OLD)
    assert (old.status, old.ends_at) == (AlertStatus.RESOLVED, at(OLD_END))
    assert (old.labels, old.first_received) == (before.labels, before.first_received)
    events = [(e.starts_at, e.kind) for e in await store.pending_events(10)]
    assert events == [
        (at(OLD), AlertStatus.FIRING),
        (at(OLD), AlertStatus.RESOLVED),
        (at(NEW), AlertStatus.FIRING),
        (at(NEW), AlertStatus.RESOLVED),
    ]
    [resolution] = [e for e in await store.pending_events(10) if e.starts_at == at(NEW)][1:]
    assert resolution.notification_id == merged_id
    # The other peer, or the next repeat, delivering the same state again queues nothing.
    assert await post(client, merged) == (200, {"accepted": 0, "duplicates": 1})
    assert len(await store.pending_events(10)) == 4


@pytest.mark.parametrize("ends_at", ["2026-11-23T20:05:30Z", NEW], ids=["before", "at-start"])
async def test_a_resolution_under_an_older_starts_at_ending_before_the_later_episode_is_a_repeat(
    client: Client, store: Store, ends_at: str
) -> None:
    await old_resolved_and_new_firing(client)
    earlier = webhook(state(OLD, "resolved", ends_at))
    assert await post(client, earlier) == (200, {"accepted": 0, "duplicates": 1})
    assert (await episode(store, NEW)).status is AlertStatus.FIRING
    assert (await episode(store, OLD)).ends_at == at(OLD_END)  # an episode's end is its first
    assert len(await store.pending_events(10)) == 3
    # One whose endsAt is after the later episode's startsAt does end it.
    merged = webhook(state(OLD, "resolved", NEW_END))
    assert await post(client, merged) == (200, {"accepted": 1, "duplicates": 0})
    assert (await episode(store, NEW)).status is AlertStatus.RESOLVED


async def test_a_stale_firing_copy_stays_a_repeat_after_an_older_resolution_ended_an_episode(
    client: Client, store: Store
) -> None:
    await old_resolved_and_new_firing(client)
    merged = webhook(state(OLD, "resolved", NEW_END))
    assert await post(client, merged) == (200, {"accepted": 1, "duplicates": 0})
    for stale in (state(OLD), state(NEW)):
        assert await post(client, webhook(stale)) == (200, {"accepted": 0, "duplicates": 1})
    records = {record.starts_at: record for record in await store.recent_alerts(10)}
    assert {s: r.status for s, r in records.items()} == {
        at(OLD): AlertStatus.RESOLVED,
        at(NEW): AlertStatus.RESOLVED,
    }
    assert records[at(NEW)].ends_at == at(NEW_END)
    assert len(await store.pending_events(10)) == 4


async def test_an_older_resolution_counts_once_and_yields_to_an_episodes_own(
    client: Client, store: Store
) -> None:
    """Each alert of a payload is one accepted state however many events it queued, and an
    episode resolved in the payload itself ends at its own endsAt, not an older one's."""
    # Three episodes firing (their resolutions lost); the oldest one's resolution covers both
    # later ones, the middle one's own comes with it.
    newer, new_end = "2026-11-23T20:07:30Z", "2026-11-23T20:07:00Z"
    for starts_at in (OLD, NEW, newer):
        answer = await post(client, webhook(state(starts_at)))
        assert answer == (200, {"accepted": 1, "duplicates": 0})
    both = webhook(state(OLD, "resolved", NEW_END), state(NEW, "resolved", new_end))
    assert await post(client, both) == (200, {"accepted": 2, "duplicates": 0})
    ends = {r.starts_at: (r.status, r.ends_at) for r in await store.recent_alerts(10)}
    assert ends == {
        at(OLD): (AlertStatus.RESOLVED, at(NEW_END)),
        at(NEW): (AlertStatus.RESOLVED, at(new_end)),
        at(newer): (AlertStatus.RESOLVED, at(NEW_END)),
    }
    kinds = sorted((e.starts_at, e.kind) for e in await store.pending_events(10))
    assert kinds == sorted(
        (at(starts_at), kind)
        for starts_at in (OLD, NEW, newer)
        for kind in (AlertStatus.FIRING, AlertStatus.RESOLVED)
    )
    assert await post(client, both) == (200, {"accepted": 0, "duplicates": 2})

    # Another alert: the old episode resolved, the new one firing, then both resolutions in
    # one payload. The old one's is a repeat: the new episode has its own.
    other = "0c4b7d1e9a2f6358"
    for alert in (state(OLD, fingerprint=other), state(OLD, "resolved", OLD_END, other)):
        await post(client, webhook(alert))
    await post(client, webhook(state(NEW, fingerprint=other)))
    pair = webhook(state(OLD, "resolved", NEW_END, other), state(NEW, "resolved", new_end, other))
    assert await post(client, pair) == (200, {"accepted": 1, "duplicates": 1})
    resolved = await store.alert(other, at(NEW))
    assert resolved is not None
    assert (resolved.status, resolved.ends_at) == (AlertStatus.RESOLVED, at(new_end))


async def raw_post(client: Client, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.post("/api/v1/alerts", data=io.BytesIO(data), headers=headers)
    return response.status, await response.json()


def valid_bytes() -> bytes:
    return json.dumps(sample("application-down.firing.json")).encode()


JSON = {**AUTH, "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("data", "headers", "status", "expected"),
    [
        pytest.param(
            valid_bytes()[:57], JSON, 400, "Invalid JSON: EOF while parsing", id="truncated"
        ),
        pytest.param(b"\xff\xfe", JSON, 400, "Invalid JSON", id="not-utf8"),
        pytest.param(
            valid_bytes().replace(b'"severity": "critical"', b'"severity": 1'),
            JSON,
            400,
            "$.alerts[0].labels.severity: Input should be a valid string",
            id="wrong-type",
        ),
        pytest.param(
            valid_bytes().replace(b'"fingerprint"', b'"fingerprint_"'),
            JSON,
            400,
            "$.alerts[0].fingerprint: Field required",
            id="missing-field",
        ),
        pytest.param(b"x" * 10_000_000, JSON, 413, "larger than the limit", id="10MB"),
        pytest.param(
            valid_bytes(),
            {"Content-Type": "application/json", "Authorization": "Bearer nope"},
            401,
            "missing or wrong credentials",
            id="wrong-token",
        ),
        pytest.param(
            valid_bytes(), {"Content-Type": "application/json"}, 401, "credentials", id="no-token"
        ),
        pytest.param(
            valid_bytes(), {**AUTH, "Content-Type": "text/plain"}, 415, "text/plain", id="text"
        ),
    ],
)
async def test_bad_input_is_refused_with_its_reason_and_changes_nothing(
    client: Client, store: Store, data: bytes, headers: dict[str, str], status: int, expected: str
) -> None:
    answer_status, answer = await raw_post(client, data, headers)
    assert answer_status == status
    problems = [
        f"{problem['path']}: {problem['message']}" for problem in answer.get("problems", [])
    ]
    assert any(expected in text for text in [answer["error"], *problems]), answer
    assert await store.recent_alerts(10) == []
    assert await store.pending_events(10) == []


async def test_a_chunked_body_over_the_limit_is_refused(client: Client, store: Store) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 500_000

    response = await client.post("/api/v1/alerts", data=chunks(), headers=JSON)
    assert response.status == 413
    assert await store.recent_alerts(10) == []


async def test_basic_credentials_as_alertmanager_sends_them(
    store: Store, database_url: str, live_policies: LivePolicies
) -> None:
    settings = Settings(database_url=database_url, webhook_username="am", webhook_password="pw")
    app = Parts.of(settings, store, live_policies, Metrics()).application()
    async with TestClient(TestServer(app)) as basic_client:
        good = {"Authorization": "Basic " + base64.b64encode(b"am:pw").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"am:wrong").decode()}
        assert (await post(basic_client, sample("application-down.firing.json"), bad))[0] == 401
        assert (await post(basic_client, sample("application-down.firing.json"), good))[0] == 200


@asynccontextmanager
async def write_lock_held_elsewhere(database_url: str) -> AsyncIterator[None]:
    """Another client holding the write lock, as a backup or a migration might."""
    if database_url.startswith("sqlite:///"):
        other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        yield
        other.close()
    else:
        other_pg = await asyncpg.connect(database_url)
        async with other_pg.transaction():
            await other_pg.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
            yield
        await other_pg.close()


async def test_a_store_that_cannot_write_answers_503_and_keeps_nothing(
    client: Client, store: Store, database_url: str
) -> None:
    async with write_lock_held_elsewhere(database_url):
        response = await client.post(
            "/api/v1/alerts", json=sample("application-down.firing.json"), headers=AUTH
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert await response.json() == {"error": "store unavailable, retry later"}
    assert await store.recent_alerts(10) == []
    assert await post(client, sample("application-down.firing.json")) == (
        200,
        {"accepted": 1, "duplicates": 0},
    )


async def test_a_closed_store_is_unhealthy_and_refuses_alerts_with_503(
    client: Client, store: Store
) -> None:
    await store.close()
    response = await client.post(
        "/api/v1/alerts", json=sample("application-down.firing.json"), headers=AUTH
    )
    assert response.status == 503
    health = await client.get("/health")
    assert health.status == 503
    assert await health.json() == {"status": "unhealthy"}  # the checks need the operator token


async def test_metrics_count_notifications_alerts_and_duplicates(client: Client) -> None:
    body = sample("high-memory-usage.firing-two-pods.json")
    await post(client, body)
    await post(client, body)
    await post(client, {"version": "4"})
    text = await (await client.get("/metrics")).text()
    assert 'remediator_notifications_received_total{status="firing"} 2.0' in text
    assert (
        'remediator_alerts_received_total{alertname="HighMemoryUsage",status="firing"} 4.0' in text
    )
    assert "remediator_alert_duplicates_total 2.0" in text
    assert 'remediator_intake_requests_total{code="400"} 1.0' in text
    assert "remediator_intake_duration_seconds_count 3.0" in text


async def test_every_log_line_of_a_request_carries_its_id_and_group_key(client: Client) -> None:
    stream = io.StringIO()
    configure_logging("info", stream)
    body = sample("application-down.firing.json")
    await post(client, body, {**AUTH, "X-Request-Id": "req-42"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["notification stored", "request"]
    assert {line["request_id"] for line in lines} == {"req-42"}
    assert {line["group_key"] for line in lines} == {body["groupKey"]}


async def test_an_unknown_route_is_a_json_404(client: Client) -> None:
    response = await client.get("/api/v1/nothing")
    assert response.status == 404
    assert await response.json() == {"error": "Not Found"}
