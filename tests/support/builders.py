"""Builders of the objects tests start from: plans of shipped policies, a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide
from remediator.engine.plan import Plan
from remediator.engine.summary import PlanSummary
from remediator.policy.policyset import PolicySet
from remediator.store import Remediation, StepRecord, Store
from tests.support.clocks import START


def memory_plan(shipped: PolicySet, pod: str = "api-7d9f8b6c5-q8m2z", **labels: str) -> Plan:
    alert = Alert(
        status=AlertStatus.FIRING,
        labels={
            "alertname": "HighMemoryUsage",
            "namespace": "claude-deployment-prod",
            "deployment": "claude-deployment-api",
            "container": "api",
            "pod": pod,
            "severity": "warning",
        }
        | labels,
        annotations={},
        starts_at=datetime(2026, 11, 23, 20, 0, tzinfo=UTC),
        fingerprint="538acb84eff23449",
    )
    plan = decide(alert, shipped, datetime.fromtimestamp(START, UTC))
    assert isinstance(plan, Plan), plan
    return plan


def application_down_plan(shipped: PolicySet, deployment: str) -> Plan:
    """The shipped application-down policy's plan for one deployment (a restart, an undo)."""
    alert = Alert(
        status=AlertStatus.FIRING,
        labels={
            "alertname": "ApplicationDown",
            "namespace": "claude-deployment-prod",
            "deployment": deployment,
            "instance": f"{deployment}.claude-deployment-prod.svc:8080",
            "severity": "critical",
        },
        annotations={},
        starts_at=datetime(2026, 11, 23, 20, 0, tzinfo=UTC),
        fingerprint=f"fp-{deployment}",
    )
    plan = decide(alert, shipped, datetime.fromtimestamp(START, UTC))
    assert isinstance(plan, Plan), plan
    return plan


async def recorded_run(store: Store) -> Remediation:
    started = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    run = Remediation(
        id="run-1",
        event_id=1,
        fingerprint="fp",
        starts_at=started,
        alertname="ApplicationDown",
        kind="firing",
        policy="application-down",
        policy_revision="abc123",
        outcome="verifying",
        guard=None,
        reason="waiting up to 10m for the alert to resolve",
        run_id="guard-run-1",
        target="Deployment/prod/api",
        plan=PlanSummary(target="deployment prod/api", steps=("http.check",)),
        started_at=started,
        verify_until=started + timedelta(minutes=10),
    )
    await store.save_remediation(run)
    await store.record_step(
        StepRecord(
            run.id,
            "steps",
            0,
            "health",
            "http.check",
            "failed",
            "answered 503",
            {"status": 503},
            1,
            started,
            started,
        )
    )
    await store.record_step(
        StepRecord(
            run.id,
            "steps",
            1,
            None,
            "kubernetes.scale",
            "ok",
            "scaled deployment prod/api from 3 to 5",
            {"replicas": 3, "params": {"by": 2, "min_replicas": 1, "max_replicas": 10}},
            1,
            started,
            started,
        )
    )
    return run
