"""Prometheus metrics, in a registry per application so tests and replicas never share one.

Each part is handed the group it counts in (the intake its own, the guards theirs, ...), not
the whole application's metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER_ALERTNAME = "other"
"""The `alertname` label of every alert no live policy names: the label set stays bounded."""


OTHER_POLICY = "other"
"""The `policy` label of a run of a policy no longer in the live set."""


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


class RunMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.policy_runs = Counter(
            "remediator_policy_runs",
            "Firing remediations of a policy that ended, by policy (one of the live set, or"
            " other) and outcome (succeeded, failed, blocked, ...)",
            ["policy", "outcome"],
            registry=registry,
        )


class WatchMetrics:
    """The service's backlog, read from the store at each scrape (the same on every replica:
    aggregate with max, not sum)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events_pending = Gauge(
            "remediator_events_pending", "Alert state changes queued, not yet handled",
            registry=registry,
        )  # fmt: skip
        self.oldest_event_age = Gauge(
            "remediator_events_oldest_pending_seconds",
            "Age of the oldest alert state change not yet handled (0: none)",
            registry=registry,
        )
        self.messages_unsent = Gauge(
            "remediator_messages_unsent",
            "Messages due to a channel and not yet sent (retries included), by channel",
            ["channel"],
            registry=registry,
        )
        self.oldest_message_age = Gauge(
            "remediator_messages_oldest_unsent_seconds",
            "How long the oldest unsent message of a channel has been due (0: none)",
            ["channel"],
            registry=registry,
        )
        self.runs_in_flight = Gauge(
            "remediator_runs_in_flight",
            "Remediations under way, by state: waiting, running, verifying, awaiting_approval",
            ["state"],
            registry=registry,
        )
        self.paused = Gauge(
            "remediator_paused", "1 while the kill switch is on, else 0", registry=registry
        )
        self.paused_age = Gauge(
            "remediator_paused_seconds",
            "How long the kill switch has been on (0: off)",
            registry=registry,
        )
        self.refresh_errors = Counter(
            "remediator_watch_refresh_errors",
            "Scrapes whose backlog could not be read from the store (the gauges kept their"
            " previous values)",
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
        self.runs = RunMetrics(self.registry)
        self.watch = WatchMetrics(self.registry)
