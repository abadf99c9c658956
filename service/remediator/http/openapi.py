"""GET /openapi.json: the OpenAPI 3.1 document of the service's HTTP API.

The request and answer schemas are generated from the models the handlers parse with and
answer in (the webhook payload, the operator API's bodies and typed answers), so they cannot
drift from the code; tests compare the paths with the routes and fuzz a running service with
the document. The security schemes are the ones this service's settings accept.
"""

from __future__ import annotations

import json
from typing import (
    Any,
    Literal,
    NotRequired,  # pydantic documents it; typing's needs 3.12
)

from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from typing_extensions import TypedDict

from remediator import __version__
from remediator.alerts import Notification
from remediator.config import Settings
from remediator.engine.outcome import RunOutcome
from remediator.http.auth import WebhookAuth
from remediator.http.bodies import ErrorAnswer
from remediator.http.intake import Acknowledgement, InvalidPayload, auth_scheme
from remediator.http.operator_api import (
    APPROVAL_STATES,
    MAX_NOTE,
    AlertList,
    AnswerRequest,
    ApprovalAnswered,
    ApprovalDetail,
    ApprovalList,
    DemotionList,
    FoldDetail,
    FoldList,
    GuardState,
    MessageList,
    PauseRequest,
    PauseState,
    PromoteAnswer,
    ResumeRequest,
    RunDetail,
    RunList,
)
from remediator.http.slack_interactions import PATH as SLACK_PATH

PATH = "/openapi.json"
_HTTP_REFUSAL = "malformed HTTP, or a request line or header over 8190 bytes"
_NO_NUL = {"type": "string", "pattern": "^[^\\x00]*$"}


class HealthAnswer(TypedDict):
    """What GET /health answers (remediator.http.health builds it): the status to anyone;
    the time, the version and the checks to a caller with the operator token."""

    status: Literal["ok", "degraded", "unhealthy"]
    timestamp: NotRequired[str]
    version: NotRequired[str]
    checks: NotRequired[dict[str, dict[str, str]]]  # per dependency: status, detail if not ok


# Each is a component named as its class: requests as they are parsed, answers as written.
_COMPONENTS: list[tuple[JsonSchemaMode, type[Any]]] = [
    ("validation", Notification),
    ("validation", PauseRequest),
    ("validation", ResumeRequest),
    ("validation", AnswerRequest),
    ("serialization", Acknowledgement),
    ("serialization", InvalidPayload),
    ("serialization", ErrorAnswer),
    ("serialization", HealthAnswer),
    ("serialization", PauseState),
    ("serialization", GuardState),
    ("serialization", RunList),
    ("serialization", RunDetail),
    ("serialization", MessageList),
    ("serialization", AlertList),
    ("serialization", FoldList),
    ("serialization", FoldDetail),
    ("serialization", ApprovalList),
    ("serialization", ApprovalDetail),
    ("serialization", ApprovalAnswered),
    ("serialization", DemotionList),
    ("serialization", PromoteAnswer),
]


def routes(settings: Settings) -> list[web.RouteDef]:
    """The document's own route; it needs no credentials, as it holds none."""
    body = json.dumps(openapi_document(settings)).encode()

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return [web.get(PATH, serve)]


def openapi_document(settings: Settings) -> dict[str, Any]:
    webhook_scheme, webhook_security = _webhook_security(settings)
    operator: list[dict[str, list[str]]] = [{"operatorToken": []}]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Remediator",
            "version": __version__,
            "description": "Receives Alertmanager webhooks, stores them durably and runs the"
            " runbook's first response under guard rails; the operator API pauses it, shows"
            " its guards and runs, and answers the approval requests of its risky steps.",
        },
        "paths": {
            "/api/v1/alerts": {"post": _intake(webhook_security), "get": _alerts(operator)},
            "/health": {"get": _health(operator)},
            SLACK_PATH: {"post": _slack_interactions()},
            "/metrics": {"get": _metrics()},
            PATH: {"get": _document()},
            "/api/v1/guards": {"get": _guards(operator)},
            "/api/v1/pause": {"post": _pause(operator)},
            "/api/v1/resume": {"post": _resume(operator)},
            "/api/v1/runs": {"get": _runs(operator)},
            "/api/v1/runs/{id}": {"get": _run(operator)},
            "/api/v1/runs/{id}/messages": {"get": _messages(operator)},
            "/api/v1/folds": {"get": _folds(operator)},
            "/api/v1/folds/{id}": {"get": _fold(operator)},
            "/api/v1/approvals": {"get": _approvals(operator)},
            "/api/v1/approvals/{id}": {
                "get": _approval(operator),
                "post": _answer(operator),
            },
            "/api/v1/demotions": {"get": _demotions(operator)},
            "/api/v1/policies/{name}/promote": {"post": _promote(operator)},
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                **webhook_scheme,
                "operatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "REMEDIATOR_API_TOKEN (an operator), or the token of a user of"
                    " REMEDIATOR_USERS_FILE (an operator or a viewer); neither set, the operator"
                    " API answers 403. The webhook's credentials do not open it.",
                },
            },
        },
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            _refused_by_http(operation["responses"])
    return document


def _refused_by_http(responses: dict[str, Any]) -> None:
    """Every operation: aiohttp answers 400 in plain text, before any handler, to malformed
    HTTP or a request line or header over its limit."""
    refusal = responses.setdefault("400", {"description": _HTTP_REFUSAL, "content": {}})
    if refusal["description"] != _HTTP_REFUSAL:
        refusal["description"] += f"; or (text/plain) {_HTTP_REFUSAL}"
    refusal["content"]["text/plain"] = {"schema": {"type": "string"}}


def _webhook_security(settings: Settings) -> tuple[dict[str, Any], list[dict[str, list[str]]]]:
    scheme_name = auth_scheme(WebhookAuth.from_settings(settings))
    if scheme_name == "Bearer":
        where = "REMEDIATOR_WEBHOOK_TOKEN, or a line of REMEDIATOR_WEBHOOK_TOKEN_FILE"
        scheme = {"type": "http", "scheme": "bearer", "description": where}
        return {"webhookBearer": scheme}, [{"webhookBearer": []}]
    if scheme_name == "Basic":
        scheme = {
            "type": "http",
            "scheme": "basic",
            "description": "REMEDIATOR_WEBHOOK_USERNAME and REMEDIATOR_WEBHOOK_PASSWORD",
        }
        return {"webhookBasic": scheme}, [{"webhookBasic": []}]
    return {}, []  # dry-run without webhook authentication: every webhook is accepted


def _schemas() -> dict[str, Any]:
    """Every component and the definitions they share, each $ref into components."""
    inputs = [(kind.__name__, mode, TypeAdapter(kind)) for mode, kind in _COMPONENTS]
    tops, shared = TypeAdapter.json_schemas(
        inputs, by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(shared.get("$defs", {}))
    for (name, _), schema in tops.items():
        if schema.get("$ref") != _ref(name):  # a class's top is a $ref to its own definition
            schemas[name] = schema
    return schemas


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _ref(name)}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": schema}


def _operator_refusals() -> dict[str, Any]:
    challenge = {"WWW-Authenticate": _header("the bearer challenge", {"type": "string"})}
    return {
        "401": _json("ErrorAnswer", "missing or wrong bearer token", challenge),
        "403": _json(
            "ErrorAnswer",
            "the operator API is closed (REMEDIATOR_API_TOKEN and REMEDIATOR_USERS_FILE unset),"
            " or the caller's role does not allow this (a viewer only reads)",
        ),
        "503": _json("ErrorAnswer", "the store or the guard state cannot be reached"),
    }


def _intake(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    challenge = {"WWW-Authenticate": _header("the scheme expected", {"type": "string"})}
    retry = _header("seconds to wait before retrying", {"type": "string", "pattern": "^[0-9]+$"})
    return {
        "operationId": "receiveAlerts",
        "tags": ["intake"],
        "summary": "Alertmanager's webhook (payload version 4)",
        "description": "Answers only after the body, every alert and the queued events are"
        " committed; a repeat of a known alert state is a duplicate, queued nothing.",
        "security": security,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _ref("Notification")}}},
        },
        "responses": {
            "200": _json("Acknowledgement", "stored durably, each alert state once"),
            "400": _json("InvalidPayload", "not JSON, or a field missing or of the wrong type"),
            "401": _json("ErrorAnswer", "credentials missing or wrong", challenge),
            "413": _json("ErrorAnswer", "body over REMEDIATOR_MAX_BODY_BYTES"),
            "415": _json("ErrorAnswer", "Content-Type is not application/json"),
            "503": _json("ErrorAnswer", "the store cannot write: retry", {"Retry-After": retry}),
        },
    }


def _health(operator: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "health",
        "tags": ["health"],
        "summary": "The status; with the operator token, one check per dependency",
        "security": [{}, *operator],
        "responses": {
            "200": _json("HealthAnswer", "ok, or degraded: remediation is held back, intake works"),
            "503": _json("HealthAnswer", "unhealthy: the store cannot be reached"),
        },
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "tags": ["health"],
        "summary": "Prometheus metrics, in the text exposition format",
        "security": [],
        "responses": {
            "200": {
                "description": "the metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }


def _document() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "tags": ["health"],
        "summary": "This document",
        "security": [],
        "responses": {
            "200": {
                "description": "the OpenAPI 3.1 document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }


def _guards(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "guards",
        "tags": ["operator"],
        "summary": "The kill switch, breakers, rate-limit budgets, leases and runs in flight",
        "security": security,
        "responses": {"200": _json("GuardState", "the guards' state"), **_operator_refusals()},
    }


def _kill_switch(
    operation: str, summary: str, body: str, security: list[dict[str, list[str]]]
) -> dict[str, Any]:
    return {
        "operationId": operation,
        "tags": ["operator"],
        "summary": summary,
        "security": security,
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": _ref(body)}}},
        },
        "responses": {
            "200": _json("PauseState", "the kill switch as it now is"),
            "400": _json("ErrorAnswer", "the body is not a JSON object of strings"),
            "413": _json("ErrorAnswer", "body over REMEDIATOR_MAX_BODY_BYTES"),
            **_operator_refusals(),
        },
    }


def _pause(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return _kill_switch("pause", "Stop all remediation (the kill switch)", "PauseRequest", security)


def _resume(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return _kill_switch("resume", "Lift the kill switch", "ResumeRequest", security)


def _runs(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "listRuns",
        "tags": ["operator"],
        "summary": "The latest remediation records, newest first",
        "security": security,
        "description": "Filtered by each parameter given; a page of at most `limit`, and in"
        " `next` the cursor of the page after (null on the last page).",
        "parameters": [
            _whole_parameter("limit", 1, 1000, 50),
            _query("cursor", "`next` of the page before, as it was given", _NO_NUL),
            _query("alertname", "only this alert's runs", _NO_NUL),
            _query("outcome", "only runs that stand or ended so", _OUTCOME),
            _query("policy", "only this policy's runs", _NO_NUL),
            _query("target", "only runs on this target, e.g. Deployment/prod/api", _NO_NUL),
            _query("since", "only runs started at or after this time", _TIME),
            _query("until", "only runs started before this time", _TIME),
        ],
        "responses": {
            "200": _json("RunList", "the runs"),
            "400": _json(
                "ErrorAnswer",
                "limit is not from 1 to 1000, an unknown outcome, a time without its offset,"
                " a cursor this API did not give, or an unknown parameter",
            ),
            **_operator_refusals(),
        },
    }


_OUTCOME = {"type": "string", "enum": [outcome.value for outcome in RunOutcome]}
_TIME = {"type": "string", "format": "date-time"}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _messages(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "listRunMessages",
        "tags": ["operator"],
        "summary": "The messages about one run, oldest first, with their delivery state",
        "security": security,
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _NO_NUL}],
        "responses": {
            "200": _json("MessageList", "the messages"),
            "400": _json("ErrorAnswer", "the id holds a NUL character, or an unknown parameter"),
            "404": _json("ErrorAnswer", "no such run"),
            **_operator_refusals(),
        },
    }


def _alerts(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "listAlerts",
        "tags": ["operator"],
        "summary": "The alerts last received, newest first",
        "security": security,
        "parameters": [_whole_parameter("limit", 1, 1000, 50)],
        "responses": {
            "200": _json("AlertList", "the alerts"),
            "400": _json("ErrorAnswer", "limit is not from 1 to 1000, or an unknown parameter"),
            **_operator_refusals(),
        },
    }


def _run(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "showRun",
        "tags": ["operator"],
        "summary": "One remediation record with every step and its result, and its approval"
        " requests with every answer",
        "security": security,
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _NO_NUL}],
        "responses": {
            "200": _json("RunDetail", "the run, its steps and its approval requests"),
            "400": _json("ErrorAnswer", "the id holds a NUL character"),
            "404": _json("ErrorAnswer", "no such run"),
            **_operator_refusals(),
        },
    }


def _whole_parameter(name: str, low: int, high: int, default: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _folds(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "listFolds",
        "tags": ["operator"],
        "summary": "Messages folded past the channels' budgets: their summaries, newest first",
        "security": security,
        "parameters": [_whole_parameter("limit", 1, 1000, 50)],
        "responses": {
            "200": _json("FoldList", "the summaries, after the messages not yet summarised"),
            "400": _json("ErrorAnswer", "limit is not from 1 to 1000, or an unknown parameter"),
            **_operator_refusals(),
        },
    }


def _fold(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "showFold",
        "tags": ["operator"],
        "summary": "Every message one summary folded, oldest first",
        "security": security,
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": _NO_NUL},
            _whole_parameter("limit", 1, 10_000, 1000),
            _whole_parameter("offset", 0, 10**9, 0),
        ],
        "responses": {
            "200": _json("FoldDetail", "the folded messages"),
            "400": _json(
                "ErrorAnswer", "the id holds a NUL, limit or offset out of range, or unknown"
            ),
            "404": _json("ErrorAnswer", "no such summary, or none folded into it"),
            **_operator_refusals(),
        },
    }


_APPROVAL_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the request's id, or a start of it naming one request (4 characters or more)",
    "schema": _NO_NUL,
}


def _approvals(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "listApprovals",
        "tags": ["approvals"],
        "summary": "Approval requests, newest first (the pending ones by default)",
        "security": security,
        "parameters": [
            _query("state", "only requests in this state; `all`: any", _STATE),
            _whole_parameter("limit", 1, 1000, 50),
        ],
        "responses": {
            "200": _json("ApprovalList", "the requests"),
            "400": _json(
                "ErrorAnswer", "an unknown state, limit not from 1 to 1000, or an unknown parameter"
            ),
            **_operator_refusals(),
        },
    }


_STATE = {"type": "string", "enum": list(APPROVAL_STATES), "default": "pending"}


def _approval(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "showApproval",
        "tags": ["approvals"],
        "summary": "One approval request: its change, what it shows, and every answer to it",
        "security": security,
        "parameters": [_APPROVAL_ID],
        "responses": {
            "200": _json("ApprovalDetail", "the request"),
            "400": _json("ErrorAnswer", "the id holds a NUL character, or an unknown parameter"),
            "404": _json("ErrorAnswer", "no such request, or the start of more than one id"),
            **_operator_refusals(),
        },
    }


def _answer(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    refusals = _operator_refusals()
    refusals["403"] = _json(
        "ErrorAnswer",
        f"{refusals['403']['description']}; or the caller is not an approver of the request"
        " (approve, reject): the refusal is recorded among its answers",
    )
    return {
        "operationId": "answerApproval",
        "tags": ["approvals"],
        "summary": "Approve, reject or cancel an approval request, as the caller",
        "description": "Approve and reject are for the request's approvers, cancel for any"
        " operator; each needs the operator role. One person gives one approval: a second is"
        f" answered 200 with `counted` false and `why`. A note is at most {MAX_NOTE}"
        " characters.",
        "security": security,
        "parameters": [
            _APPROVAL_ID,
            {
                "name": "X-Remediator-Client",
                "in": "header",
                "required": False,
                "description": "`cli`: the audit records the answer as given through the"
                " command line (any other value, or none: through the API)",
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _ref("AnswerRequest")}}},
        },
        "responses": {
            "200": _json("ApprovalAnswered", "the request after the answer"),
            "400": _json(
                "ErrorAnswer",
                "the body is not a JSON object of a known decision and a note, names a field"
                " this API does not know, or an unknown parameter",
            ),
            "404": _json("ErrorAnswer", "no such request, or the start of more than one id"),
            "409": _json(
                "ErrorAnswer",
                "the request is no longer pending, or past its expiry: the answer is recorded"
                " as refused",
            ),
            "413": _json("ErrorAnswer", "body over REMEDIATOR_MAX_BODY_BYTES"),
            **refusals,
        },
    }


def _slack_interactions() -> dict[str, Any]:
    signed = "Slack's v0 signature of the request, with REMEDIATOR_SLACK_SIGNING_SECRET"
    return {
        "operationId": "slackInteraction",
        "tags": ["approvals"],
        "summary": "Slack's Interactivity Request URL: a click on Approve or Reject",
        "description": "Signed by Slack (v0: HMAC-SHA256 of `v0:<timestamp>:<body>`): an"
        " unsigned, forged, stale (over 5 minutes) or replayed request is refused and recorded"
        " in the audit log. A click is one answer to the approval request its value names;"
        " the message is then updated through the payload's response_url.",
        "security": [],
        "parameters": [
            {"name": "X-Slack-Signature", "in": "header", "required": True, "schema": _NO_NUL},
            {
                "name": "X-Slack-Request-Timestamp",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": signed,
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["payload"],
                        "properties": {
                            "payload": {
                                "type": "string",
                                "description": "Slack's interaction payload, JSON",
                            }
                        },
                    }
                }
            },
        },
        "responses": {
            "200": {"description": "taken (or an interaction not for Remediator): no body"},
            "400": _json("ErrorAnswer", "not a form with Slack's JSON payload"),
            "401": _json("ErrorAnswer", "unsigned, forged, stale or replayed"),
            "404": _json("ErrorAnswer", "Slack interactivity is not configured"),
            "408": _json("ErrorAnswer", "the body did not arrive in time"),
            "413": _json("ErrorAnswer", "body over REMEDIATOR_MAX_BODY_BYTES"),
            "415": _json("ErrorAnswer", "not application/x-www-form-urlencoded"),
            "503": _json("ErrorAnswer", "the store cannot be reached: click again"),
        },
    }


def _demotions(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "listDemotions",
        "tags": ["approvals"],
        "summary": "Policies demoted to asking first (in force, or promoted since)",
        "security": security,
        "responses": {
            "200": _json("DemotionList", "the demotions"),
            "400": _json("ErrorAnswer", "an unknown parameter"),
            **_operator_refusals(),
        },
    }


def _promote(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "operationId": "promotePolicy",
        "tags": ["approvals"],
        "summary": "End a policy's demotion: its changes no longer ask first",
        "description": "Recorded in the audit log with the caller's identity; the policy's"
        " ledger counts afresh from now. `promoted` is false when it was not demoted.",
        "security": security,
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "the policy's name",
                "schema": _NO_NUL,
            }
        ],
        "responses": {
            "200": _json("PromoteAnswer", "the policy, and whether it was demoted"),
            "400": _json("ErrorAnswer", "the name holds a NUL character, or an unknown parameter"),
            "404": _json("ErrorAnswer", "no policy of that name in force"),
            **_operator_refusals(),
        },
    }
