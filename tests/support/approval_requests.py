"""Approval requests as a run leaves them, and the API identities that answer them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from remediator.alerts import Notification
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary
from remediator.store import AlertEvent, ApprovalRequest, Remediation, Store
from tests.support.webhooks import webhook, webhook_alert

ALICE, BOB, MALLORY, VERA = "alice@example.com", "bob@example.com", "mallory@example.com", "vera"
# Each user's bearer token: the users file holds only its SHA-256.
TOKENS = {ALICE: "alice-token", BOB: "bob-token", MALLORY: "mallory-token", VERA: "vera-token"}
ROLES = {ALICE: "operator", BOB: "operator", MALLORY: "operator", VERA: "viewer"}


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def write_users(path: Path, users: dict[str, str] | None = None) -> Path:
    """A users file of `users` (name: role), alice, bob, mallory and vera by default."""
    listed = [
        {"name": name, "role": role, "token_sha256": sha256(TOKENS[name])}
        for name, role in (users or ROLES).items()
    ]
    path.write_text(yaml.safe_dump({"users": listed}))
    return path


async def handled_event(store: Store, fingerprint: str, at: datetime) -> AlertEvent:
    """An alert's firing event, taken in by the store's intake, claimed and done: what a run
    that stopped to ask for approval leaves behind."""
    alert = webhook_alert(
        {"alertname": "ApplicationDown", "instance": fingerprint},
        fingerprint=fingerprint,
        starts_at=at.isoformat(),
    )
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", at)
    [event] = await store.claim_events("worker-1", at, at + timedelta(minutes=1), 10)
    await store.complete_events([event.id], "worker-1", at)
    return event


def request_for(
    event: AlertEvent,
    approval_id: str,
    *,
    at: datetime,
    approvers: tuple[str, ...] = (ALICE, BOB),
    min_approvals: int = 1,
    ttl: timedelta = timedelta(minutes=15),
    remediation_id: str | None = None,
) -> ApprovalRequest:
    """A pending request, of run `run-<id>` unless given, to restart a deployment."""
    return ApprovalRequest(
        id=approval_id,
        remediation_id=remediation_id or f"run-{approval_id}",
        event_id=event.id,
        fingerprint=event.fingerprint,
        starts_at=event.starts_at,
        alertname="ApplicationDown",
        policy="application-down",
        position=1,
        step="restart",
        action="kubernetes.rollout_restart",
        target="Deployment/prod/api",
        params={"namespace": "prod", "name": "api"},
        digest="9f" * 32,
        approvers=approvers,
        min_approvals=min_approvals,
        on_timeout="reject",
        requested_at=at,
        expires_at=at + ttl,
        shown={
            "change": "would restart deployment prod/api",
            "diagnostics": {"health": "answered 503"},
            "guards": {"rate_limit": "1 of 2 left per 3600s"},
        },
    )


async def pending_request(
    store: Store,
    approval_id: str,
    *,
    approvers: tuple[str, ...] = (ALICE, BOB),
    min_approvals: int = 1,
    requested_at: datetime | None = None,
    ttl: timedelta = timedelta(minutes=15),
) -> ApprovalRequest:
    """`request_for`, stored after its alert and event."""
    at = requested_at or datetime.now(UTC)
    event = await handled_event(store, f"fp-{approval_id}", at)
    request = request_for(
        event, approval_id, at=at, approvers=approvers, min_approvals=min_approvals, ttl=ttl
    )
    await store.request_approval(request)
    return request


def waiting_run(request: ApprovalRequest) -> Remediation:
    """The run that stopped to ask `request`, as it waits."""
    return Remediation(
        id=request.remediation_id,
        event_id=request.event_id,
        fingerprint=request.fingerprint,
        starts_at=request.starts_at,
        alertname=request.alertname,
        kind="firing",
        policy=request.policy,
        policy_revision="abc123",
        outcome=RunOutcome.AWAITING_APPROVAL,
        guard=None,
        reason=f"{request.step} needs approval: waiting for {request.id}",
        run_id=f"guard-{request.id}",
        target=request.target,
        plan=PlanSummary(target=request.target, steps=(request.action,)),
        started_at=request.requested_at,
    )
