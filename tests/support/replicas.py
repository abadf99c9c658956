"""Harness for the scenarios with several replicas: `remediator serve` processes sharing one
Postgres schema and a redis-server of the test's own, acting on a fake Kubernetes that says
which replica made each call, when, and whether a PATCH restarted anything, and that can hold a
request at a chosen point so that the test kills the replica there.

Each replica talks to the fake Kubernetes on a port of its own (its kubeconfig names it): that
is how the fake tells the replicas apart, and a replica started again in the same slot keeps
the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from tests.support.fake_kubernetes import (
    KUBECONFIG,
    NAMESPACE,
    RESTARTED_AT,
    FakeKubernetes,
    status_response,
)
from tests.support.policies import SHIPPED_POLICIES, shipped_guardrails
from tests.support.service_process import ServiceProcess
from tests.support.services import free_port

TOKEN = "s3cret"  # the webhook's bearer token
API_TOKEN = "operator-s3cret"  # the operator API's (pause, resume, guards)
DEPLOYMENT_PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)$")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def policy_directory(tmp_path: Path, policies: dict[str, str], guardrails: str = "") -> Path:
    """The shipped severity matrix and guard rails (plus `guardrails` lines) with these
    policies (file name: text) instead of the shipped ones. The global blast radius is off
    unless `guardrails` sets one: the scenarios storm dozens of deployments on purpose. Nor is
    demotion on: they fire one policy's alert many times, to see other things."""
    directory = tmp_path / "policies"
    directory.mkdir()
    shutil.copy(SHIPPED_POLICIES / "escalation.yaml", directory)
    rails = shipped_guardrails("max_targets: null\ndemotion: null\n" + guardrails)
    (directory / "guardrails.yaml").write_text(rails)
    for name, text in policies.items():
        (directory / name).write_text(text)
    return directory


@dataclass(frozen=True)
class Call:
    """One request the fake Kubernetes answered."""

    at: float  # time.time() when it arrived
    replica: int  # the slot of the replica that made it (-1: not a replica's port)
    method: str
    path: str
    status: int
    restarted: bool  # a PATCH that changed the pod template's restartedAt annotation

    @property
    def mutating(self) -> bool:
        return self.method in WRITES


@dataclass
class Hold:
    """Stops the `nth` `method` request on `path` (counted over every replica) before the API
    server handles it, or after (`after`: a PATCH applied, its answer not yet sent), until the
    test releases it."""

    method: str
    path: str
    nth: int
    after: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    replica: int = -1

    async def stop_here(self, replica: int) -> None:
        self.replica = replica
        self.reached.set()
        await self.released.wait()


class RecordingKubernetes(FakeKubernetes):
    """FakeKubernetes with a port per replica, a log of calls, holds, and throttling."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.holds: list[Hold] = []
        # Answers 429 to a write it returns True for (a busy API server); None: never.
        self.throttle: Callable[[], bool] | None = None
        self._slot_of_port: dict[int, int] = {}
        self._seen: Counter[tuple[str, str]] = Counter()
        self._sites: list[web.TCPSite] = []

    async def start_for(self, replicas: int) -> list[str]:
        """Serve on one port per replica slot; the URL each slot's kubeconfig names."""
        await self.start(free_port())
        assert self._runner is not None
        urls = []
        for slot in range(replicas):
            port = free_port()
            site = web.TCPSite(self._runner, "127.0.0.1", port)
            await site.start()
            self._sites.append(site)
            self._slot_of_port[port] = slot
            urls.append(f"http://127.0.0.1:{port}")
        return urls

    async def close(self) -> None:
        for hold in self.holds:
            hold.released.set()
        await super().close()

    def hold(self, method: str, path: str, nth: int, *, after: bool = False) -> Hold:
        hold = Hold(method, path, nth, after)
        self.holds.append(hold)
        return hold

    def writes_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path and c.mutating]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        at = time.time()
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        replica = self._slot_of_port.get(sockname[1], -1) if sockname else -1
        key = (request.method, request.path)
        self._seen[key] += 1
        hold = next(
            (h for h in self.holds if (h.method, h.path, h.nth) == (*key, self._seen[key])), None
        )
        if hold is not None and not hold.after:
            await hold.stop_here(replica)
        restarted = False
        if request.method in WRITES and self.throttle is not None and self.throttle():
            response: web.StreamResponse = status_response(429, "injected: too many requests")
        else:
            before = self._restarted_at(request.path)
            response = await super()._middleware(request, handler)
            restarted = request.method == "PATCH" and self._restarted_at(request.path) != before
        if hold is not None and hold.after:
            await hold.stop_here(replica)
        self.calls.append(
            Call(at, replica, request.method, request.path, response.status, restarted)
        )
        return response

    def _restarted_at(self, path: str) -> str | None:
        found = DEPLOYMENT_PATH.match(path)
        if found is None:
            return None
        deployment = self.objects.get(("Deployment", found[1], found[2]))
        if deployment is None:
            return None
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        restarted: str | None = annotations.get(RESTARTED_AT)
        return restarted


def deployment_path(name: str, namespace: str = NAMESPACE) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def worker_of(service: ServiceProcess) -> str:
    """The worker name the service's dispatcher claims events under."""
    return f"{socket.gethostname()}:{service.process.pid}"


class Replicas:
    """`count` replicas of the service, each in a slot with its own Kubernetes port; a slot's
    replica can be killed -9 and started again."""

    def __init__(
        self, tmp_path: Path, kubernetes_urls: Sequence[str], settings: dict[str, str]
    ) -> None:
        self._tmp_path = tmp_path
        self._settings = settings
        self._kubeconfigs = []
        for slot, url in enumerate(kubernetes_urls):
            kubeconfig = tmp_path / f"kubeconfig-{slot}"
            kubeconfig.write_text(KUBECONFIG.format(url=url))
            self._kubeconfigs.append(kubeconfig)
        self.services: list[ServiceProcess | None] = [None] * len(kubernetes_urls)
        self._starting: dict[int, asyncio.Task[ServiceProcess]] = {}
        self.killed: list[ServiceProcess] = []

    async def start(self) -> None:
        """Every slot at once: their migrations race for the advisory lock, as replicas' do."""
        for slot in range(len(self.services)):
            self.restart(slot)
        await asyncio.gather(*(self.ready(slot) for slot in range(len(self.services))))

    def restart(self, slot: int) -> None:
        """Start the slot's replica (again), in the background; `ready` waits for it."""
        settings = {**self._settings, "kubeconfig": str(self._kubeconfigs[slot])}
        starting = asyncio.create_task(ServiceProcess.start(self._tmp_path, **settings))
        self._starting[slot] = starting

        def started(task: asyncio.Task[ServiceProcess]) -> None:
            if self._starting.get(slot) is task and not task.cancelled() and not task.exception():
                self.services[slot] = task.result()
                del self._starting[slot]

        starting.add_done_callback(started)

    async def ready(self, slot: int) -> ServiceProcess:
        starting = self._starting.get(slot)
        if starting is not None:
            await asyncio.shield(starting)  # its callback files the replica in its slot
            await asyncio.sleep(0)
        service = self.services[slot]
        assert service is not None, f"slot {slot} has no replica"
        return service

    def alive(self) -> list[ServiceProcess]:
        return [
            s
            for slot, s in enumerate(self.services)
            if s is not None and slot not in self._starting and s.process.poll() is None
        ]

    async def kill(self, slot: int) -> tuple[float, str]:
        """kill -9 of the slot's replica: when, and the worker it was."""
        service = await self.ready(slot)
        worker = worker_of(service)
        at = time.time()
        service.kill()
        self.killed.append(service)
        self.services[slot] = None
        return at, worker

    async def stop(self) -> list[int]:
        """SIGTERM to every replica still running, all at once; their exit codes. Waited for
        in threads: the fake Kubernetes runs on this event loop, and a replica finishing a
        run during its shutdown needs it to answer."""
        for starting in list(self._starting.values()):
            with contextlib.suppress(Exception):
                await starting
        running = [s for s in self.services if s is not None and s.process.poll() is None]
        return list(await asyncio.gather(*(asyncio.to_thread(s.stop) for s in running)))


@dataclass
class Deployment:
    """Live replicas on one PostgreSQL and Redis, their Kubernetes, and a pool on their store."""

    replicas: Replicas
    kubernetes: RecordingKubernetes
    db: asyncpg.Pool


@contextlib.asynccontextmanager
async def live_replicas(
    tmp_path: Path,
    count: int,
    policies: dict[str, str],
    guardrails: str,
    **settings: str,
) -> AsyncIterator[Deployment]:
    """`count` replicas in live mode, with the policy files given and the webhook TOKEN, each
    on a port of one recording Kubernetes; `settings` names the store, Redis and the rest. Every
    replica still running at the end must exit 0 on SIGTERM."""
    kubernetes = RecordingKubernetes()
    urls = await kubernetes.start_for(count)
    directory = policy_directory(tmp_path, policies, guardrails)
    every = {"webhook_token": TOKEN, "mode": "live", "policies": str(directory), **settings}
    replicas = Replicas(tmp_path, urls, every)
    db = await asyncpg.create_pool(settings["database_url"], min_size=1, max_size=4)
    try:
        await replicas.start()
        yield Deployment(replicas, kubernetes, db)
    finally:
        try:
            codes = await replicas.stop()
        finally:
            await db.close()
            await kubernetes.close()
    assert codes == [0] * len(codes), codes


async def post_webhook(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    """One delivery, as Alertmanager makes it; the status, or 0 when the connection failed."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with session.post(f"{url}/api/v1/alerts", json=body, headers=headers) as answer:
            return answer.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def claimed_events(db: asyncpg.Pool, worker: str) -> list[int]:
    """The events this worker holds and has not finished: its work in flight."""
    rows = await db.fetch(
        "SELECT id FROM alert_events WHERE claimed_by = $1 AND done_at IS NULL ORDER BY id",
        worker,
    )
    return [row["id"] for row in rows]


def cluster_flags(own: int, other: int) -> list[str]:
    """Flags of one of two Alertmanagers gossiping on loopback, quick to settle and notify
    (the second peer waits peer-timeout before sending what the first has not sent)."""
    return [
        f"--cluster.listen-address=127.0.0.1:{own}",
        f"--cluster.advertise-address=127.0.0.1:{own}",
        f"--cluster.peer=127.0.0.1:{other}",
        "--cluster.settle-timeout=2s",
        "--cluster.gossip-interval=100ms",
        "--cluster.pushpull-interval=2s",
        "--cluster.peer-timeout=1s",
        "--cluster.reconnect-interval=1s",
        "--cluster.reconnect-timeout=1m",
    ]
