"""The production store's channel budgets: slots taken by one replica each, folds."""

from __future__ import annotations

from remediator.store import statements
from remediator.store.portable import PortableBudgets
from remediator.store.postgres.connection import PostgresConnection


class PostgresBudgets(PortableBudgets, PostgresConnection):
    _TAKE_SLOT = statements.take_slot(lock="FOR UPDATE SKIP LOCKED")
    _FIELD = "message->>'{}'"
    _FOLD = statements.fold("SELECT unnest($1::text[])")
