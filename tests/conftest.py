"""Fixtures for real services: Postgres, the Alertmanager binary, and the service itself; and
the fixtures the tests of several modules share (their code is in tests/support/).

On a developer's machine without a service the tests that need it skip and say how to get it;
with CI=true (as .ci/run sets) they fail instead.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

from remediator.actions.kubernetes import KubernetesActions
from remediator.config import Settings
from remediator.metrics import Metrics
from remediator.policy.loader import load_policies
from remediator.policy.policyset import PolicySet
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import Parts
from remediator.store import Store, open_store
from tests.support.alertmanager import (
    ALERTMANAGER_CONFIG,
    find_alertmanager,
    running_alertmanager,
)
from tests.support.cluster import Cluster, open_cluster
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import PD_ACCEPTED, Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES, STAND_INS_ALLOWED
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess
from tests.support.services import free_port, missing_service, postgres_schema
from tests.support.world import POLICY, World, open_world, write_policies


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
    async with postgres_schema() as dsn:
        yield dsn


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
    return LivePolicies.load(SHIPPED_POLICIES, Metrics().policies)


@pytest.fixture
async def client(
    settings: Settings, store: Store, live_policies: LivePolicies
) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(
        TestServer(Parts.of(settings, store, live_policies, Metrics()).application())
    ) as test_client:
        yield test_client


@pytest.fixture
def alertmanager_binary() -> str:
    return find_alertmanager()


# Shared by the tests of several modules.


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    return load_policies(SHIPPED_POLICIES)


@pytest.fixture
def policy() -> str:
    return POLICY


@pytest.fixture
def guardrails() -> str:
    return STAND_INS_ALLOWED


@pytest.fixture
async def world(store: Store, tmp_path: Path, policy: str, guardrails: str) -> AsyncIterator[World]:
    """A runner over `policy` and `guardrails` (the module's own, if it has them) and the
    shipped matrix."""
    directory = write_policies(tmp_path / "policies", policy, guardrails)
    async with open_world(store, directory) as world:
        yield world


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """A namespace on the fake API server, or on the cluster of REMEDIATOR_TEST_KUBECONFIG."""
    async with open_cluster() as opened:
        yield opened


@pytest.fixture
def actions(cluster: Cluster) -> KubernetesActions:
    return KubernetesActions(cluster.api, poll_interval=0.01 if cluster.fake else 0.5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("the redis-server binary", "install it with `apt-get install redis-server`")
    assert binary is not None
    server = RedisServer(binary, free_port(), tmp_path / "redis.log")
    yield server
    server.stop()


@pytest.fixture
async def pagerduty_api() -> AsyncIterator[Recorder]:
    recorder = Recorder(Answer(202, PD_ACCEPTED))
    await recorder.start()
    yield recorder
    await recorder.close()


@pytest.fixture
async def slack_api() -> AsyncIterator[Recorder]:
    recorder = Recorder(Answer(200, "ok"))
    await recorder.start()
    yield recorder
    await recorder.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        server_hostname="smtp.test",
        authenticator=box.authenticate,
        auth_require_tls=False,  # AUTH offered over plain text: this is loopback
    )
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def alertmanager(
    alertmanager_binary: str, service: ServiceProcess, tmp_path: Path
) -> Iterator[str]:
    """A real Alertmanager posting to the `service` of the module that asks for it."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(url=service.url))
    with running_alertmanager(alertmanager_binary, config, tmp_path) as url:
        yield url
