"""The durable store: alerts, their state changes, the runs and remediations, the outbox.

A Protocol a role (`roles`: the alert log, the event queue, the run ledger, control state, the
outbox, retention) and `Store`, all of them; two backends chosen by the database URL
(`backends`): SQLite for the embedded default, PostgreSQL for several replicas.
"""

from remediator.store.backends import open_store
from remediator.store.records import (
    AlertEvent,
    AlertRecord,
    AuditEntry,
    Backlog,
    ChannelBacklog,
    Fold,
    FoldedMessage,
    IntakeResult,
    OutboxEntry,
    Pause,
    Remediation,
    RunMessage,
    RunQuery,
    RunRecord,
    StepRecord,
)
from remediator.store.roles import (
    AlertLog,
    BudgetLedger,
    ControlState,
    EventQueue,
    Outbox,
    Retention,
    RunLedger,
    Store,
    StoreUnavailable,
    Watch,
)

__all__ = [
    "AlertEvent",
    "AlertLog",
    "AlertRecord",
    "AuditEntry",
    "Backlog",
    "BudgetLedger",
    "ChannelBacklog",
    "ControlState",
    "EventQueue",
    "Fold",
    "FoldedMessage",
    "IntakeResult",
    "Outbox",
    "OutboxEntry",
    "Pause",
    "Remediation",
    "Retention",
    "RunLedger",
    "RunMessage",
    "RunQuery",
    "RunRecord",
    "StepRecord",
    "Store",
    "StoreUnavailable",
    "Watch",
    "open_store",
]
