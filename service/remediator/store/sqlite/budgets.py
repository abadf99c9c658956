"""The embedded store's channel budgets: slots taken under its write lock, folds."""

from __future__ import annotations

from remediator.store import statements
from remediator.store.portable import PortableBudgets
from remediator.store.sqlite.connection import SQLiteConnection, qmarks


class SQLiteBudgets(PortableBudgets, SQLiteConnection):
    _TAKE_SLOT = qmarks(statements.take_slot(lock=""))  # under the write lock
    _FIELD = "json_extract(message, '$.{}')"
    _FOLD = qmarks(statements.fold("SELECT value FROM json_each($1)"))  # under the write lock
