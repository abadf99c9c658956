"""The embedded store: every role over one SQLite connection."""

from __future__ import annotations

from remediator.store.portable import PortableBacklog, PortableControlState
from remediator.store.sqlite.alert_log import SQLiteAlertLog
from remediator.store.sqlite.approvals import SQLiteApprovals
from remediator.store.sqlite.budgets import SQLiteBudgets
from remediator.store.sqlite.connection import SQLiteConnection
from remediator.store.sqlite.event_queue import SQLiteEventQueue
from remediator.store.sqlite.outbox import SQLiteOutbox
from remediator.store.sqlite.retention import SQLiteRetention
from remediator.store.sqlite.run_ledger import SQLiteRunLedger


class SQLiteStore(
    SQLiteAlertLog,
    SQLiteApprovals,
    SQLiteEventQueue,
    SQLiteRunLedger,
    PortableControlState,
    PortableBacklog,
    SQLiteOutbox,
    SQLiteBudgets,
    SQLiteRetention,
    SQLiteConnection,
):
    """One SQLite file for a single process: the embedded default."""
