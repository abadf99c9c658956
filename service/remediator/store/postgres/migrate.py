"""The migrations not yet applied, once however many replicas start together."""

from __future__ import annotations

import asyncpg

from remediator.store.migrations import migrations

# Any number, the same in every replica: migrations run under this advisory lock.
_MIGRATION_LOCK = 0x72656D6564


async def migrate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as db, db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
        )
        applied = {
            row["version"] for row in await db.fetch("SELECT version FROM schema_migrations")
        }
        for migration in migrations("postgres"):
            if migration.version not in applied:
                await db.execute(migration.sql)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, now())",
                    migration.version,
                    migration.name,
                )
