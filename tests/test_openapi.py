"""GET /openapi.json: kept true to the routes, valid OpenAPI 3.1, and true to what the service
accepts and answers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate as validate_openapi

from remediator.config import Settings
from remediator.guards.guards import Admitted
from remediator.metrics import Metrics
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import GUARDS, Parts
from remediator.store import Store, open_store
from tests.support.approval_requests import pending_request
from tests.support.builders import memory_plan, recorded_run
from tests.support.samples import sample, sample_names

Client = TestClient[Any, Any]
WEBHOOK = {"Authorization": "Bearer s3cret"}
OPERATOR = {"Authorization": "Bearer ops-token"}
SETTINGS = {
    "bearer": {"webhook_token": "s3cret", "api_token": "ops-token", "mode": "live"},
    "basic": {"webhook_username": "am", "webhook_password": "pw"},
    "none": {},
}


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'remediator.db'}")
    yield opened
    await opened.close()


async def serve(
    store: Store, policies: LivePolicies, tmp_path: Path, **settings: str
) -> TestClient[Any, Any]:
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    app = Parts.of(
        Settings(database_url=database_url, **settings), store, policies, Metrics()
    ).application()
    return TestClient(TestServer(app))


@pytest.fixture
async def client(
    sqlite_store: Store, live_policies: LivePolicies, tmp_path: Path
) -> AsyncIterator[Client]:
    async with await serve(sqlite_store, live_policies, tmp_path, **SETTINGS["bearer"]) as served:
        yield served


async def fetch_document(client: Client) -> dict[str, Any]:
    """The document as a client gets it: with no credentials at all."""
    answer = await client.get("/openapi.json")
    assert answer.status == 200
    assert answer.content_type == "application/json"
    document: dict[str, Any] = await answer.json()
    return document


def routed(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route; aiohttp answers HEAD for every GET, undocumented. The
    console's pages (/ui, HTML for people) are not the API's."""
    routes = {
        (route.method, resource.canonical)
        for resource in app.router.resources()
        for route in resource
        if resource.canonical != "/ui"
    }
    heads = {(method, path) for method, path in routes if method == "HEAD"}
    assert heads <= {("HEAD", path) for method, path in routes if method == "GET"}
    return routes - heads


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


async def test_every_route_is_documented_and_every_documented_operation_is_routed(
    client: Client,
) -> None:
    document = await fetch_document(client)
    assert documented(document) == routed(client.app)
    # The brief's list, so that a route dropped from both would still be noticed.
    assert {path for _, path in documented(document)} >= {
        "/api/v1/alerts",
        "/health",
        "/metrics",
        "/openapi.json",
        "/api/v1/guards",
        "/api/v1/pause",
        "/api/v1/resume",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/approvals",
        "/api/v1/approvals/{id}",
    }


@pytest.mark.parametrize("auth", sorted(SETTINGS))
async def test_the_document_is_valid_openapi_3_1_for_every_authentication(
    auth: str, sqlite_store: Store, live_policies: LivePolicies, tmp_path: Path
) -> None:
    async with await serve(sqlite_store, live_policies, tmp_path, **SETTINGS[auth]) as served:
        document = await fetch_document(served)
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    loaded = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == documented(document)


@pytest.mark.parametrize(
    ("auth", "schemes", "good", "challenge"),
    [
        ("bearer", {"webhookBearer": "bearer"}, WEBHOOK, "Bearer"),
        (
            "basic",
            {"webhookBasic": "basic"},
            {"Authorization": "Basic " + base64.b64encode(b"am:pw").decode()},
            "Basic",
        ),
        ("none", {}, {}, None),
    ],
)
async def test_the_webhook_security_is_what_the_service_accepts(
    auth: str,
    schemes: dict[str, str],
    good: dict[str, str],
    challenge: str | None,
    sqlite_store: Store,
    live_policies: LivePolicies,
    tmp_path: Path,
) -> None:
    async with await serve(sqlite_store, live_policies, tmp_path, **SETTINGS[auth]) as served:
        document = await fetch_document(served)
        body = sample("application-down.firing.json")
        refused = await served.post("/api/v1/alerts", json=body)
        accepted = await served.post("/api/v1/alerts", json=body, headers=good)
    declared = document["components"]["securitySchemes"]
    webhook = {
        name: scheme["scheme"] for name, scheme in declared.items() if name != "operatorToken"
    }
    assert webhook == schemes
    security = document["paths"]["/api/v1/alerts"]["post"]["security"]
    assert security == [{name: []} for name in schemes]
    assert accepted.status == 200
    if challenge is None:
        assert refused.status == 200  # no authentication configured: the document lists none
    else:
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith(challenge)
    assert declared["operatorToken"] == declared["operatorToken"] | {"scheme": "bearer"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = [{"operatorToken": []}] if path.startswith("/api/v1/") else []
            if path == "/health":  # anyone: the status; with the token, the checks too
                expected = [{}, {"operatorToken": []}]
            if (method, path) == ("post", "/api/v1/alerts"):  # the webhook; listing: operator
                expected = security
            assert operation["security"] == expected, (method, path)


def schema_of(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of one component, its $refs resolved within the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("name", sample_names())
async def test_the_documented_request_schema_accepts_every_captured_sample(
    name: str, client: Client
) -> None:
    document = await fetch_document(client)
    body = sample(name)
    schema_of(document, "Notification").validate(body)
    answer = await client.post("/api/v1/alerts", json=body, headers=WEBHOOK)
    assert answer.status == 200
    schema_of(document, "Acknowledgement").validate(await answer.json())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(lambda b: b.update(truncatedAlerts="0"), "truncatedAlerts", id="count-text"),
        pytest.param(lambda b: b["alerts"][0].update(startsAt=0), "startsAt", id="time-number"),
        pytest.param(lambda b: b["alerts"][0]["labels"].update(x="a\x00"), "x", id="nul"),
        pytest.param(lambda b: b["alerts"][0].update(fingerprint=""), "fingerprint", id="empty"),
    ],
)
async def test_what_the_schema_refuses_the_service_refuses_naming_the_field(
    change: Any, field: str, client: Client, sqlite_store: Store
) -> None:
    document = await fetch_document(client)
    body = sample("application-down.firing.json")
    change(body)
    assert not schema_of(document, "Notification").is_valid(body)
    answer = await client.post("/api/v1/alerts", json=body, headers=WEBHOOK)
    assert answer.status == 400
    refusal = await answer.json()
    schema_of(document, "InvalidPayload").validate(refusal)
    assert [field in problem["path"] for problem in refusal["problems"]] == [True]
    assert await sqlite_store.recent_alerts(10) == []


async def test_every_answer_matches_its_documented_schema(
    client: Client, sqlite_store: Store, live_policies: LivePolicies
) -> None:
    """The operator API's answers with something in them: a run with steps, a guard state
    with a budget, a breaker and a lease, the kill switch on; and the refusals."""
    document = await fetch_document(client)
    run = await recorded_run(sqlite_store)
    assert isinstance(await client.app[GUARDS].admit(memory_plan(live_policies.current)), Admitted)
    answers = {
        ("post", "/api/v1/pause", 200): await client.post(
            "/api/v1/pause", json={"reason": "test"}, headers=OPERATOR
        ),
        ("get", "/api/v1/guards", 200): await client.get("/api/v1/guards", headers=OPERATOR),
        ("get", "/api/v1/runs", 200): await client.get("/api/v1/runs", headers=OPERATOR),
        ("get", "/api/v1/runs/{id}", 200): await client.get(
            f"/api/v1/runs/{run.id}", headers=OPERATOR
        ),
        ("get", "/api/v1/runs/{id}", 404): await client.get("/api/v1/runs/x", headers=OPERATOR),
        ("get", "/api/v1/runs", 400): await client.get("/api/v1/runs?limit=0", headers=OPERATOR),
        ("get", "/api/v1/guards", 401): await client.get("/api/v1/guards"),
        ("post", "/api/v1/resume", 200): await client.post("/api/v1/resume", headers=OPERATOR),
        ("get", "/health", 200): await client.get("/health"),
        ("post", "/api/v1/alerts", 415): await client.post(
            "/api/v1/alerts", data=b"{}", headers={**WEBHOOK, "Content-Type": "text/plain"}
        ),
    }
    for (method, path, status), answer in answers.items():
        assert answer.status == status, (method, path, await answer.text())
        documented_answer = document["paths"][path][method]["responses"][str(status)]
        ref = documented_answer["content"]["application/json"]["schema"]["$ref"]
        schema_of(document, ref.rsplit("/", 1)[1]).validate(await answer.json())
        for header in documented_answer.get("headers", {}):
            assert header in answer.headers, (method, path, header)
    state = await answers[("get", "/api/v1/guards", 200)].json()
    assert state["paused"]["reason"] == "test"
    assert state["breakers"]
    assert state["rate_limits"]
    assert state["leases"]
    assert (await answers[("get", "/api/v1/runs/{id}", 200)].json())["steps"]


async def test_every_approvals_answer_matches_its_documented_schema(
    client: Client, sqlite_store: Store
) -> None:
    """The approvals API's answers, refusals included, each as the document says."""
    document = await fetch_document(client)
    await pending_request(sqlite_store, "a1b2c3d4", approvers=("operator",))
    await pending_request(sqlite_store, "e5f6a7b8", approvers=("someone-else",))
    path = "/api/v1/approvals/{id}"
    approve = {"decision": "approve", "note": "ok"}
    answers = {
        ("get", "/api/v1/approvals", 200): await client.get("/api/v1/approvals", headers=OPERATOR),
        ("get", "/api/v1/approvals", 400): await client.get(
            "/api/v1/approvals?state=open", headers=OPERATOR
        ),
        ("get", path, 200): await client.get("/api/v1/approvals/a1b2", headers=OPERATOR),
        ("get", path, 404): await client.get("/api/v1/approvals/nope", headers=OPERATOR),
        ("post", path, 400): await client.post(
            "/api/v1/approvals/a1b2", json={"decision": "approve", "x": 1}, headers=OPERATOR
        ),
        ("post", path, 200): await client.post(
            "/api/v1/approvals/a1b2", json=approve, headers=OPERATOR
        ),
        ("post", path, 409): await client.post(
            "/api/v1/approvals/a1b2", json=approve, headers=OPERATOR
        ),
        ("post", path, 403): await client.post(
            "/api/v1/approvals/e5f6", json=approve, headers=OPERATOR
        ),
        ("post", path, 404): await client.post(
            "/api/v1/approvals/nope", json=approve, headers=OPERATOR
        ),
        ("post", path, 401): await client.post("/api/v1/approvals/a1b2", json=approve),
    }
    for (method, route, status), answer in answers.items():
        assert answer.status == status, (method, route, await answer.text())
        documented_answer = document["paths"][route][method]["responses"][str(status)]
        ref = documented_answer["content"]["application/json"]["schema"]["$ref"]
        schema_of(document, ref.rsplit("/", 1)[1]).validate(await answer.json())
    answered = await answers[("post", path, 200)].json()
    assert (answered["state"], answered["answers"][0]["who"]) == ("approved", "operator")
    assert answered["shown"]
