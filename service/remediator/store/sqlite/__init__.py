"""The embedded store, SQLite: a module a role, over one connection (`connection`)."""

from remediator.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
