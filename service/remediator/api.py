"""The operator API: the kill switch, the guards' state and the remediation history, behind
REMEDIATOR_API_TOKEN.

Closed (403) until a token is set: pausing and resuming remediation is not for whoever can
reach the port, and the webhook's credentials, which Alertmanager holds, do not open it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from remediator.auth import WebhookAuth
from remediator.guards.base import GuardsUnavailable, Snapshot
from remediator.guards.gate import Guards
from remediator.policy_reload import LivePolicies
from remediator.store import Pause, Remediation, StepRecord, Store, StoreUnavailable


class OperatorApi:
    def __init__(
        self, store: Store, guards: Guards, policies: LivePolicies, token: str | None
    ) -> None:
        self._store = store
        self._guards = guards
        self._policies = policies
        self._auth = WebhookAuth.bearer(token)
        self._open = token is not None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/guards", self.guards),
            web.post("/api/v1/pause", self.pause),
            web.post("/api/v1/resume", self.resume),
            web.get("/api/v1/runs", self.runs),
            web.get("/api/v1/runs/{id}", self.run),
        ]

    async def runs(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise _bad_request("limit must be a whole number") from None
        if not 1 <= limit <= 1000:
            raise _bad_request("limit must be from 1 to 1000")
        alertname = request.query.get("alertname")
        try:
            found = await self._store.list_remediations(limit, alertname)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        return web.json_response({"runs": [remediation_json(r) for r in found]})

    async def run(self, request: web.Request) -> web.Response:
        self._authorize(request)
        remediation_id = request.match_info["id"]
        try:
            found = await self._store.remediation(remediation_id)
            steps = await self._store.steps(remediation_id) if found else []
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        if found is None:
            raise web.HTTPNotFound(reason=f"no run {remediation_id!r}")
        return web.json_response(
            remediation_json(found) | {"steps": [step_json(step) for step in steps]}
        )

    async def guards(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            paused = await self._guards.paused()
            snapshot = await self._guards.snapshot(self._policies.current)
        except (GuardsUnavailable, StoreUnavailable) as exc:
            raise _unavailable(exc) from exc
        return web.json_response(
            {"paused": _pause(paused), **_snapshot(snapshot)}
            | {"max_concurrent_runs": self._policies.current.guardrails.max_concurrent_runs}
        )

    async def pause(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await _json_object(request)
        reason = body.get("reason") or "paused through the API"
        by = body.get("by") or request.remote or "api"
        if not isinstance(reason, str) or not isinstance(by, str):
            raise _bad_request("reason and by must be strings")
        try:
            pause = await self._guards.pause(reason, by)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        return web.json_response({"paused": _pause(pause)})

    async def resume(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await _json_object(request)
        by = body.get("by") or request.remote or "api"
        if not isinstance(by, str):
            raise _bad_request("by must be a string")
        try:
            await self._guards.resume(by)
        except StoreUnavailable as exc:
            raise _unavailable(exc) from exc
        return web.json_response({"paused": None})

    def _authorize(self, request: web.Request) -> None:
        if not self._open:
            raise web.HTTPForbidden(reason="the operator API is closed: set REMEDIATOR_API_TOKEN")
        if not self._auth.allows(request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(
                reason="missing or wrong bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="remediator"'},
            )


async def _json_object(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad_request(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=reason)


def _unavailable(exc: Exception) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(reason=f"guard state unavailable: {exc}")


def remediation_json(remediation: Remediation) -> dict[str, Any]:
    r = remediation
    return {
        "id": r.id,
        "alertname": r.alertname,
        "fingerprint": r.fingerprint,
        "startsAt": r.starts_at.isoformat(),
        "event": r.kind,
        "policy": r.policy,
        "policyRevision": r.policy_revision,
        "outcome": r.outcome,
        "guard": r.guard,
        "reason": r.reason,
        "run": r.run_id,
        "target": r.target,
        "plan": r.plan,
        "started": r.started_at.isoformat(),
        "verifyUntil": r.verify_until.isoformat() if r.verify_until else None,
        "finished": r.finished_at.isoformat() if r.finished_at else None,
    }


def step_json(step: StepRecord) -> dict[str, Any]:
    return {
        "phase": step.phase,
        "position": step.position,
        "id": step.step_id,
        "action": step.action,
        "outcome": step.outcome,
        "message": step.message,
        "data": step.data,
        "attempts": step.attempts,
        "started": step.started_at.isoformat(),
        "finished": step.finished_at.isoformat(),
    }


def _pause(pause: Pause | None) -> dict[str, str] | None:
    if pause is None:
        return None
    return {"reason": pause.reason, "by": pause.paused_by, "at": pause.paused_at.isoformat()}


def _snapshot(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "breakers": [
            {
                "key": key,
                "state": view.state.value,
                "recent_failures": view.recent_failures,
                "opened_at": view.opened_at,
                "trial_until": view.trial_until,
            }
            for key, view in sorted(snapshot.breakers.items())
        ],
        "rate_limits": [
            {
                "key": key,
                "windows": [
                    {
                        "max": budget.window.max,
                        "per_seconds": budget.window.per,
                        "used": budget.used,
                        "remaining": budget.remaining,
                    }
                    for budget in budgets
                ],
            }
            for key, budgets in sorted(snapshot.budgets.items())
        ],
        "leases": [
            {
                "target": lease.target,
                "run": lease.owner,
                "token": lease.token,
                "expires_in_seconds": round(lease.expires_at - snapshot.now, 1),
            }
            for lease in snapshot.leases
        ],
        "runs_in_flight": snapshot.runs_in_flight,
    }
