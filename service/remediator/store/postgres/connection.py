"""The production store's connection: an asyncpg pool shared by every request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg

from remediator.store.portable import Database
from remediator.store.postgres.migrate import migrate
from remediator.store.roles import StoreUnavailable
from remediator.store.rows import Row

if TYPE_CHECKING:
    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")
# What a call to the server can fail with: the store is unavailable, for now.
FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
# The name the postgres.* actions never signal: a runbook's clean-up of idle sessions on a
# server that also holds the store leaves the store's own sessions alone.
SESSION = {"application_name": "remediator"}


class PostgresConnection(Database):
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        # The replicas' wake-ups (`wakes`): the listening connection and the NOTIFY sender.
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Lock()  # one listener, however many dispatchers ask at once
        self._waking: asyncio.Task[None] | None = None
        self._wake_again = False

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> Self:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=5,
                timeout=5,
                reset=_keep_session,
                server_settings=SESSION,
            )
            await migrate(pool)
        except FAILURES as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL store: {exc}") from exc
        return cls(pool, dsn)

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        async def in_connection() -> T:
            async with self._pool.acquire(timeout=5) as connection:
                return await work(connection)

        try:
            # Shielded: a cancelled request must not abandon a transaction half-way.
            return await asyncio.shield(in_connection())
        except FAILURES as exc:
            raise StoreUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        found = await self._run(lambda db: db.fetch(sql, *args))
        return [tuple(row) for row in found]

    async def _execute(self, sql: str, *args: Any) -> None:
        await self._run(lambda db: db.execute(sql, *args))

    async def _claim(self, sql: str, *args: Any) -> list[Row]:
        return await self._fetch(sql, *args)  # the statement skips rows another holds locked

    def _ids(self, ids: Collection[int]) -> object:
        return list(ids)

    def _texts(self, texts: Collection[str]) -> object:
        return list(texts)

    async def ping(self) -> None:
        await self._run(lambda db: db.fetchval("SELECT 1"))

    async def close(self) -> None:
        if self._waking is not None:
            await self._waking
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._pool.close()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release, which skips asyncpg's default RESET ALL, UNLISTEN * etc.

    That default is one more round trip for every request, and there is nothing to reset: the
    store's statements set no session state (no SET, LISTEN, cursors or session advisory
    locks). asyncpg still rolls back a transaction left open before calling this.
    """
