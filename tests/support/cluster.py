"""A namespace the `kubernetes.*` actions act in: on tests/support/fake_kubernetes.py, or with
REMEDIATOR_TEST_KUBECONFIG=/path/to/kubeconfig on that cluster (kind in CI), seeded and
inspected the same way on both (see the docstring of tests/test_kubernetes_actions.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import ApiClient, AppsV1Api, Configuration, CoreV1Api

from remediator.actions.base import StepContext
from remediator.actions.kubernetes import kubernetes_client
from remediator.engine.plan import RenderedTarget
from tests.support.fake_kubernetes import FakeKubernetes, Obj, pod_template
from tests.support.services import free_port

KUBECONFIG = os.environ.get("REMEDIATOR_TEST_KUBECONFIG")


class Cluster:
    """A namespace to act in, seeded and inspected the same way on the fake and on kind."""

    fake: FakeKubernetes | None = None

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.apps, self.core = AppsV1Api(api), CoreV1Api(api)

    def context(self, name: str, *, dry_run: bool = False, started: datetime | None = None) -> Any:
        target = RenderedTarget("Deployment", name, self.namespace, None, None)
        return StepContext(target, dry_run, started or datetime.now(UTC))

    async def seed_deployment(self, name: str, *, replicas: int = 2, revisions: int = 1) -> None:
        raise NotImplementedError

    async def seed_configmap(self, name: str, data: dict[str, str]) -> None:
        raise NotImplementedError

    async def seed_pod(self, name: str, labels: dict[str, str]) -> None:
        raise NotImplementedError

    async def ensure_node(self, name: str) -> None:
        """The node `name` exists and is Ready (on kind it does already: its pods run there)."""

    async def deployment(self, name: str) -> Obj:
        found = await self.apps.read_namespaced_deployment(name, self.namespace)
        return self._json(found)

    async def pods(self, name: str) -> list[Obj]:
        listed = await self.core.list_namespaced_pod(self.namespace, label_selector=f"app={name}")
        return [self._json(p) for p in listed.items if not p.metadata.deletion_timestamp]

    async def configmap(self, name: str) -> Obj:
        return self._json(await self.core.read_namespaced_config_map(name, self.namespace))

    async def settle(self, name: str) -> None:
        """Let the controllers finish with the Deployment (the fake's are done already)."""

    async def mark(self) -> object:
        """Something that changes when anything in the namespace is written."""
        listed = await self.apps.list_namespaced_deployment(self.namespace)
        maps = await self.core.list_namespaced_config_map(self.namespace)
        return sorted(
            (o.metadata.name, o.metadata.resource_version) for o in listed.items + maps.items
        )

    def _json(self, model: Any) -> Obj:
        data: Obj = self.api.sanitize_for_serialization(model)
        return data


class FakeCluster(Cluster):
    def __init__(self, api: ApiClient, fake: FakeKubernetes) -> None:
        super().__init__(api, "prod")
        self.fake = fake

    async def seed_deployment(
        self,
        name: str,
        *,
        replicas: int = 2,
        revisions: int = 1,
        ready: int | None = None,
        changed_ago: timedelta = timedelta(hours=2),
        labels: dict[str, str] | None = None,
    ) -> None:
        assert self.fake is not None
        self.fake.seed_deployment(
            self.namespace,
            name,
            replicas=replicas,
            revisions=revisions,
            ready=ready,
            changed_ago=changed_ago,
            labels=labels,
        )

    async def seed_configmap(self, name: str, data: dict[str, str]) -> None:
        assert self.fake is not None
        self.fake.seed_configmap(self.namespace, name, data)

    async def seed_pod(self, name: str, labels: dict[str, str]) -> None:
        assert self.fake is not None
        self.fake.seed_pod(self.namespace, name, labels)

    async def ensure_node(self, name: str) -> None:
        assert self.fake is not None
        if self.fake.get("Node", "", name) is None:
            self.fake.seed_node(name)

    async def mark(self) -> object:
        assert self.fake is not None
        return len(self.fake.writes)


class KindCluster(Cluster):
    """A namespace of a real cluster; seeding waits for the real controllers."""

    async def seed_deployment(self, name: str, *, replicas: int = 2, revisions: int = 1) -> None:
        labels = {"app": name}
        body: Any = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": pod_template(labels, 1),
            },
        }
        await self.apps.create_namespaced_deployment(self.namespace, body)
        await self.rolled_out(name)
        for revision in range(2, revisions + 1):
            patch = [
                {"op": "replace", "path": "/spec/template", "value": pod_template(labels, revision)}
            ]
            await self.apps.patch_namespaced_deployment(name, self.namespace, patch)
            await self.rolled_out(name)

    async def settle(self, name: str) -> None:
        await self.rolled_out(name)

    async def rolled_out(self, name: str, within: float = 180) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            dep = await self.apps.read_namespaced_deployment(name, self.namespace)
            status, want = dep.status, dep.spec.replicas
            if (
                (status.observed_generation or 0) >= dep.metadata.generation
                and (status.updated_replicas or 0) == want
                and (status.replicas or 0) == want
                and (status.available_replicas or 0) == want
            ):
                return
            await asyncio.sleep(0.5)  # a real cluster's controllers: polled, not raced
        raise AssertionError(f"deployment {name} did not roll out within {within}s")

    async def seed_configmap(self, name: str, data: dict[str, str]) -> None:
        body: Any = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": data,
        }
        await self.core.create_namespaced_config_map(self.namespace, body)

    async def seed_pod(self, name: str, labels: dict[str, str]) -> None:
        template = pod_template(labels, 0)
        body: Any = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": template["spec"],
        }
        await self.core.create_namespaced_pod(self.namespace, body)


@contextlib.asynccontextmanager
async def open_cluster() -> AsyncIterator[Cluster]:
    """A namespace of its own on the cluster of REMEDIATOR_TEST_KUBECONFIG, deleted afterwards;
    without it, the fake API server."""
    if KUBECONFIG:
        api = await kubernetes_client(Path(KUBECONFIG))
        assert api is not None
        namespace = f"remediator-test-{uuid.uuid4().hex[:8]}"
        core = CoreV1Api(api)
        namespace_body: Any = {"metadata": {"name": namespace}}
        await core.create_namespace(namespace_body)
        try:
            yield KindCluster(api, namespace)
        finally:
            await core.delete_namespace(namespace)
            await api.close()
        return
    fake = FakeKubernetes()
    url = await fake.start(free_port())
    api = ApiClient(configuration=Configuration(host=url))
    try:
        yield FakeCluster(api, fake)
    finally:
        await api.close()
        await fake.close()
