"""Real services a test needs: a free port, Postgres' DSN, and what to do when one is missing.

On a developer's machine without a service the tests that need it skip and say how to get it;
with CI=true (as .ci/run sets) they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

POSTGRES_ADMIN_DSN = os.environ.get("REMEDIATOR_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def missing_service(what: str, how: str) -> None:
    """Skip a test whose service is absent, or fail it in CI where the service must be."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A DSN whose search_path is a schema of its own, dropped afterwards. A missing server
    skips (fails in CI)."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5, command_timeout=30)
    except (OSError, asyncpg.PostgresError) as exc:
        missing_service(
            f"PostgreSQL at {POSTGRES_ADMIN_DSN} ({exc})",
            "start one with trust auth and a database `test`, or set REMEDIATOR_TEST_POSTGRES",
        )
    schema = f"t_{uuid.uuid4().hex[:16]}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_ADMIN_DSN}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
