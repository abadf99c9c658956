"""Channel budgets in tests: the shipped matrix with budgets of a test's own, and messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import yaml

from remediator.policy.schema import EscalationMatrix
from remediator.store import OutboxEntry
from tests.support.policies import shipped_matrix


def budget_matrix_text(**budgets: str) -> str:
    """The shipped escalation.yaml, each channel named given that budget (`slack="3/1m"`);
    the others keep theirs."""
    matrix = yaml.safe_load(shipped_matrix())
    for channel, budget in budgets.items():
        matrix["channels"][channel]["budget"] = budget
    return yaml.safe_dump(matrix, sort_keys=False)


def budget_matrix(**budgets: str) -> EscalationMatrix:
    return EscalationMatrix.model_validate(yaml.safe_load(budget_matrix_text(**budgets)))


def page(channel: str, alertname: str, *, level: str = "P2", at: float) -> OutboxEntry:
    """A trigger of an incident of its own, as the escalator queues it."""
    when = datetime.fromtimestamp(at, UTC)
    key = f"remediator/alert/{alertname}/{uuid.uuid4().hex}"
    message: dict[str, Any] = {
        "action": "trigger",
        "dedup_key": key,
        "level": level,
        "summary": f"{alertname}: no policy matches",
        "alertname": alertname,
        "status": "firing",
        "labels": {"alertname": alertname},
        "annotations": {},
        "policy": None,
        "target": None,
        "outcome": "no_match",
        "reason": "no policy matches",
        "steps": [],
        "links": {},
    }
    entry_id = f"{int(at * 1e9):016x}-{uuid.uuid4().hex[:12]}"
    return OutboxEntry(entry_id, channel, "trigger", key, None, message, when, when)
