"""The kill switch and the guards' state, through the HTTP API and the command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.alerts import Notification
from remediator.cli import main
from remediator.config import Settings
from remediator.engine.summary import BreakerSummary, PlanSummary
from remediator.guards.guards import Admitted
from remediator.http.operator_api import MAX_OPERATOR_NAME, MAX_PAUSE_REASON
from remediator.metrics import Metrics
from remediator.notify.would_send import WOULD_SEND
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import GUARDS, Parts
from remediator.store import Store
from tests.support.budgets import page
from tests.support.builders import memory_plan, recorded_run
from tests.support.policies import SHIPPED_POLICY_COUNT
from tests.support.samples import sample
from tests.support.service_process import ServiceProcess

Client = TestClient[Any, Any]
TOKEN = {"Authorization": "Bearer ops-token"}


@pytest.fixture
async def api(
    database_url: str, store: Store, live_policies: LivePolicies
) -> AsyncIterator[Client]:
    settings = Settings(
        database_url=database_url, webhook_token="s3cret", api_token="ops-token", mode="live"
    )
    async with TestClient(
        TestServer(Parts.of(settings, store, live_policies, Metrics()).application())
    ) as client:
        yield client


async def test_the_api_is_closed_without_a_token_configured(client: Client) -> None:
    answer = await client.get("/api/v1/guards", headers=TOKEN)
    assert answer.status == 403
    assert (await answer.json()) == {
        "error": "the operator API is closed: set REMEDIATOR_API_TOKEN or REMEDIATOR_USERS_FILE"
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret"}],
    ids=["none", "wrong", "webhook-token"],
)
async def test_the_api_wants_its_own_token(api: Client, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/api/v1/guards"), ("POST", "/api/v1/pause")]:
        answer = await api.request(method, path, headers=headers)
        assert answer.status == 401, path
    assert (await (await api.get("/api/v1/guards", headers=TOKEN)).json())["paused"] is None


async def test_pause_blocks_remediation_shows_in_health_and_resume_lifts_it(
    api: Client, live_policies: LivePolicies
) -> None:
    guards = api.app[GUARDS]
    plan = memory_plan(live_policies.current)
    paused = await api.post(
        "/api/v1/pause", json={"reason": "failover drill", "by": "alice"}, headers=TOKEN
    )
    assert paused.status == 200
    assert (await paused.json())["paused"]["reason"] == "failover drill"
    result = await guards.admit(plan)
    assert not isinstance(result, Admitted)
    assert result.guard == "kill_switch"
    health = await (await api.get("/health", headers=TOKEN)).json()
    assert health["status"] == "degraded"
    assert "paused by alice" in health["checks"]["kill_switch"]["detail"]

    assert (await api.post("/api/v1/resume", headers=TOKEN)).status == 200
    assert isinstance(await guards.admit(plan), Admitted)
    health = await (await api.get("/health", headers=TOKEN)).json()
    assert health["checks"]["kill_switch"] == {"status": "ok"}
    metrics = await (await api.get("/metrics")).text()
    assert 'remediator_guard_decisions_total{guard="kill_switch"} 1.0' in metrics
    assert 'remediator_guard_decisions_total{guard="admitted"} 1.0' in metrics


async def test_health_shows_each_dependency_to_the_operator(api: Client) -> None:
    response = await api.get("/health", headers=TOKEN)
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {
        "store": {"status": "ok"},
        "policies": {"status": "ok", "policies": str(SHIPPED_POLICY_COUNT)},
        "guards": {"status": "ok"},
        "kill_switch": {"status": "ok"},
        "escalation": {"status": "ok", "channels": "none"},
    }
    assert body["version"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no token"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong token"),
        pytest.param({"Authorization": "Bearer s3cret"}, id="the webhook's token"),
    ],
)
async def test_health_without_the_operator_token_says_the_status_only(
    api: Client, headers: dict[str, str]
) -> None:
    paused = await api.post("/api/v1/pause", json={"reason": "x" * MAX_PAUSE_REASON}, headers=TOKEN)
    assert paused.status == 200
    response = await api.get("/health", headers=headers)
    assert response.status == 200  # what the probes read
    assert await response.json() == {"status": "degraded"}  # not who paused, nor why


async def test_health_of_a_closed_operator_api_says_the_status_only(client: Client) -> None:
    response = await client.get("/health", headers=TOKEN)
    assert (response.status, await response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"reason": "x" * (MAX_PAUSE_REASON + 1)},
            f"reason: String should have at most {MAX_PAUSE_REASON} characters",
            id="reason",
        ),
        pytest.param(
            {"by": "x" * (MAX_OPERATOR_NAME + 1)},
            f"by: String should have at most {MAX_OPERATOR_NAME} characters",
            id="by",
        ),
    ],
)
async def test_a_pause_reason_or_name_over_its_limit_is_a_400_naming_it(
    api: Client, body: dict[str, str], message: str
) -> None:
    answer = await api.post("/api/v1/pause", json=body, headers=TOKEN)
    assert (answer.status, await answer.json()) == (400, {"error": message})
    assert (await (await api.get("/api/v1/guards", headers=TOKEN)).json())["paused"] is None


def test_the_command_line_refuses_a_pause_reason_over_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pause", "--reason", "x" * (MAX_PAUSE_REASON + 1)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--reason: at most {MAX_PAUSE_REASON} characters, got {MAX_PAUSE_REASON + 1}" in error


async def test_guards_state_shows_budgets_breakers_and_leases(
    api: Client, live_policies: LivePolicies
) -> None:
    plan = memory_plan(live_policies.current)
    run = await api.app[GUARDS].admit(plan)
    assert isinstance(run, Admitted)
    state = await (await api.get("/api/v1/guards", headers=TOKEN)).json()
    assert state["runs_in_flight"] == 1
    assert state["max_concurrent_runs"] == 3
    [limit] = state["rate_limits"]
    assert limit["key"] == plan.rate_limit_key
    assert [(w["used"], w["remaining"]) for w in limit["windows"]] == [(1, 1), (1, 3)]
    [breaker] = state["breakers"]
    assert breaker["state"] == "closed"
    [lease] = state["leases"]
    assert lease["target"] == "Deployment/claude-deployment-prod/claude-deployment-api"
    assert lease["run"] == run.run_id


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"{", "the body is not JSON"), (b"[1]", "the body must be a JSON object")],
)
async def test_a_bad_pause_body_is_a_400(api: Client, body: bytes, message: str) -> None:
    answer = await api.post("/api/v1/pause", data=body, headers=TOKEN)
    assert answer.status == 400
    assert (await answer.json())["error"].startswith(message)


async def test_the_command_line_pauses_and_resumes_a_running_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await ServiceProcess.start(
        tmp_path, database_url=f"sqlite:///{tmp_path / 'r.db'}", api_token="ops-token"
    )
    monkeypatch.setenv("REMEDIATOR_API_TOKEN", "ops-token")
    try:

        def run(*argv: str) -> int:
            return main([*argv, "--url", service.url])

        assert await asyncio.to_thread(run, "pause", "--reason", "maintenance") == 0
        assert "paused by" in capsys.readouterr().out
        assert await asyncio.to_thread(run, "guards") == 0
        shown = capsys.readouterr().out
        assert "kill switch: paused by" in shown
        assert "maintenance" in shown
        assert await asyncio.to_thread(run, "resume") == 0
        assert await asyncio.to_thread(run, "guards") == 0
        assert "kill switch: off" in capsys.readouterr().out

        monkeypatch.setenv("REMEDIATOR_API_TOKEN", "wrong")
        assert await asyncio.to_thread(run, "pause") == 1
        assert "answered 401: missing or wrong bearer token" in capsys.readouterr().err
    finally:
        assert service.stop() == 0


def test_the_command_line_names_an_unreachable_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["guards", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the service at http://127.0.0.1:9" in capsys.readouterr().err


async def test_the_runs_api_lists_and_shows_runs_with_their_steps(
    api: Client, store: Store
) -> None:
    run = await recorded_run(store)
    listed = await (await api.get("/api/v1/runs?alertname=ApplicationDown", headers=TOKEN)).json()
    assert [(r["id"], r["outcome"], r["policyRevision"]) for r in listed["runs"]] == [
        (run.id, "verifying", "abc123")
    ]
    assert (await (await api.get("/api/v1/runs?alertname=Other", headers=TOKEN)).json()) == {
        "runs": [],
        "next": None,
    }
    shown = await (await api.get(f"/api/v1/runs/{run.id}", headers=TOKEN)).json()
    assert [(s["action"], s["outcome"], s["data"]) for s in shown["steps"]] == [
        ("http.check", "failed", {"status": 503}),
        (
            "kubernetes.scale",
            "ok",
            {"replicas": 3, "params": {"by": 2, "min_replicas": 1, "max_replicas": 10}},
        ),
    ]
    missing = await api.get("/api/v1/runs/nope", headers=TOKEN)
    assert missing.status == 404
    assert (await missing.json()) == {"error": "no run 'nope'"}
    bad = await api.get("/api/v1/runs?limit=0", headers=TOKEN)
    assert bad.status == 400
    assert (await api.get("/api/v1/runs")).status == 401


async def test_history_shows_runs_and_one_run_in_detail(
    store: Store, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await recorded_run(store)

    def history(*argv: str) -> int:
        return main(["history", "--database-url", database_url, *argv])

    assert await asyncio.to_thread(history) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "STARTED",
        "ALERTNAME",
        "POLICY",
        "OUTCOME",
        "TARGET",
        "REASON",
        "ID",
    ]
    assert "application-down" in table[1]
    assert table[1].endswith(run.id)
    assert await asyncio.to_thread(history, "--run", run.id) == 0
    detail = capsys.readouterr().out
    assert "steps[0] http.check: failed - answered 503" in detail
    # A change: what it was asked to do, as rendered.
    assert "steps[1] kubernetes.scale: ok - scaled deployment prod/api from 3 to 5\n" in detail
    assert "      by: 2, min_replicas: 1, max_replicas: 10" in detail
    assert "policy revision: abc123" in detail
    assert await asyncio.to_thread(history, "--alert", "ApplicationDown", "--json") == 0
    assert json.loads(capsys.readouterr().out)["id"] == run.id
    assert await asyncio.to_thread(history, "--run", "nope") == 1
    assert "no run 'nope'" in capsys.readouterr().err


async def test_history_takes_a_unique_start_of_a_run_id_and_fits_the_terminal(
    store: Store,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = await recorded_run(store)
    because = "the deployment was scaled, " + "and then some more was said about it, " * 8 + "end"
    for number, run_id in enumerate(["3f2a9c01", "3f2b7700", "5_%x"], start=2):
        await store.save_remediation(replace(run, id=run_id, event_id=number, reason=because))

    def history(*argv: str) -> int:
        return main(["history", "--database-url", database_url, *argv])

    monkeypatch.setenv("COLUMNS", "120")
    assert await asyncio.to_thread(history) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 120
    assert sum(line.count("the deployment was") == line.count("…") == 1 for line in lines) == 3
    assert await asyncio.to_thread(history, "--run", "3f2a") == 0
    detail = capsys.readouterr().out
    assert detail.startswith("run 3f2a9c01: ")
    assert because in detail
    assert await asyncio.to_thread(history, "--run", "3f2") == 1
    assert capsys.readouterr().err == (
        "remediator: '3f2' is the start of more than one run's id (3f2a9c01, 3f2b7700, ...):"
        " give more of it\n"
    )
    assert await asyncio.to_thread(history, "--run", "5_") == 0  # _ and % are not wildcards
    assert capsys.readouterr().out.startswith("run 5_%x: ")
    assert await asyncio.to_thread(history, "--run", "3_") == 1
    assert capsys.readouterr().err == "remediator: no run '3_'\n"


async def runs_page(api: Client, query: str) -> dict[str, Any]:
    answer = await api.get(f"/api/v1/runs?{query}", headers=TOKEN)
    assert answer.status == 200, await answer.text()
    found: dict[str, Any] = await answer.json()
    return found


async def test_the_runs_api_filters_by_outcome_policy_target_and_time(
    api: Client, store: Store
) -> None:
    run = await recorded_run(store)
    later = run.started_at + timedelta(hours=1)
    await store.save_remediation(
        replace(run, id="run-2", event_id=2, outcome="failed", started_at=later)
    )
    await store.save_remediation(
        replace(run, id="run-3", event_id=3, policy="other", target="Deployment/prod/web")
    )

    async def ids(query: str) -> list[str]:
        return [found["id"] for found in (await runs_page(api, query))["runs"]]

    assert await ids("outcome=failed") == ["run-2"]
    assert await ids("policy=other") == ["run-3"]
    assert await ids("target=Deployment/prod/api") == ["run-2", "run-1"]
    assert await ids("since=2027-01-15T08:30:00%2B00:00") == ["run-2"]
    assert await ids("until=2027-01-15T08:30:00Z&policy=application-down") == ["run-1"]
    refused = {
        "outcome=fixed": "outcome: unknown outcome 'fixed' (known: waiting, running,",
        "since=2027-01-15T08:30:00": "since: expected an RFC 3339 time with its offset",
        "cursor=bm9wZQ": "cursor: not a cursor this API gave",
        "state=failed": "unknown query parameter 'state'",
    }
    for query, reason in refused.items():
        answer = await api.get(f"/api/v1/runs?{query}", headers=TOKEN)
        assert answer.status == 400
        assert (await answer.json())["error"].startswith(reason)


async def test_the_runs_api_pages_past_a_thousand_with_its_cursor(
    api: Client, store: Store
) -> None:
    run = await recorded_run(store)
    for number in range(2, 1101):  # 1,100 runs, some started at the same moment
        moment = run.started_at + timedelta(seconds=number // 3)
        await store.save_remediation(
            replace(run, id=f"run-{number:04}", event_id=number, started_at=moment)
        )
    seen: list[str] = []
    page = await runs_page(api, "limit=1000")
    seen += [found["id"] for found in page["runs"]]
    page = await runs_page(api, f"limit=1000&cursor={page['next']}")
    seen += [found["id"] for found in page["runs"]]
    assert page["next"] is None
    assert len(seen) == len(set(seen)) == 1100


async def test_a_run_shows_its_plan_in_camel_case_like_the_rest(api: Client, store: Store) -> None:
    plan = PlanSummary(
        level="P2",
        channels=("slack",),
        target="deployment prod/api",
        steps=("kubernetes.rollout_restart",),
        on_resolved=("http.check",),
        verify_within="10m",
        rate_limit_key="application-down/api",
        breaker=BreakerSummary("application-down/api", 3, 3600.0, 1800.0),
        page_now=True,
        incident="shared-1",
    )
    await store.save_remediation(replace(await recorded_run(store), plan=plan))
    [run] = (await runs_page(api, ""))["runs"]
    keys: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            keys.extend(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(run)
    assert {"onResolved", "verifyWithin", "rateLimitKey", "pageNow"} <= set(run["plan"])
    assert [key for key in keys if "_" in key] == []


async def test_a_runs_messages_show_their_delivery_state(api: Client, store: Store) -> None:
    run = await recorded_run(store)
    at = run.started_at.timestamp()
    entries = {
        state: replace(page(channel, "ApplicationDown", at=at + n), remediation_id=run.id)
        for n, (state, channel) in enumerate(
            [
                ("queued", "pagerduty"),
                ("sent", "slack"),
                ("would_send", "email"),
                ("failed", "pagerduty"),
                ("folded", "slack"),
            ]
        )
    }
    await store.save_remediation(run, list(entries.values()))
    done = run.started_at + timedelta(minutes=1)
    await store.outbox_done(entries["sent"].id, sent_at=done)
    await store.outbox_done(entries["would_send"].id, sent_at=done, error=WOULD_SEND)
    await store.outbox_done(entries["failed"].id, failed_at=done, error="answered 400")
    await store.fold([entries["folded"].id], done, "folded past the budget")
    answer = await api.get(f"/api/v1/runs/{run.id}/messages", headers=TOKEN)
    assert answer.status == 200
    listed = await answer.json()
    assert listed["run"] == run.id
    assert [(m["id"], m["state"]) for m in listed["messages"]] == [
        (entry.id, state) for state, entry in entries.items()
    ]
    failed = listed["messages"][3]
    assert (failed["error"], failed["summary"]) == (
        "answered 400",
        "ApplicationDown: no policy matches",
    )
    missing = await api.get("/api/v1/runs/nope/messages", headers=TOKEN)
    assert missing.status == 404


async def test_the_alerts_api_lists_the_alerts_last_received(api: Client, store: Store) -> None:
    body = sample("high-memory-usage.firing-two-pods.json")
    await store.record_notification(Notification.model_validate(body), b"{}", datetime.now(UTC))
    answer = await api.get("/api/v1/alerts?limit=1", headers=TOKEN)
    assert answer.status == 200
    [alert] = (await answer.json())["alerts"]
    assert alert["alertname"] == "HighMemoryUsage"
    assert alert["annotations"]["summary"]
    assert set(alert) >= {"fingerprint", "labels", "startsAt", "endsAt", "lastReceived"}
    assert (await api.get("/api/v1/alerts")).status == 401
    assert (await api.get("/api/v1/alerts?limit=0", headers=TOKEN)).status == 400


async def test_a_store_out_of_reach_is_a_503_that_says_so(api: Client, store: Store) -> None:
    await store.close()  # every read fails as with a database down
    answer = await api.get("/api/v1/runs", headers=TOKEN)
    assert answer.status == 503
    assert (await answer.json())["error"].startswith("store unavailable: ")
