"""The store a database URL names: SQLite for `sqlite:///path`, PostgreSQL otherwise."""

from __future__ import annotations

from pathlib import Path

from remediator.store.roles import Store


async def open_store(database_url: str, *, pool: tuple[int, int] = (1, 10)) -> Store:
    """Open (and migrate) the store; raises StoreUnavailable when it cannot. `pool` is the
    PostgreSQL connection pool's least and most connections."""
    if database_url.startswith("sqlite:///"):
        from remediator.store.sqlite import SQLiteStore

        return await SQLiteStore.open(Path(database_url.removeprefix("sqlite:///")))
    from remediator.store.postgres import PostgresStore

    return await PostgresStore.open(database_url, min_size=pool[0], max_size=pool[1])
