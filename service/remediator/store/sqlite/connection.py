"""The embedded store's connection: one SQLite file, in WAL mode with synchronous=FULL.

Each transaction runs whole on one dedicated thread, so a notification of 100 alerts is one
hop off the event loop rather than one per statement, and writes never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from remediator.store.portable import Database
from remediator.store.roles import StoreUnavailable
from remediator.store.rows import Row
from remediator.store.sqlite.migrate import connect

T = TypeVar("T")


class SQLiteConnection(Database):
    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._connection = connection
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> Self:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, connect, path)
        except sqlite3.Error as exc:
            executor.shutdown()
            raise StoreUnavailable(f"cannot open SQLite database {path}: {exc}") from exc
        return cls(connection, executor)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("SQLite store is closed")
        loop = asyncio.get_running_loop()
        try:
            # Shielded: a cancelled request must not abandon a transaction half-way.
            return await asyncio.shield(
                loop.run_in_executor(self._executor, work, self._connection)
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {type(exc).__name__}: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        statement, values = qmarks(sql), bound(args)
        return await self._run(lambda db: db.execute(statement, values).fetchall())

    async def _execute(self, sql: str, *args: Any) -> None:
        statement, values = qmarks(sql), bound(args)
        await self._run(lambda db: db.execute(statement, values))

    async def _claim(self, sql: str, *args: Any) -> list[Row]:
        statement, values = qmarks(sql), bound(args)

        def claim(db: sqlite3.Connection) -> list[Row]:
            with transaction(db):  # the write lock at once: one claimer at a time
                return db.execute(statement, values).fetchall()

        return await self._run(claim)

    def _ids(self, ids: Collection[int]) -> object:
        return json.dumps(list(ids))

    def _texts(self, texts: Collection[str]) -> object:
        return json.dumps(list(texts))

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if not self._closed:
            await self._run(lambda db: db.close())
            self._closed = True
            self._executor.shutdown()


@functools.cache
def qmarks(sql: str) -> str:
    """PostgreSQL's `$1` placeholders as SQLite's `?1`."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


def bound(values: Sequence[Any]) -> tuple[Any, ...]:
    """The values as SQLite stores them: a time as fixed-format UTC text."""
    return tuple(iso(value) if isinstance(value, datetime) else value for value in values)


def iso(moment: datetime) -> str:
    """UTC in one fixed format, so equal instants are equal keys and text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock at once: no upgrade to fail half-way) to COMMIT, or
    ROLLBACK on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
