"""Fixtures for real services: Postgres, the Alertmanager binary, and the service itself.

On a developer's machine without a service the tests that need it skip and say how to get it;
with CI=true (as .ci/run sets) they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from remediator.app import build_app
from remediator.config import Settings
from remediator.metrics import Metrics
from remediator.policy_reload import LivePolicies
from remediator.store import Store, open_store

SAMPLES = Path(__file__).resolve().parent / "samples"
SHIPPED_POLICIES = Path(__file__).resolve().parents[1] / "policies"
# The shipped policies, the severity matrix and the guard rails aside.
SHIPPED_POLICY_COUNT = len(list(SHIPPED_POLICIES.glob("*.yaml"))) - 2
POSTGRES_ADMIN_DSN = os.environ.get("REMEDIATOR_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def missing_service(what: str, how: str) -> None:
    """Skip a test whose service is absent, or fail it in CI where the service must be."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def sample(name: str) -> dict[str, Any]:
    """The webhook body of a payload captured from Alertmanager 0.25."""
    body: dict[str, Any] = json.loads((SAMPLES / name).read_text())["body"]
    return body


def sample_names() -> list[str]:
    return sorted(path.name for path in SAMPLES.glob("*.json"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A test that configures logging (the CLI does) binds it to pytest's captured stream,
    which is closed after that test: put structlog's defaults back."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves an asyncio task running behind it."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A DSN whose search_path is a schema of this test's own, dropped afterwards."""
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


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'remediator.db'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, webhook_token="s3cret")


@pytest.fixture
def live_policies() -> LivePolicies:
    return LivePolicies.load(SHIPPED_POLICIES, Metrics())


@pytest.fixture
async def client(
    settings: Settings, store: Store, live_policies: LivePolicies
) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(settings, store, live_policies))) as test_client:
        yield test_client


@pytest.fixture
def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        missing_service(
            "the Alertmanager binary",
            "install it with `apt-get install prometheus-alertmanager`",
        )
    assert found is not None
    return found
