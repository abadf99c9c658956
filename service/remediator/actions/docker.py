"""`docker.restart_container`: what `docker compose restart SERVICE` does, through the Docker
Engine API on its unix socket; never the docker CLI, never a shell.

The container is found by its exact name, or as a Compose service's containers by the labels
Compose puts on them (one-off `compose run` containers excluded). No match, or more matches
than `max_containers`, refuses: nothing is ever restarted for want of a precise answer. A
container started after the run began was restarted by this run (re-run after a crash): it is
not restarted twice. Connection failures and 5xx are transient; a container gone (404) fails.

Endpoints used (Engine API, unversioned paths: the engine's own version answers):
`GET /containers/json?all=true&filters=...`, `GET /containers/{id}/json`,
`POST /containers/{id}/restart?t=...` (204).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp

from remediator import answers
from remediator.actions.base import (
    Action,
    StepContext,
    StepResult,
    Transient,
    dry_run,
    failed,
    ok,
    skipped,
)
from remediator.policy.parameters import DockerRestartContainer

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
_ENGINE = "http://docker"  # the host is not used: every request goes to the socket
_READ_TIMEOUT = 30.0
_RESTART_MARGIN = 60.0  # beyond the stop timeout: the kill and the start


class DockerActions:
    """One connection per step: the socket is the step's parameter."""

    def actions(self) -> dict[str, Action]:
        return {"docker.restart_container": self.restart_container}

    async def restart_container(
        self, params: DockerRestartContainer, context: StepContext
    ) -> StepResult:
        try:
            async with _Engine(params.socket) as engine:
                return await _restart(engine, params, context)
        except _Failed as exc:
            return exc.result


async def _restart(
    engine: _Engine, params: DockerRestartContainer, context: StepContext
) -> StepResult:
    wanted = _wanted(params)
    found = await engine.containers(params)
    if not found:
        return failed(f"no container {wanted} (socket {params.socket})")
    if len(found) > params.max_containers:
        names = ", ".join(sorted(_summary_name(c) for c in found))
        return failed(
            f"refusing to restart: {len(found)} containers are {wanted} ({names}), more than"
            f" max_containers {params.max_containers}",
            containers=sorted(_summary_name(c) for c in found),
        )
    containers = [await engine.inspect(str(summary["Id"])) for summary in found]
    done = [c for c in containers if _started_since(c, context.run_started_at)]
    todo = [c for c in containers if not _started_since(c, context.run_started_at)]
    if not todo:
        return skipped(
            f"already restarted by this run: {_list(done)}, started {_started(done[0])}",
            containers=[_view(c) for c in done],
        )
    if context.dry_run:
        return dry_run(
            f"would restart {_noun(todo)} {_list(todo)}", containers=[_view(c) for c in todo]
        )
    seconds = int(params.stop_timeout.total_seconds())
    for container in todo:
        await engine.restart(container, seconds)
    after = [await engine.inspect(str(c["Id"])) for c in todo]
    return ok(f"restarted {_noun(after)} {_list(after)}", containers=[_view(c) for c in after])


def _wanted(params: DockerRestartContainer) -> str:
    if params.name is not None:
        return f"named {params.name!r}"
    return f"of Compose service {params.service!r} in project {params.project!r}"


class _Failed(Exception):
    def __init__(self, result: StepResult) -> None:
        super().__init__(result.message)
        self.result = result


@dataclass
class _Answer:
    status: int
    body: Any


class _Engine:
    def __init__(self, socket: str) -> None:
        self._socket = socket
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> _Engine:
        connector = aiohttp.UnixConnector(path=self._socket)
        self._session = aiohttp.ClientSession(_ENGINE, connector=connector)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def containers(self, params: DockerRestartContainer) -> list[dict[str, Any]]:
        """The engine's filters narrow the list (its name filter is an unanchored regex); the
        exact comparison is made here."""
        filters: dict[str, list[str]]
        if params.name is not None:
            exact = params.name.replace(".", r"\.")  # a DockerName: "." is its only metacharacter
            filters = {"name": [f"^/{exact}$"]}
        else:
            filters = {
                "label": [
                    f"{COMPOSE_PROJECT}={params.project}",
                    f"{COMPOSE_SERVICE}={params.service}",
                ]
            }
        query = {"all": "true", "filters": json.dumps(filters)}
        answer = await self._call("GET", "/containers/json", query)
        if answer.status != 200 or not isinstance(answer.body, list):
            raise _Failed(_refusal("listing containers", answer))
        return [c for c in answer.body if isinstance(c, dict) and _is_wanted(c, params)]

    async def inspect(self, container_id: str) -> dict[str, Any]:
        answer = await self._call("GET", f"/containers/{container_id}/json")
        if answer.status == 404:
            raise _Failed(failed(f"container {container_id[:12]} no longer exists"))
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise _Failed(_refusal(f"inspecting container {container_id[:12]}", answer))
        return answer.body

    async def restart(self, container: Mapping[str, Any], seconds: int) -> None:
        what = _describe(container)
        answer = await self._call(
            "POST",
            f"/containers/{container['Id']}/restart",
            {"t": str(seconds)},
            within=seconds + _RESTART_MARGIN,
        )
        if answer.status == 404:
            raise _Failed(failed(f"container {what} no longer exists: not restarted"))
        if answer.status != 204:
            raise _Failed(_refusal(f"restarting container {what}", answer))

    async def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        within: float = _READ_TIMEOUT,
    ) -> _Answer:
        assert self._session is not None, "used outside `async with`"
        what = f"{method} {path} on {self._socket}"
        try:
            async with self._session.request(
                method, path, params=query, timeout=aiohttp.ClientTimeout(total=within)
            ) as response:
                answer = await answers.read_document(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Transient(f"{what}: {exc or type(exc).__name__}") from exc
        try:
            body = answer.json()
        except ValueError as exc:  # AnswerTooLarge too: its message is the body shown
            body = str(exc) if answer.truncated else answer.text()
        if answer.status == 429 or answer.status >= 500:
            raise Transient(f"{what} answered {answer.status}: {_message(body)}")
        return _Answer(answer.status, body)


def _is_wanted(summary: Mapping[str, Any], params: DockerRestartContainer) -> bool:
    if params.name is not None:
        return f"/{params.name}" in (summary.get("Names") or [])
    labels = summary.get("Labels") or {}
    return (
        labels.get(COMPOSE_PROJECT) == params.project
        and labels.get(COMPOSE_SERVICE) == params.service
        and labels.get(COMPOSE_ONEOFF, "False") != "True"
    )


def _refusal(doing: str, answer: _Answer) -> StepResult:
    return failed(f"{doing}: the engine answered {answer.status}: {_message(answer.body)}")


def _message(body: object) -> str:
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:200]


def _summary_name(summary: Mapping[str, Any]) -> str:
    names = summary.get("Names") or [str(summary.get("Id", ""))[:12]]
    return str(names[0]).lstrip("/")


def _describe(container: Mapping[str, Any]) -> str:
    return f"{str(container.get('Name', '')).lstrip('/')} ({str(container['Id'])[:12]})"


def _list(containers: list[dict[str, Any]]) -> str:
    return ", ".join(_describe(c) for c in containers)


def _noun(containers: list[dict[str, Any]]) -> str:
    return "container" if len(containers) == 1 else "containers"


def _started(container: Mapping[str, Any]) -> str:
    return str((container.get("State") or {}).get("StartedAt", ""))


def _started_since(container: Mapping[str, Any], moment: datetime) -> bool:
    """StartedAt is RFC 3339 with nanoseconds; "0001-01-01T00:00:00Z" when never started."""
    try:
        started = datetime.fromisoformat(_started(container))
    except ValueError:
        return False
    return started.tzinfo is not None and started >= moment


def _view(container: Mapping[str, Any]) -> dict[str, Any]:
    state = container.get("State") or {}
    return {
        "id": container["Id"],
        "name": str(container.get("Name", "")).lstrip("/"),
        "status": state.get("Status"),
        "started_at": state.get("StartedAt"),
    }
