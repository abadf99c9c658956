"""A small fake of the Docker Engine API, served on a unix socket: exactly the endpoints
`docker.restart_container` uses, with the engine's JSON shapes and status codes.

- `GET /containers/json?all=&filters=`: ContainerSummary objects; without `all`, running
  containers only; the `name` filter is an unanchored regex against names such as "/web", the
  `label` filter `key` or `key=value`, all given filters must hold; 400 on unknown filters.
- `GET /containers/{id}/json`: the inspect shape (`Id`, `Name`, `State.StartedAt` with
  nanoseconds, `Config.Labels`, ...); the id may be a full id, a unique prefix or a name.
- `POST /containers/{id}/restart?t=`: 204 and a new `State.StartedAt`; 404 for an unknown id.

Errors are the engine's `{"message": ...}`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

NEVER = "0001-01-01T00:00:00Z"


def docker_time(moment: datetime) -> str:
    """As the engine writes times: RFC 3339 in UTC with nanoseconds."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}042Z"


@dataclass
class Container:
    id: str
    name: str
    labels: dict[str, str]
    image: str = "example/app:1.4"
    running: bool = True
    started_at: str = "2026-01-01T08:00:00.123456789Z"
    created: datetime = datetime(2026, 1, 1, 7, 59, tzinfo=UTC)
    restart_count: int = 0  # restarts by the restart policy; a manual restart does not count

    def summary(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "ImageID": "sha256:" + hashlib.sha256(self.image.encode()).hexdigest(),
            "Command": "python -m app",
            "Created": int(self.created.timestamp()),
            "Ports": [{"PrivatePort": 8000, "Type": "tcp"}],
            "Labels": dict(self.labels),
            "State": self._status(),
            "Status": "Up 2 hours" if self.running else "Exited (137) 5 minutes ago",
            "HostConfig": {"NetworkMode": "bridge"},
            "NetworkSettings": {"Networks": {}},
            "Mounts": [],
        }

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Created": docker_time(self.created),
            "Path": "python",
            "Args": ["-m", "app"],
            "State": {
                "Status": self._status(),
                "Running": self.running,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 4242 if self.running else 0,
                "ExitCode": 0 if self.running else 137,
                "Error": "",
                "StartedAt": self.started_at,
                "FinishedAt": NEVER,
            },
            "Image": "sha256:" + hashlib.sha256(self.image.encode()).hexdigest(),
            "Name": f"/{self.name}",
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "unless-stopped"}},
            "Config": {"Image": self.image, "Labels": dict(self.labels), "Hostname": self.id[:12]},
            "NetworkSettings": {"Networks": {}},
            "Mounts": [],
        }

    def _status(self) -> str:
        return "running" if self.running else "exited"


@dataclass
class FakeDocker:
    containers: dict[str, Container] = field(default_factory=dict)
    restarts: list[tuple[str, int | None]] = field(default_factory=list)  # (id, t)
    requests: list[str] = field(default_factory=list)
    fail_with: int | None = None  # every request answers this status (the daemon in trouble)
    after_listing: Callable[[], None] | None = None  # e.g. a container removed meanwhile

    def add(self, name: str, labels: dict[str, str] | None = None, **kw: Any) -> Container:
        container_id = hashlib.sha256(name.encode()).hexdigest()
        container = Container(container_id, name, labels or {}, **kw)
        self.containers[container_id] = container
        return container

    def compose(self, project: str, service: str, number: int = 1, **kw: Any) -> Container:
        """A container as Compose v2 creates it: project-service-N, with its labels."""
        labels = {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.version": "2.24.5",
        }
        return self.add(f"{project}-{service}-{number}", labels | kw.pop("labels", {}), **kw)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._trouble])
        app.router.add_get("/containers/json", self._list)
        app.router.add_get("/containers/{id}/json", self._inspect)
        app.router.add_post("/containers/{id}/restart", self._restart)
        return app

    @web.middleware
    async def _trouble(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.fail_with is not None:
            return _error(self.fail_with, "Something went wrong.")
        response: web.StreamResponse = await handler(request)
        return response

    async def _list(self, request: web.Request) -> web.Response:
        show_all = request.query.get("all", "").lower() not in ("", "0", "no", "false", "none")
        try:
            filters: dict[str, list[str]] = json.loads(request.query.get("filters") or "{}")
        except ValueError:
            return _error(400, "invalid filter")
        unknown = set(filters) - {"name", "label"}
        if unknown:
            return _error(400, f"invalid filter '{sorted(unknown)[0]}'")
        found = [
            c.summary()
            for c in self.containers.values()
            if (show_all or c.running) and _matches(c, filters)
        ]
        if self.after_listing is not None:
            self.after_listing()
        return web.json_response(found)

    async def _inspect(self, request: web.Request) -> web.Response:
        container = self._find(request.match_info["id"])
        if container is None:
            return _error(404, f"No such container: {request.match_info['id']}")
        return web.json_response(container.inspect())

    async def _restart(self, request: web.Request) -> web.Response:
        container = self._find(request.match_info["id"])
        if container is None:
            return _error(404, f"No such container: {request.match_info['id']}")
        t = request.query.get("t")
        if t is not None and not re.fullmatch(r"-?\d+", t):
            return _error(400, f'strconv.Atoi: parsing "{t}": invalid syntax')
        self.restarts.append((container.id, None if t is None else int(t)))
        container.running = True
        container.started_at = docker_time(datetime.now(UTC))
        return web.Response(status=204)

    def _find(self, ref: str) -> Container | None:
        if ref in self.containers:
            return self.containers[ref]
        for container in self.containers.values():
            if container.name == ref.lstrip("/"):
                return container
        prefixed = [c for c in self.containers.values() if c.id.startswith(ref)]
        return prefixed[0] if len(prefixed) == 1 else None


def _matches(container: Container, filters: dict[str, list[str]]) -> bool:
    """As the engine filters: any of the `name` patterns, every one of the `label`s."""
    names = filters.get("name", [])
    if names and not any(re.search(pattern, f"/{container.name}") for pattern in names):
        return False
    for wanted in filters.get("label", []):
        key, has_value, value = wanted.partition("=")
        if key not in container.labels or (has_value and container.labels[key] != value):
            return False
    return True


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@asynccontextmanager
async def serve_docker(fake: FakeDocker, socket: Path) -> AsyncIterator[str]:
    """The fake engine listening on the unix socket; yields the socket's path."""
    runner = web.AppRunner(fake.app())
    await runner.setup()
    await web.UnixSite(runner, str(socket)).start()
    try:
        yield str(socket)
    finally:
        await runner.cleanup()
