"""Opening the SQLite file: its settings, and the migrations not yet applied."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from remediator.store.migrations import migrations


def connect(path: Path) -> sqlite3.Connection:
    _create_private(path)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout=5000")  # first: another process may be migrating
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    migrate(connection)
    return connection


def _create_private(path: Path) -> None:
    """A new database file is created readable and writable by its owner only (0600): it
    holds raw webhook bodies. SQLite gives the -wal and -shm files the mode of the database
    file. An existing file keeps the mode it has (chmod 600 it by hand)."""
    if str(path) == ":memory:":
        return
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # a missing folder, no permission: opening it says so, as it did before
    os.close(descriptor)  # an empty file is an empty database


def migrate(db: sqlite3.Connection) -> None:
    """Under the database's write lock, taken before reading what is applied: processes
    starting together (`remediator migrate` beside `serve`) apply each migration once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for migration in migrations("sqlite"):
            if migration.version not in applied:
                for statement in statements(migration.sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                    (migration.version, migration.name),
                )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def statements(script: str) -> list[str]:
    """A migration's statements one by one (executescript would commit our transaction)."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        raise ValueError(f"unterminated statement in a migration: {pending.strip()[:80]!r}")
    return found
