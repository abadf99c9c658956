"""Prometheus metrics, in a registry per application so tests and replicas never share one.

Each part is handed the group it counts in (the intake its own, the guards theirs, ...), not
the whole application's metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER_ALERTNAME = "other"
"""The `alertname` label of every alert no live policy names: the label set stays bounded."""


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications_received = Counter(
            "remediator_notifications_received",
            "Webhook notifications stored, by the group's status",
            ["status"],
            registry=registry,
        )
        self.alerts_received = Counter(
            "remediator_alerts_received",
            "Alerts stored, by their own status and alertname (one a live policy names, or other)",
            ["status", "alertname"],
            registry=registry,
        )
        self.alert_duplicates = Counter(
            "remediator_alert_duplicates",
            "Alert states delivered again (repeat_interval, HA peers), stored but not queued",
            registry=registry,
        )
        self.intake_requests = Counter(
            "remediator_intake_requests",
            "Intake requests answered, by HTTP status code",
            ["code"],
            registry=registry,
        )
        self.intake_duration = Histogram(
            "remediator_intake_duration_seconds",
            "Intake latency from receipt to answer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.store_errors = Counter(
            "remediator_store_errors",
            "Store operations that failed, by operation",
            ["operation"],
            registry=registry,
        )


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.policy_reloads = Counter(
            "remediator_policy_reloads",
            "Policy reloads, by outcome (ok, or failed: the previous set stayed live)",
            ["outcome"],
            registry=registry,
        )
        self.policies_loaded = Gauge(
            "remediator_policies_loaded", "Policies in the live set", registry=registry
        )


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.guard_decisions = Counter(
            "remediator_guard_decisions",
            "Remediations through the guards: admitted, or the guard that blocked them",
            ["guard"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "remediator_breaker_transitions",
            "Circuit breaker state changes, by the state entered",
            ["state"],
            registry=registry,
        )


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications_sent = Counter(
            "remediator_notifications_sent",
            "Escalation messages by channel and result: sent, retried, failed",
            ["channel", "result"],
            registry=registry,
        )
        self.notifications_folded = Counter(
            "remediator_notifications_folded",
            "Escalation messages folded into a summary past their channel's budget, by level",
            ["channel", "level"],
            registry=registry,
        )


class Metrics:
    """One application's metrics: its registry (what /metrics exposes) and each part's group."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.intake = IntakeMetrics(self.registry)
        self.policies = PolicyMetrics(self.registry)
        self.guards = GuardMetrics(self.registry)
        self.notify = NotifyMetrics(self.registry)
