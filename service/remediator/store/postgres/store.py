"""The production store: every role over one asyncpg pool, shared by every replica."""

from __future__ import annotations

from remediator.store.portable import PortableBacklog, PortableControlState
from remediator.store.postgres.alert_log import PostgresAlertLog
from remediator.store.postgres.approvals import PostgresApprovals
from remediator.store.postgres.budgets import PostgresBudgets
from remediator.store.postgres.connection import PostgresConnection
from remediator.store.postgres.event_queue import PostgresEventQueue
from remediator.store.postgres.outbox import PostgresOutbox
from remediator.store.postgres.retention import PostgresRetention
from remediator.store.postgres.run_ledger import PostgresRunLedger


class PostgresStore(
    PostgresAlertLog,
    PostgresApprovals,
    PostgresEventQueue,
    PostgresRunLedger,
    PortableControlState,
    PortableBacklog,
    PostgresOutbox,
    PostgresBudgets,
    PostgresRetention,
    PostgresConnection,
):
    """PostgreSQL for several replicas: claims, wake-ups and migrations they share safely."""
