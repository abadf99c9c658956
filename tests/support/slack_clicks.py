"""Slack's side of a button click, as the tests send it: a block_actions payload in a form,
signed as Slack signs (https://api.slack.com/authentication/verifying-requests-from-slack), and
an approval request waiting in the store for it.

The signing is written here from Slack's documentation, apart from the service's own check, so
that the service cannot pass by agreeing with itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from remediator.alerts import Notification
from remediator.engine.outcome import RunOutcome
from remediator.engine.summary import PlanSummary
from remediator.store import ApprovalRequest, Remediation, Store
from tests.support.approval_requests import request_for
from tests.support.webhooks import webhook, webhook_alert

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the shape of Slack's example secret


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with `body`: its timestamp and v0 signature."""
    sent = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{sent}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": sent,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def click_body(
    user: str,
    action_id: str,
    approval_id: str,
    response_url: str,
    *,
    blocks: list[dict[str, Any]] | None = None,
) -> bytes:
    """The form Slack posts when `user` clicks a button of a message that has `blocks`."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0001"},
        "api_app_id": "A0001",
        "team": {"id": "T0001", "domain": "example"},
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.{uuid.uuid4().hex}",
        "channel": {"id": "C0001", "name": "incidents"},
        "message": {"type": "message", "text": "…", "blocks": blocks or []},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "remediator_approval_actions",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": approval_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def pending_approval(
    store: Store, approvers: tuple[str, ...], min_approvals: int = 1
) -> ApprovalRequest:
    """A run stopped before a rollout restart, its request pending for 15 minutes: after the
    alert, its event and the run that asks are in the store."""
    now = datetime.now(UTC)
    starts = now - timedelta(minutes=3)
    fingerprint = uuid.uuid4().hex[:16]
    labels = {"alertname": "ApplicationDown", "namespace": "prod", "deployment": "api"}
    alert = webhook_alert(labels, fingerprint=fingerprint, starts_at=starts.isoformat())
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", now)
    [event] = [e for e in await store.pending_events(100) if e.fingerprint == fingerprint]
    run = Remediation(
        id=str(uuid.uuid4()),
        event_id=event.id,
        fingerprint=fingerprint,
        starts_at=starts,
        alertname="ApplicationDown",
        kind="firing",
        policy="application-down",
        policy_revision=None,
        outcome=RunOutcome.AWAITING_APPROVAL,
        guard=None,
        reason="waits for approval of kubernetes.rollout_restart",
        run_id=None,
        target="Deployment/prod/api",
        plan=PlanSummary(target="deployment prod/api", steps=("kubernetes.rollout_restart",)),
        started_at=now,
    )
    await store.save_remediation(run)
    request = request_for(
        event,
        str(uuid.uuid4()),
        at=now,
        approvers=approvers,
        min_approvals=min_approvals,
        remediation_id=run.id,
    )
    await store.request_approval(request)
    return request
