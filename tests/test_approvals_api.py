"""Approval requests through the operator API and the command line: listed, shown, approved,
rejected and cancelled by the identities of the users file, each answer (refusals too) kept
in the request's audit and shown with its run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from remediator.cli import main
from remediator.config import Settings
from remediator.metrics import Metrics
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import Parts
from remediator.store import (
    ApprovalRequest,
    ApprovalState,
    Demotion,
    Remediation,
    Store,
    Verdict,
)
from tests.support.approval_requests import (
    ALICE,
    BOB,
    MALLORY,
    TOKENS,
    VERA,
    bearer,
    pending_request,
    waiting_run,
    write_users,
)

Client = TestClient[Any, Any]
OPERATOR = {"Authorization": "Bearer ops-token"}  # REMEDIATOR_API_TOKEN: the identity `operator`


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: what is tested here does not depend on the store, whose part (answers
    taken in one transaction, requests seen) is proven on both in test_approvals_store.py."""
    return f"sqlite:///{tmp_path / 'remediator.db'}"


@pytest.fixture
async def api(
    database_url: str, store: Store, live_policies: LivePolicies, tmp_path: Path
) -> AsyncIterator[Client]:
    settings = Settings(
        database_url=database_url,
        webhook_token="s3cret",
        api_token="ops-token",
        users_file=write_users(tmp_path / "users.yaml"),
        mode="live",
    )
    parts = Parts.of(settings, store, live_policies, Metrics())
    async with TestClient(TestServer(parts.application())) as client:
        yield client


async def answer(
    api: Client, approval_id: str, who: str, decision: str, **extra: Any
) -> tuple[int, dict[str, Any]]:
    headers = OPERATOR if who == "operator" else bearer(who)
    headers = headers | extra.pop("headers", {})
    response = await api.post(
        f"/api/v1/approvals/{approval_id}", json={"decision": decision, **extra}, headers=headers
    )
    return response.status, await response.json()


async def shown(api: Client, approval_id: str, who: str = VERA) -> dict[str, Any]:
    response = await api.get(f"/api/v1/approvals/{approval_id}", headers=bearer(who))
    assert response.status == 200, await response.text()
    found: dict[str, Any] = await response.json()
    return found


def verdicts(request: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["who"], a["via"], a["verdict"]) for a in request["answers"]]


async def test_requests_are_listed_newest_first_by_state_and_shown_by_a_start_of_their_id(
    api: Client, store: Store
) -> None:
    now = datetime.now(UTC)
    older = await pending_request(store, "a1b2c3d4-old", requested_at=now - timedelta(minutes=5))
    newer = await pending_request(store, "e5f6a7b8-new", requested_at=now)
    closed = await pending_request(store, "c0ffee00-closed", requested_at=now)
    assert (await answer(api, closed.id, ALICE, "reject"))[0] == 200

    listed = await (await api.get("/api/v1/approvals", headers=bearer(VERA))).json()
    assert [r["id"] for r in listed["approvals"]] == [newer.id, older.id]
    first = listed["approvals"][0]
    assert first["approvers"] == [ALICE, BOB]
    assert (first["minApprovals"], first["approvedBy"], first["state"]) == (1, [], "pending")
    assert first["run"] == "run-e5f6a7b8-new"
    assert "answers" not in first
    assert "shown" not in first
    every = await (await api.get("/api/v1/approvals?state=all", headers=OPERATOR)).json()
    assert {r["id"] for r in every["approvals"]} == {older.id, newer.id, closed.id}
    rejected = await api.get("/api/v1/approvals?state=rejected&limit=1", headers=OPERATOR)
    assert [r["id"] for r in (await rejected.json())["approvals"]] == [closed.id]

    detail = await shown(api, "a1b2")
    assert detail["id"] == older.id
    assert detail["shown"] == older.shown
    assert detail["params"] == {"namespace": "prod", "name": "api"}
    assert detail["answers"] == []
    assert detail["expires"] == older.expires_at.isoformat()

    for path, status, error in [
        ("/api/v1/approvals?state=open", 400, "state: unknown state 'open'"),
        ("/api/v1/approvals?limit=0", 400, "limit must be from 1 to 1000"),
        ("/api/v1/approvals?status=pending", 400, "unknown query parameter 'status'"),
        ("/api/v1/approvals/nope", 404, "no approval request 'nope'"),
        ("/api/v1/approvals/c", 404, "no approval request 'c'"),  # a start too short
    ]:
        response = await api.get(path, headers=OPERATOR)
        assert response.status == status, path
        assert (await response.json())["error"].startswith(error), path


async def test_an_approver_approves_and_the_answer_is_recorded_with_who_and_how(
    api: Client, store: Store
) -> None:
    request = await pending_request(store, "a1b2c3d4")
    status, answered = await answer(
        api,
        "a1b2c3d4",
        ALICE,
        "approve",
        note="looks right",
        headers={"X-Remediator-Client": "cli"},
    )
    assert status == 200, answered
    assert (answered["counted"], answered["why"], answered["state"]) == (True, "", "approved")
    assert answered["approvedBy"] == [ALICE]
    assert answered["decided"] is not None
    [given] = answered["answers"]
    assert (given["who"], given["via"], given["verdict"], given["note"]) == (
        ALICE,
        "cli",
        "approve",
        "looks right",
    )
    stored = await store.approval(request.id)
    assert stored is not None
    assert stored.state is ApprovalState.APPROVED
    # Approved: its firing event is queued again, for the run to go on.
    assert [event.id for event in await store.pending_events(10)] == [request.event_id]


async def test_one_not_an_approver_is_refused_with_403_and_the_refusal_recorded(
    api: Client, store: Store
) -> None:
    await pending_request(store, "a1b2c3d4")
    status, refused = await answer(api, "a1b2c3d4", MALLORY, "approve")
    assert status == 403
    assert refused["error"].startswith(f"{MALLORY} is not an approver of this request")
    request = await shown(api, "a1b2c3d4")
    assert request["state"] == "pending"
    assert verdicts(request) == [(MALLORY, "api", "refused")]
    assert request["answers"][0]["note"].startswith("approve: ")
    assert (await answer(api, "a1b2c3d4", MALLORY, "reject"))[0] == 403


async def test_two_identities_approve_a_request_needing_two_and_one_cannot_give_both(
    api: Client, store: Store
) -> None:
    await pending_request(store, "a1b2c3d4", min_approvals=2)
    status, first = await answer(api, "a1b2c3d4", ALICE, "approve")
    assert (status, first["counted"], first["state"], first["approvedBy"]) == (
        200,
        True,
        "pending",
        [ALICE],
    )
    status, again = await answer(api, "a1b2c3d4", ALICE, "approve")
    assert (status, again["counted"], again["state"]) == (200, False, "pending")
    assert again["why"] == f"already approved by {ALICE}: one person gives one approval"
    assert again["approvedBy"] == [ALICE]
    status, second = await answer(api, "a1b2c3d4", BOB, "approve")
    assert (status, second["counted"], second["state"]) == (200, True, "approved")
    assert second["approvedBy"] == [ALICE, BOB]
    assert verdicts(second) == [
        (ALICE, "api", "approve"),
        (ALICE, "api", "refused"),
        (BOB, "api", "approve"),
    ]


async def test_a_viewer_lists_and_shows_but_cannot_answer_or_pause(
    api: Client, store: Store
) -> None:
    await pending_request(store, "a1b2c3d4", approvers=(VERA, ALICE))
    assert (await api.get("/api/v1/approvals", headers=bearer(VERA))).status == 200
    assert (await api.get("/api/v1/runs", headers=bearer(VERA))).status == 200
    status, refused = await answer(api, "a1b2c3d4", VERA, "approve")
    assert status == 403
    assert refused == {"error": "vera is a viewer: this needs the operator role"}
    pause = await api.post("/api/v1/pause", headers=bearer(VERA))
    assert pause.status == 403
    request = await shown(api, "a1b2c3d4")
    assert (request["state"], request["answers"]) == ("pending", [])  # never reached the desk


async def test_an_answer_after_the_request_closed_is_409_and_recorded_as_refused(
    api: Client, store: Store
) -> None:
    await pending_request(store, "a1b2c3d4", min_approvals=2)
    status, rejected = await answer(api, "a1b2c3d4", BOB, "reject", note="not now")
    assert (status, rejected["state"], rejected["counted"]) == (200, "rejected", True)
    status, late = await answer(api, "a1b2c3d4", ALICE, "approve")
    assert (status, late) == (409, {"error": "already rejected"})
    assert (await answer(api, "a1b2c3d4", "operator", "cancel"))[0] == 409
    request = await shown(api, "a1b2c3d4")
    assert request["state"] == "rejected"
    assert verdicts(request) == [
        (BOB, "api", "reject"),
        (ALICE, "api", "refused"),
        ("operator", "api", "refused"),
    ]


async def test_an_answer_past_the_expiry_is_409(api: Client, store: Store) -> None:
    requested = datetime.now(UTC) - timedelta(minutes=20)
    await pending_request(store, "a1b2c3d4", requested_at=requested)
    status, late = await answer(api, "a1b2c3d4", ALICE, "approve")
    assert status == 409
    assert late["error"].startswith("expired at ")
    request = await shown(api, "a1b2c3d4")
    assert (request["state"], verdicts(request)) == ("pending", [(ALICE, "api", "refused")])


async def test_any_operator_cancels_a_request_they_are_not_an_approver_of(
    api: Client, store: Store
) -> None:
    await pending_request(store, "a1b2c3d4")
    status, cancelled = await answer(api, "a1b2", "operator", "cancel", note="drill over")
    assert (status, cancelled["state"], cancelled["counted"]) == (200, "cancelled", True)
    assert verdicts(cancelled) == [("operator", "api", "cancel")]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            {"decision": "approve", "by": "bob"}, "by: Extra inputs are not permitted", id="unknown"
        ),
        pytest.param({"decision": "maybe"}, "decision: Input should be 'approve'", id="decision"),
        pytest.param({}, "decision: Field required", id="none"),
        pytest.param(
            {"decision": "approve", "note": "x" * 501},
            "note: String should have at most 500 characters",
            id="long-note",
        ),
        pytest.param({"decision": "approve", "note": 5}, "note: Input should be", id="number"),
    ],
)
async def test_a_malformed_answer_is_a_400_naming_the_field(
    api: Client, store: Store, body: dict[str, Any], error: str
) -> None:
    await pending_request(store, "a1b2c3d4")
    response = await api.post("/api/v1/approvals/a1b2c3d4", json=body, headers=bearer(ALICE))
    assert response.status == 400
    assert (await response.json())["error"].startswith(error)
    assert (await shown(api, "a1b2c3d4"))["answers"] == []


async def test_an_answer_to_an_unknown_request_is_a_404(api: Client, store: Store) -> None:
    await pending_request(store, "a1b2c3d4")
    await pending_request(store, "a1b2ffff")
    for approval_id, error in [
        ("nope-nope", "no approval request 'nope-nope'"),
        ("a1b2", "'a1b2' names more than one request: give more of it"),
    ]:
        status, refused = await answer(api, approval_id, ALICE, "approve")
        assert (status, refused) == (404, {"error": error})


async def run_waiting_for(store: Store, request: ApprovalRequest) -> Remediation:
    run = waiting_run(request)
    await store.save_remediation(run)
    return run


async def test_a_run_shows_its_approval_requests_with_every_answer(
    api: Client, store: Store
) -> None:
    request = await pending_request(store, "a1b2c3d4", min_approvals=2)
    run = await run_waiting_for(store, request)
    await answer(api, request.id, MALLORY, "approve")
    await answer(api, request.id, ALICE, "approve", note="ok")
    detail = await (await api.get(f"/api/v1/runs/{run.id}", headers=bearer(VERA))).json()
    [audit] = detail["approvals"]
    assert (audit["id"], audit["state"], audit["approvedBy"]) == (request.id, "pending", [ALICE])
    assert verdicts(audit) == [(MALLORY, "api", "refused"), (ALICE, "api", "approve")]
    assert "shown" not in audit


# --- the command line, against the service in process ---------------------------------------


def token_file(tmp_path: Path, who: str) -> str:
    path = tmp_path / f"{who}.token"
    path.write_text(TOKENS[who] + "\n")
    return str(path)


def command_line(api: Client, tmp_path: Path) -> Callable[..., Any]:
    """`remediator approvals ...` as a person's token file gives it; the service, in this
    process, logs nowhere, so that its lines are not taken for the command's output."""
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    url = str(api.make_url("")).rstrip("/")

    async def run(who: str, *argv: str) -> int:
        arguments = ["approvals", *argv, "--url", url, "--token-file", token_file(tmp_path, who)]
        return await asyncio.to_thread(main, arguments)

    return run


async def test_the_command_line_lists_shows_and_answers_as_the_tokens_identity(
    api: Client,
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    approvals = command_line(api, tmp_path)
    request = await pending_request(store, "3f2a9c1e-1111", min_approvals=2)

    assert await approvals(VERA, "list") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ID", "AGE", "ALERT", "POLICY", "STEP", "TARGET", "APPROVALS", "EXPIRES", "IN"
    ]  # fmt: skip
    assert row.split()[:2] == ["3f2a9c1e", "0s"]
    assert "ApplicationDown  application-down  restart (kubernetes.rollout_restart)" in row
    assert row.split()[-2:] == ["0/2", "14m"]

    assert await approvals(ALICE, "approve", "3f2a", "--note", "checked the graphs") == 0
    out = capsys.readouterr().out
    assert out.startswith("approved 3f2a9c1e: 1 of 2 approvals; 1 more needed before ")
    assert await approvals(ALICE, "approve", "3f2a") == 1
    assert capsys.readouterr().err == (
        f"remediator: approve of 3f2a9c1e not counted: already approved by {ALICE}:"
        " one person gives one approval\n"
    )
    assert await approvals(MALLORY, "approve", "3f2a") == 1
    assert f"answered 403: {MALLORY} is not an approver" in capsys.readouterr().err
    assert await approvals(VERA, "reject", "3f2a") == 1
    assert "answered 403: vera is a viewer: this needs the operator role" in (
        capsys.readouterr().err
    )
    assert await approvals(BOB, "approve", request.id) == 0
    assert capsys.readouterr().out == "approved 3f2a9c1e: 2 of 2 approvals; the run goes on\n"
    assert await approvals(BOB, "cancel", "3f2a") == 1
    assert "answered 409: already approved" in capsys.readouterr().err
    assert await approvals(ALICE, "show", "nope-nope") == 1
    assert "answered 404: no approval request 'nope-nope'" in capsys.readouterr().err

    assert await approvals(VERA, "show", "3f2a") == 0
    detail = capsys.readouterr().out
    assert detail.startswith(
        f"approval {request.id}: approved, 2 of 2 approvals ({ALICE}, {BOB})\n"
    )
    assert "  change: would restart deployment prod/api\n" in detail
    assert f"{ALICE} via cli: approve: checked the graphs\n" in detail
    assert f"{ALICE} via cli: refused: already approved by {ALICE}" in detail
    assert f"{BOB} via cli: approve\n" in detail

    assert await approvals(VERA, "list") == 0
    assert capsys.readouterr().out == "no approval requests pending\n"
    assert await approvals(VERA, "list", "--all", "--json") == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["id"], listed["state"]) == (request.id, "approved")
    assert await approvals(VERA, "list", "--all") == 0
    [_, row] = capsys.readouterr().out.splitlines()
    assert row.split()[-3:] == ["2/2", "-", "approved"]


async def test_the_command_line_rejects_and_cancels_and_says_when_it_cannot_reach(
    api: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    approvals = command_line(api, tmp_path)
    await pending_request(store, "3f2a9c1e")
    await pending_request(store, "77aa0000")
    assert await approvals(BOB, "reject", "3f2a", "--note", "not in business hours") == 0
    assert capsys.readouterr().out == "rejected 3f2a9c1e: the run makes no more changes\n"
    assert await approvals(MALLORY, "cancel", "77aa") == 0  # any operator may cancel
    assert capsys.readouterr().out == "cancelled 77aa0000: the run makes no more changes\n"
    assert await approvals(ALICE, "approve", "77aa") == 1
    assert "answered 409: already cancelled" in capsys.readouterr().err

    unreachable = ["approvals", "list", "--url", "http://127.0.0.1:9"]
    assert await asyncio.to_thread(main, unreachable) == 2
    assert "cannot reach the service at http://127.0.0.1:9" in capsys.readouterr().err
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-a-token\n")
    url = str(api.make_url("")).rstrip("/")
    with_wrong = ["approvals", "list", "--url", url, "--token-file", str(wrong)]
    assert await asyncio.to_thread(main, with_wrong) == 2
    assert "answered 401: missing or wrong bearer token" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["approvals", "approve", "3f2a", "--note", "x" * 501])
    assert usage.value.code == 2
    assert "at most 500 characters, got 501" in capsys.readouterr().err


async def test_history_of_a_run_shows_its_approvals_and_every_answer(
    api: Client, store: Store, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    request = await pending_request(store, "a1b2c3d4", min_approvals=2)
    run = await run_waiting_for(store, request)
    await answer(api, request.id, MALLORY, "approve")
    await answer(
        api, request.id, ALICE, "approve", note="ok", headers={"X-Remediator-Client": "cli"}
    )
    await answer(api, request.id, "operator", "cancel", note="fixed by hand")
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())

    def history(*argv: str) -> int:
        return main(["history", "--database-url", database_url, "--run", run.id, *argv])

    assert await asyncio.to_thread(history) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(
        f"  approval {request.id} for steps[1] kubernetes.rollout_restart on Deployment/prod/api:"
        f" cancelled, 1 of 2 approvals (approvers: {ALICE}, {BOB})"
    )
    times, answers = zip(*(line.strip().split("  ", 1) for line in lines[at + 1 :]), strict=True)
    assert [line.split(": ", 1)[0] for line in answers] == [
        f"{MALLORY} via api",
        f"{ALICE} via cli",
        "operator via api",
    ]
    assert answers[1] == f"{ALICE} via cli: approve: ok"
    assert answers[2] == "operator via api: cancel: fixed by hand"
    assert all(datetime.fromisoformat(when) >= request.requested_at for when in times)
    assert await asyncio.to_thread(history, "--json") == 0
    [audit] = json.loads(capsys.readouterr().out)["approvals"]
    assert [(a["who"], a["verdict"]) for a in audit["answers"]] == [
        (MALLORY, Verdict.REFUSED.value),
        (ALICE, "approve"),
        ("operator", "cancel"),
    ]


# --- demotions: listed, and ended by a person -------------------------------------------


async def demoted(store: Store, policy: str = "application-down") -> None:
    at = datetime.now(UTC)
    await store.demote(Demotion(policy, "rev-1", "0 of its last 3 runs fixed the alert", at))


async def test_a_demoted_policy_is_listed_and_an_operator_promotes_it(
    api: Client, store: Store
) -> None:
    await demoted(store)
    listed = await (await api.get("/api/v1/demotions", headers=bearer(VERA))).json()
    assert [(d["policy"], d["inForce"]) for d in listed["demotions"]] == [
        ("application-down", True)
    ]

    by_viewer = await api.post("/api/v1/policies/application-down/promote", headers=bearer(VERA))
    assert by_viewer.status == 403
    assert (await store.demotion("application-down")).in_force  # type: ignore[union-attr]

    promoted = await api.post("/api/v1/policies/application-down/promote", headers=bearer(ALICE))
    assert promoted.status == 200
    assert await promoted.json() == {"policy": "application-down", "promoted": True, "by": ALICE}
    after = await store.demotion("application-down")
    assert after is not None
    assert (after.in_force, after.promoted_by) == (False, ALICE)
    audit = await store.audit_log(10)
    assert [(e.kind, e.subject, e.detail) for e in audit if e.kind == "promotion"] == [
        ("promotion", "application-down", {"by": ALICE})
    ]
    again = await api.post("/api/v1/policies/application-down/promote", headers=bearer(ALICE))
    assert (await again.json())["promoted"] is False
    unknown = await api.post("/api/v1/policies/no-such-policy/promote", headers=bearer(ALICE))
    assert unknown.status == 404


async def test_policies_promote_on_the_command_line(
    api: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    await demoted(store)
    url = str(api.make_url("")).rstrip("/")
    argv = ["policies", "promote", "application-down", "--url", url]
    argv += ["--token-file", token_file(tmp_path, BOB)]

    assert await asyncio.to_thread(main, argv) == 0
    assert "promoted application-down (by bob@example.com)" in capsys.readouterr().out
    assert await asyncio.to_thread(main, argv) == 1  # not demoted any more
    assert "was not demoted" in capsys.readouterr().err
