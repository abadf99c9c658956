"""The durable store: alerts, their state changes, the raw notifications and the event queue.

One small interface, two implementations chosen by the database URL: SQLite for the embedded
default, PostgreSQL for several replicas.
"""

from remediator.store.base import (
    AlertEvent,
    AlertRecord,
    AuditEntry,
    IntakeResult,
    OutboxEntry,
    Pause,
    Remediation,
    RunRecord,
    StepRecord,
    Store,
    StoreUnavailable,
)
from remediator.store.opening import open_store

__all__ = [
    "AlertEvent",
    "AlertRecord",
    "AuditEntry",
    "IntakeResult",
    "OutboxEntry",
    "Pause",
    "Remediation",
    "RunRecord",
    "StepRecord",
    "Store",
    "StoreUnavailable",
    "open_store",
]
