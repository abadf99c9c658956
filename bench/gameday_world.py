"""The world a game day plays in: services whose health follows their state, on a Kubernetes
stand-in whose controllers answer the actions, and the alerts that state raises.

Time is compressed: a game minute lasts `60 / compress` real seconds (1 s at the default 60).
Every service is a Deployment on tests/support/fake_kubernetes.py (the deployment, replica-set
and garbage controllers: a restart or an undo makes a new template and new pods, a scale
changes the replica count, a deleted pod is replaced) and an HTTP server of its own, whose
address is the alert's `instance`:

- `GET /health` answers 200, or 503 with why: it crashed (until its pods are replaced), the
  release it runs is bad, a dependency it needs is down, or it ran out of memory;
- `PUT /admin/config/github` (with the admin token) sets its GitHub polling, and
  `GET /github/rate_limit` is GitHub's answer about its budget (5,000 calls a game hour).

The state a service starts in and what happens to it come from the scenario (`ServiceSpec`,
`Fault`); `World.firing()` says which alerts its state raises, as the Prometheus rules of the
runbooks would: ApplicationDown (health failing for a minute), HighResponseTime (load above
what the replicas serve), HighMemoryUsage (the leaking pod above 85%), HighCPUUsage (a flapping
batch job), GitHubAPIRateLimitLow (under 20% of the budget left).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from tests.support.fake_kubernetes import FakeKubernetes, Obj, seeded_revision

NAMESPACE = "claude-deployment-prod"
ADMIN_TOKEN = "gameday-admin-token"
GITHUB_LIMIT = 5000  # calls a game hour
BASE_MEMORY = 40.0  # percent of the limit, a fresh pod
MEMORY_ALERT = 85.0
GITHUB_ALERT = 0.2  # of the budget left
INITIAL_CONFIG = {"polling_interval_seconds": 60, "request_cache": False}
STORM = (3, 30.0)  # restarts of one service within game minutes: a restart storm


class Clock:
    """Game minutes since the start, `compress` times faster than the wall clock."""

    def __init__(self, compress: float) -> None:
        self.compress = compress
        self.started = time.monotonic()

    def minutes(self) -> float:
        return (time.monotonic() - self.started) * self.compress / 60

    def seconds_for(self, minutes: float) -> float:
        """Real seconds a span of game minutes lasts."""
        return minutes * 60 / self.compress


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    replicas: int = 3
    releases: tuple[str, ...] = ("good", "good")  # revision 1..n: good or bad; the last runs
    depends_on: tuple[str, ...] = ()
    capacity: float = 100.0  # requests/s one replica serves
    load: float = 150.0
    github_calls: float = 60.0  # GitHub API calls a game minute at the default polling


@dataclass(frozen=True)
class Fault:
    """What happens at a game minute: crash, deploy (value: good/bad), load (requests/s),
    leak (percent a minute), dependency_down / dependency_up, cpu_flap (value: the period in
    minutes, until: when the batch job stops), github_burn (calls a minute)."""

    at: float
    kind: str
    service: str | None = None
    dependency: str | None = None
    value: Any = None
    until: float | None = None


@dataclass
class Service:
    """A service as it runs: what the scenario did to it, and what Kubernetes now says."""

    spec: ServiceSpec
    releases: list[str]
    instance: str = ""
    crashed_template: str | None = None
    load: float = 0.0
    leak_rate: float = 0.0
    leak_since: float = 0.0
    leaking_pod: str | None = None
    oom_kills: int = 0
    flap_period: float | None = None
    flap_until: float = 0.0
    github_calls: float = 0.0
    github_used: float = 0.0
    github_hour: int = 0
    github_exhausted: bool = False
    github_config: dict[str, Any] = field(default_factory=lambda: dict(INITIAL_CONFIG))
    unhealthy_since: float | None = None


@dataclass
class Change:
    """A change made to a service, judged as it is made by what was wrong with it then."""

    at: float
    service: str
    what: str
    useful: bool = False  # it removed a cause of the incident
    harmful: str = ""  # why, when it was harmful
    restore: bool = False  # it put back what a run had changed (an on_resolved step)


def template_key(deployment: Obj) -> str:
    return json.dumps(deployment["spec"]["template"], sort_keys=True)


class World:
    def __init__(self, services: list[ServiceSpec], dependencies: list[str], clock: Clock):
        self.clock = clock
        self.kubernetes = FakeKubernetes()
        self.services = {s.name: Service(s, list(s.releases), load=s.load) for s in services}
        self.dependencies = dict.fromkeys(dependencies, True)
        self.changes: list[Change] = []
        self.causes: dict[str, list[str]] = {}  # what was wrong with each service at the last look
        self._deploying = False
        self._runners: list[web.AppRunner] = []
        self.url = ""  # the world's own address (its GitHub API stand-in)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, kubernetes_port: int) -> None:
        await self.kubernetes.start(kubernetes_port)
        for service in self.services.values():
            spec = service.spec
            self.kubernetes.seed_deployment(
                NAMESPACE, spec.name, replicas=spec.replicas, revisions=len(spec.releases)
            )
            service.instance = await self._serve(self._app(service))
            service.github_calls = spec.github_calls
        self.url = f"http://{await self._serve(self._github_api())}"
        self.kubernetes.watchers.append(self._changed)

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        await self.kubernetes.close()

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"{host}:{port}"

    # -- the services' HTTP -----------------------------------------------------------------------

    def _app(self, service: Service) -> web.Application:
        async def health(_: web.Request) -> web.Response:
            why = self.unhealthy(service)
            return web.Response(status=503 if why else 200, text="; ".join(why) or "ok")

        async def github_config(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != ADMIN_TOKEN:
                return web.Response(status=401, text="admin token required")
            before = dict(service.github_config)
            service.github_config.update(await request.json())
            self._configured(service, before)
            return web.json_response(service.github_config)

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_put("/admin/config/github", github_config)
        return app

    def _github_api(self) -> web.Application:
        async def rate_limit(_: web.Request) -> web.Response:
            used = sum(s.github_used for s in self.services.values() if s.github_calls)
            core = {
                "limit": GITHUB_LIMIT,
                "remaining": max(0, GITHUB_LIMIT - int(used)),
                "used": int(used),
                "reset": int(time.time() + self.clock.seconds_for(60 - self.clock.minutes() % 60)),
            }
            return web.json_response({"resources": {"core": core}, "rate": core})

        app = web.Application()
        app.router.add_get("/rate_limit", rate_limit)
        return app

    # -- state ------------------------------------------------------------------------------------

    def deployment(self, service: Service) -> Obj:
        found = self.kubernetes.get("Deployment", NAMESPACE, service.spec.name)
        assert found is not None
        return found

    def release(self, service: Service) -> int:
        return seeded_revision(self.deployment(service))

    def replicas(self, service: Service) -> int:
        return int(self.deployment(service)["spec"]["replicas"])

    def memory(self, service: Service, now: float) -> float:
        if not service.leak_rate:
            return BASE_MEMORY
        return min(100.0, BASE_MEMORY + service.leak_rate * (now - service.leak_since))

    def unhealthy(self, service: Service) -> list[str]:
        why = []
        if service.crashed_template is not None:
            why.append("crashed: not answering")
        release = self.release(service)
        if service.releases[release - 1] == "bad":
            why.append(f"release {release} is bad")
        why += [f"{d} is down" for d in service.spec.depends_on if not self.dependencies[d]]
        if service.github_exhausted:
            why.append("GitHub API budget exhausted")
        return why

    def apply(self, fault: Fault, now: float) -> None:
        service = self.services.get(fault.service or "")
        if fault.kind in ("dependency_down", "dependency_up"):
            self.dependencies[str(fault.dependency)] = fault.kind == "dependency_up"
            return
        assert service is not None, f"{fault.kind}: no service {fault.service!r}"
        if fault.kind == "crash":
            service.crashed_template = template_key(self.deployment(service))
        elif fault.kind == "deploy":
            self._deploy(service, str(fault.value))
        elif fault.kind == "load":
            service.load = float(fault.value)
        elif fault.kind == "leak":
            service.leak_rate, service.leak_since = float(fault.value), now
            service.leaking_pod = self._newest_pod(service)
        elif fault.kind == "cpu_flap":
            service.flap_period, service.flap_until = float(fault.value), float(fault.until or 0)
        elif fault.kind == "github_burn":
            service.github_calls = float(fault.value)
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _deploy(self, service: Service, quality: str) -> None:
        """A new release, as CI would roll it out: a new pod template, revision n+1."""
        service.releases.append(quality)
        revision = len(service.releases)
        template = copy.deepcopy(self.deployment(service)["spec"]["template"])
        container = template["spec"]["containers"][0]
        container["env"][0]["value"] = str(revision)
        container["image"] = f"registry.example/{service.spec.name}:{revision}"
        self._deploying = True  # the scenario's own change, not the remediator's
        try:
            self.kubernetes.roll_out(NAMESPACE, service.spec.name, template)
        finally:
            self._deploying = False

    def _newest_pod(self, service: Service) -> str | None:
        pods = self.kubernetes.pods_of(NAMESPACE, service.spec.name)
        if not pods:
            return None
        newest = max(
            pods, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"])
        )
        return str(newest["metadata"]["name"])

    def advance(self, now: float, minutes: float) -> None:
        """What time does to the services: pods replaced clear a crash and a leaking pod's
        memory; memory grows, and at 100% the container is OOM-killed and starts again;
        GitHub calls spend the budget, which comes back each game hour."""
        for service in self.services.values():
            self._replaced(service, now)
            if service.leak_rate and self.memory(service, now) >= 100.0:
                service.oom_kills += 1
                service.leak_since = now
            self._spend_github(service, now, minutes)
            self.causes[service.spec.name] = self.what_is_wrong(service, now)
            if self.unhealthy(service):
                service.unhealthy_since = service.unhealthy_since or now
            else:
                service.unhealthy_since = None

    def _replaced(self, service: Service, now: float) -> None:
        deployment = self.deployment(service)
        if service.crashed_template and template_key(deployment) != service.crashed_template:
            service.crashed_template = None  # new pods: the crash is gone
        names = {
            p["metadata"]["name"] for p in self.kubernetes.pods_of(NAMESPACE, service.spec.name)
        }
        if service.leaking_pod is not None and service.leaking_pod not in names:
            service.leak_since = now  # the leaking pod was replaced: a fresh one leaks anew
            service.leaking_pod = self._newest_pod(service)

    def _spend_github(self, service: Service, now: float, minutes: float) -> None:
        if not service.github_calls:
            return
        hour = int(now // 60)
        if hour != service.github_hour:
            service.github_hour, service.github_used = hour, 0.0
        service.github_used += self._github_rate(service, service.github_config) * minutes
        service.github_exhausted = service.github_used >= GITHUB_LIMIT

    @staticmethod
    def _github_rate(service: Service, config: dict[str, Any]) -> float:
        """GitHub API calls a game minute under this polling configuration."""
        rate = service.github_calls * 60 / max(1, int(config["polling_interval_seconds"]))
        return rate * (0.5 if config.get("request_cache") else 1.0)

    # -- what is wrong, and what a change did about it -----------------------------------------

    def what_is_wrong(self, service: Service, now: float) -> list[str]:
        """The causes of the service's trouble now (empty: nothing is wrong with it)."""
        why = self.unhealthy(service)
        if service.load > service.spec.capacity * self.replicas(service):
            why.append("overloaded")
        if service.leaking_pod and self.memory(service, now) > MEMORY_ALERT:
            why.append("memory high")
        if self._cpu_high(service, now):
            why.append("CPU high (batch job)")
        if self._runs_out(service, service.github_config, now):
            why.append("GitHub budget running out")
        return why

    def _runs_out(self, service: Service, config: dict[str, Any], now: float) -> bool:
        """At this rate the GitHub budget is spent before the hour renews it."""
        rate = self._github_rate(service, config)
        return bool(rate) and service.github_used + rate * (60 - now % 60) >= GITHUB_LIMIT

    def _changed(self, kind: str, before: Obj, after: Obj | None) -> None:
        now = self.clock.minutes()
        if kind == "Pod":
            name = before["metadata"]["name"]
            owner = next((s for n, s in self.services.items() if name.startswith(f"{n}-")), None)
            if owner is not None:
                leak = name == owner.leaking_pod and self.memory(owner, now) > MEMORY_ALERT
                self._record(owner, now, f"pod {name} deleted", useful=leak)
            return
        service = self.services.get(before["metadata"]["name"])
        if service is None or after is None or self._deploying:
            return
        self._deployment_changed(service, before, after, now)

    def _deployment_changed(self, service: Service, before: Obj, after: Obj, now: float) -> None:
        old, new = seeded_revision(before), seeded_revision(after)
        if template_key(before) != template_key(after) and old == new:
            leak = bool(service.leaking_pod) and self.memory(service, now) > MEMORY_ALERT
            self._record(service, now, "restart", useful=bool(service.crashed_template) or leak)
        elif old != new:
            fixed = service.releases[old - 1] == "bad" and service.releases[new - 1] == "good"
            self._record(service, now, f"undo: release {old} -> {new}", useful=fixed)
        was, now_replicas = before["spec"]["replicas"], after["spec"]["replicas"]
        if was != now_replicas:
            short = service.load > service.spec.capacity * was and now_replicas > was
            self._record(service, now, f"scale {was} -> {now_replicas}", useful=short)

    def _configured(self, service: Service, before: dict[str, Any]) -> None:
        now = self.clock.minutes()
        after = service.github_config
        helped = self._runs_out(service, before, now) and not self._runs_out(service, after, now)
        change = self._record(service, now, f"config {after}", useful=helped)
        if after == INITIAL_CONFIG and not self._runs_out(service, after, now):
            change.restore, change.harmful = True, ""

    def _record(self, service: Service, now: float, what: str, *, useful: bool) -> Change:
        change = Change(now, service.spec.name, what, useful)
        change.harmful = self._harm(service, change, now)
        self.changes.append(change)
        return change

    def _harm(self, service: Service, change: Change, now: float) -> str:
        """Harmful: to a service with nothing wrong, a restart storm, or replicas beyond twice
        what the load needs."""
        mine = [c for c in self.changes if c.service == change.service]
        if not self.causes.get(service.spec.name):
            return "changed a service with nothing wrong with it"
        restarts = [c for c in mine if c.what == "restart" and now - c.at < STORM[1]]
        if change.what == "restart" and len(restarts) + 1 >= STORM[0]:
            return f"restart storm: {len(restarts) + 1} restarts within {STORM[1]:g} min"
        if change.what.startswith("scale") and self.replicas(service) > 2 * self.needs(service):
            return f"{self.replicas(service)} replicas, the load needs {self.needs(service)}"
        return ""

    # -- alerts -----------------------------------------------------------------------------------

    def firing(self, now: float) -> Iterator[dict[str, str]]:
        """The alerts the services' state raises now (labels, alertname included)."""
        for service in self.services.values():
            yield from self._alerts_of(service, now)

    def _alerts_of(self, service: Service, now: float) -> Iterator[dict[str, str]]:
        base = {"namespace": NAMESPACE, "deployment": service.spec.name}
        if service.unhealthy_since is not None and now - service.unhealthy_since >= 1.0:
            yield {"alertname": "ApplicationDown", "severity": "critical",
                   "instance": service.instance, **base}  # fmt: skip
        if service.load > service.spec.capacity * self.replicas(service):
            yield {"alertname": "HighResponseTime", "severity": "warning", **base}
        if service.leaking_pod and self.memory(service, now) > MEMORY_ALERT:
            yield {"alertname": "HighMemoryUsage", "severity": "warning",
                   "pod": service.leaking_pod, **base}  # fmt: skip
        if self._cpu_high(service, now):
            yield {"alertname": "HighCPUUsage", "severity": "warning", **base}
        if service.github_calls and service.github_used > (1 - GITHUB_ALERT) * GITHUB_LIMIT:
            yield {"alertname": "GitHubAPIRateLimitLow", "severity": "warning",
                   "instance": service.instance, **base}  # fmt: skip

    @staticmethod
    def _cpu_high(service: Service, now: float) -> bool:
        """The batch job's half of each period, while it runs."""
        period = service.flap_period
        if not period:
            return False
        return now < service.flap_until and (now % period) < period / 2

    def needs(self, service: Service) -> int:
        """The replicas its load needs."""
        return max(1, math.ceil(service.load / service.spec.capacity))
