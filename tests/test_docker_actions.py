"""`docker.restart_container` against a fake Engine API served on a unix socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from remediator.actions.base import Outcome, StepContext, StepResult, Transient
from remediator.actions.docker import DockerActions
from remediator.actions.registry import open_actions
from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import CATALOGUE, RENDERED, DockerRestartContainer
from tests.support.fake_docker import FakeDocker, serve_docker

TARGET = RenderedTarget("Application", "claude-manager", None, None, None)


@dataclass
class Engine:
    fake: FakeDocker
    socket: str

    async def restart(
        self, *, dry: bool = False, began: datetime | None = None, **params: Any
    ) -> StepResult:
        model = DockerRestartContainer.model_validate(
            {"socket": self.socket, **params}, context=RENDERED
        )
        context = StepContext(TARGET, dry, began or datetime.now(UTC) - timedelta(seconds=1))
        return await DockerActions().restart_container(model, context)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    fake = FakeDocker()
    async with serve_docker(fake, tmp_path / "docker.sock") as socket:
        yield Engine(fake, socket)


async def test_restarts_the_container_by_its_exact_name(engine: Engine) -> None:
    wanted = engine.fake.add("claude-manager")
    engine.fake.add("claude-manager-old")  # the engine's name filter alone would match it too
    before = wanted.started_at

    result = await engine.restart(name="claude-manager", stop_timeout="20s")

    assert result.outcome is Outcome.OK
    assert result.message == f"restarted container claude-manager ({wanted.id[:12]})"
    assert engine.fake.restarts == [(wanted.id, 20)]
    [container] = result.data["containers"]
    assert container["id"] == wanted.id
    assert container["started_at"] == wanted.started_at != before
    assert container["status"] == "running"


async def test_restarts_a_stopped_container_too(engine: Engine) -> None:
    stopped = engine.fake.add("claude-manager", running=False)
    result = await engine.restart(name="claude-manager")
    assert result.outcome is Outcome.OK
    assert engine.fake.restarts == [(stopped.id, 10)]
    assert stopped.running


async def test_finds_a_compose_service_by_its_labels(engine: Engine) -> None:
    wanted = engine.fake.compose("ops", "claude-manager")
    engine.fake.compose("staging", "claude-manager")  # the same service in another project
    engine.fake.compose("ops", "postgres")
    engine.fake.add(  # `docker compose run claude-manager ...`: a one-off, never restarted
        "ops-claude-manager-run-5f2a",
        {
            "com.docker.compose.project": "ops",
            "com.docker.compose.service": "claude-manager",
            "com.docker.compose.oneoff": "True",
        },
    )

    result = await engine.restart(project="ops", service="claude-manager")

    assert result.outcome is Outcome.OK, result.message
    assert result.message == f"restarted container ops-claude-manager-1 ({wanted.id[:12]})"
    assert engine.fake.restarts == [(wanted.id, 10)]
    [listing] = [r for r in engine.fake.requests if r.startswith("GET /containers/json")]
    query = parse_qs(urlsplit(listing.split(" ", 1)[1]).query)
    assert query["all"] == ["true"]
    assert json.loads(query["filters"][0]) == {
        "label": ["com.docker.compose.project=ops", "com.docker.compose.service=claude-manager"]
    }


async def test_more_matches_than_max_containers_are_refused(engine: Engine) -> None:
    first = engine.fake.compose("ops", "worker", 1)
    second = engine.fake.compose("ops", "worker", 2)

    refused = await engine.restart(project="ops", service="worker")

    assert refused.outcome is Outcome.FAILED
    assert "2 containers are of Compose service 'worker' in project 'ops'" in refused.message
    assert "more than max_containers 1" in refused.message
    assert refused.data["containers"] == ["ops-worker-1", "ops-worker-2"]
    assert engine.fake.restarts == []

    allowed = await engine.restart(project="ops", service="worker", max_containers=2)
    assert allowed.outcome is Outcome.OK
    assert sorted(engine.fake.restarts) == sorted([(first.id, 10), (second.id, 10)])


async def test_no_matching_container_fails(engine: Engine) -> None:
    engine.fake.add("something-else")
    by_name = await engine.restart(name="claude-manager")
    assert by_name.outcome is Outcome.FAILED
    assert by_name.message.startswith("no container named 'claude-manager'")
    by_labels = await engine.restart(project="ops", service="claude-manager")
    assert by_labels.outcome is Outcome.FAILED
    assert "no container of Compose service 'claude-manager'" in by_labels.message
    assert engine.fake.restarts == []


async def test_dry_run_inspects_and_changes_nothing(engine: Engine) -> None:
    container = engine.fake.add("claude-manager")
    before = container.started_at

    result = await engine.restart(name="claude-manager", dry=True)

    assert result.outcome is Outcome.DRY_RUN
    assert result.message == f"would restart container claude-manager ({container.id[:12]})"
    assert engine.fake.restarts == []
    assert container.started_at == before
    assert not [r for r in engine.fake.requests if r.startswith("POST")]
    assert any(r.startswith(f"GET /containers/{container.id}/json") for r in engine.fake.requests)


async def test_a_rerun_finds_the_container_restarted_by_this_run(engine: Engine) -> None:
    container = engine.fake.add("claude-manager")
    began = datetime.now(UTC) - timedelta(seconds=5)
    assert (await engine.restart(name="claude-manager", began=began)).outcome is Outcome.OK

    again = await engine.restart(name="claude-manager", began=began)  # taken over after a crash

    assert again.outcome is Outcome.SKIPPED
    assert again.message.startswith("already restarted by this run: claude-manager")
    assert len(engine.fake.restarts) == 1
    # A later run (the restart is older than its start) restarts again.
    later = await engine.restart(name="claude-manager", began=datetime.now(UTC))
    assert later.outcome is Outcome.OK
    assert [r[0] for r in engine.fake.restarts] == [container.id, container.id]


async def test_engine_errors_and_an_absent_engine_are_transient(
    engine: Engine, tmp_path: Path
) -> None:
    engine.fake.add("claude-manager")
    engine.fake.fail_with = 500
    with pytest.raises(Transient, match="answered 500: Something went wrong"):
        await engine.restart(name="claude-manager")
    assert engine.fake.restarts == []

    nowhere = Engine(engine.fake, str(tmp_path / "no-such.sock"))
    with pytest.raises(Transient, match=r"GET /containers/json on .*no-such\.sock"):
        await nowhere.restart(name="claude-manager")


async def test_a_container_removed_meanwhile_is_a_clear_failure(engine: Engine) -> None:
    container = engine.fake.add("claude-manager")
    engine.fake.after_listing = lambda: engine.fake.containers.clear()

    result = await engine.restart(name="claude-manager")

    assert result.outcome is Outcome.FAILED
    assert result.message == f"container {container.id[:12]} no longer exists"
    assert engine.fake.restarts == []


def test_parameters_name_the_container_one_way() -> None:
    spec = CATALOGUE["docker.restart_container"]
    assert spec.mutating
    assert spec.parameters == [
        "name",
        "project",
        "service",
        "socket",
        "stop_timeout",
        "max_containers",
    ]
    default = DockerRestartContainer.model_validate({"name": "{{ labels.container_name }}"})
    assert default.socket == "/var/run/docker.sock"
    assert default.stop_timeout == timedelta(seconds=10)
    assert default.max_containers == 1
    for wrong in (
        {},
        {"project": "ops"},
        {"name": "web", "service": "web", "project": "ops"},
        {"name": "web; rm -rf /"},
        {"name": "web", "socket": "docker.sock"},
        {"name": "web", "max_containers": 0},
    ):
        with pytest.raises(ValidationError):
            DockerRestartContainer.model_validate(wrong, context=RENDERED)


async def test_the_service_offers_the_new_actions() -> None:
    async with open_actions(None) as actions:
        assert {
            "docker.restart_container",
            "alertmanager.silence",
            "alertmanager.expire_silence",
        } <= set(actions)
