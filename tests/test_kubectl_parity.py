"""kubectl is the oracle: each `kubernetes.*` action that has a kubectl equivalent leaves the
same objects as kubectl does, on two copies of the same cluster.

`kubectl` itself (the binary on PATH) acts on one fake API server and Remediator's action on
another, both seeded alike; the Deployments, their ReplicaSets, ConfigMaps and deleted pods are
then compared. What differs by nature is left out of the comparison: identities (uid, names made
of a hash, resourceVersion), times (the restart annotation's value is a time: each side's is
checked to be one), managedFields (compared on their own below: each side credits itself), and
Remediator's own `remediator/*` annotations, its crash-safe records of what it did.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from remediator.actions.base import Outcome, StepContext, StepResult
from remediator.actions.kubernetes import KubernetesActions
from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import (
    DeletePod,
    PatchConfigMap,
    RolloutRestart,
    RolloutUndo,
    Scale,
)
from tests.support.fake_kubernetes import KUBECONFIG, FakeKubernetes, Obj
from tests.support.services import free_port, missing_service

NAMESPACE = "shop"
NAME = "web"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CHANGE_CAUSE = "kubernetes.io/change-cause"
Seed = Callable[[FakeKubernetes], None]


@dataclass
class Twins:
    """Two fake clusters seeded alike: kubectl acts on one, Remediator on the other."""

    by_kubectl: FakeKubernetes
    by_remediator: FakeKubernetes
    kubeconfig: Path
    api: ApiClient

    def seed(self, seed: Seed) -> None:
        seed(self.by_kubectl)
        seed(self.by_remediator)

    async def kubectl(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.kubeconfig.parent / 'cache'}",
            "--request-timeout=10s",
            "-n",
            NAMESPACE,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
        return out.decode()

    async def act(self, action: str, params: Any) -> StepResult:
        actions = KubernetesActions(self.api, poll_interval=0.01)
        target = RenderedTarget("Deployment", NAME, NAMESPACE, None, None)
        result = await actions.actions()[action](params, StepContext(target, False, _now()))
        assert result.outcome is Outcome.OK, result.message
        return result


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def twins(tmp_path: Path) -> AsyncIterator[Twins]:
    if shutil.which("kubectl") is None:
        missing_service("kubectl", "install it (kubectl 1.27 or newer) to compare with it")
    by_kubectl, by_remediator = FakeKubernetes(), FakeKubernetes()
    await by_kubectl.start(free_port())
    await by_remediator.start(free_port())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=by_kubectl.url))
    api = ApiClient(Configuration(host=by_remediator.url))
    try:
        yield Twins(by_kubectl, by_remediator, kubeconfig, api)
    finally:
        await api.close()
        await by_kubectl.close()
        await by_remediator.close()


# -- what is compared ---------------------------------------------------------------------------

_IDENTITY = {"uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences"}


def comparable(value: Any) -> Any:
    """`value` without what differs by nature between two clusters (see the module's doc)."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if key in _IDENTITY or key == "pod-template-hash" or key.startswith("remediator/"):
                continue
            kept[key] = _a_time(item) if key == RESTARTED_AT else comparable(item)
        return kept
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def _a_time(value: str) -> str:
    datetime.fromisoformat(value.replace("Z", "+00:00"))  # each side's is a time
    return "<a time>"


def deployment_state(fake: FakeKubernetes) -> Obj:
    """The Deployment's metadata and spec, and its ReplicaSets by revision."""
    deployment = fake.get("Deployment", NAMESPACE, NAME)
    assert deployment is not None
    replica_sets = {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: {
            "annotations": rs["metadata"]["annotations"],
            "replicas": rs["spec"]["replicas"],
            "template": rs["spec"]["template"],
        }
        for rs in fake.replica_sets_of(NAMESPACE, NAME)
    }
    state = {
        "metadata": {
            "annotations": deployment["metadata"].get("annotations", {}),
            "labels": deployment["metadata"].get("labels", {}),
            "generation": deployment["metadata"]["generation"],
        },
        "spec": deployment["spec"],
        "replica_sets": replica_sets,
    }
    return dict(comparable(state))


def managers(obj: Obj | None) -> set[str]:
    assert obj is not None
    return {entry["manager"] for entry in obj["metadata"].get("managedFields", [])}


# -- seeds --------------------------------------------------------------------------------------


def three_releases(fake: FakeKubernetes) -> None:
    """Revision 1 and 2 deployed without a change-cause; revision 3 with one."""
    fake.seed_deployment(NAMESPACE, NAME, replicas=3, revisions=3, causes={3: "deploy v1.6.0"})


def with_grace(seconds: int) -> Seed:
    """A Deployment whose pods say how long they need to stop."""

    def seed(fake: FakeKubernetes) -> None:
        fake.seed_deployment(NAMESPACE, NAME, replicas=3)
        for pod in fake.pods_of(NAMESPACE, NAME):
            pod["spec"]["terminationGracePeriodSeconds"] = seconds

    return seed


# -- the comparisons ----------------------------------------------------------------------------

Act = Callable[[Twins], Coroutine[Any, Any, object]]

CASES: list[tuple[str, Seed, tuple[str, ...], str, Any]] = [
    ("rollout restart", three_releases, ("rollout", "restart", f"deployment/{NAME}"),
     "kubernetes.rollout_restart", RolloutRestart()),
    ("scale to 5", three_releases, ("scale", f"deployment/{NAME}", "--replicas=5"),
     "kubernetes.scale", Scale(replicas=5, max_replicas=10)),
    ("rollout undo", three_releases, ("rollout", "undo", f"deployment/{NAME}"),
     "kubernetes.rollout_undo", RolloutUndo()),
    ("rollout undo --to-revision=1", three_releases,
     ("rollout", "undo", f"deployment/{NAME}", "--to-revision=1"),
     "kubernetes.rollout_undo", RolloutUndo(to_revision=1)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("seed", "command", "action", "params"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_a_deployment_action_ends_as_kubectl_leaves_it(
    twins: Twins, seed: Seed, command: tuple[str, ...], action: str, params: Any
) -> None:
    twins.seed(seed)
    await twins.kubectl(*command)
    await twins.act(action, params)
    by_kubectl = deployment_state(twins.by_kubectl)
    by_remediator = deployment_state(twins.by_remediator)
    assert by_remediator == by_kubectl, json.dumps(
        {"kubectl": by_kubectl, "remediator": by_remediator}, indent=1, sort_keys=True
    )


async def test_undo_takes_the_change_cause_of_the_release_it_restores(twins: Twins) -> None:
    """Revision 3 (v1.6.0) carried a change-cause, revision 2 none: after the undo to
    revision 2, the Deployment and its restored ReplicaSet carry none, as with kubectl, so
    `kubectl rollout history` does not label v1.5.0 with v1.6.0's cause."""
    twins.seed(three_releases)
    await twins.act("kubernetes.rollout_undo", RolloutUndo())
    deployment = twins.by_remediator.get("Deployment", NAMESPACE, NAME)
    assert deployment is not None
    assert CHANGE_CAUSE not in deployment["metadata"]["annotations"]
    restored = [
        rs
        for rs in twins.by_remediator.replica_sets_of(NAMESPACE, NAME)
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    ]
    assert [CHANGE_CAUSE in rs["metadata"]["annotations"] for rs in restored] == [False]


async def test_a_configmap_patch_ends_as_kubectl_patch_leaves_it(twins: Twins) -> None:
    twins.seed(lambda fake: fake.seed_configmap(NAMESPACE, "settings", {"a": "1", "b": "2"}))
    wanted = {"b": "3", "c": "4"}
    await twins.kubectl("patch", "configmap", "settings", "--type=merge", "-p",
                        json.dumps({"data": wanted}))  # fmt: skip
    await twins.act("kubernetes.patch_configmap", PatchConfigMap(name="settings", data=wanted))
    configmaps = [
        comparable(fake.get("ConfigMap", NAMESPACE, "settings"))
        for fake in (twins.by_kubectl, twins.by_remediator)
    ]
    assert configmaps[1] == configmaps[0]


@pytest.mark.parametrize(
    ("kubectl_flags", "params", "grace"),
    [
        ((), {}, 60),  # neither says: the pod's own 60 s
        (("--grace-period=10",), {"grace_period_seconds": 10}, 10),  # both say 10 s
    ],
    ids=["the pod's own grace", "a grace the policy sets"],
)
async def test_a_pod_is_deleted_with_the_grace_kubectl_gives_it(
    twins: Twins, kubectl_flags: tuple[str, ...], params: dict[str, Any], grace: int
) -> None:
    twins.seed(with_grace(60))
    doomed = [fake.pods_of(NAMESPACE, NAME)[0]["metadata"]["name"] for fake in
              (twins.by_kubectl, twins.by_remediator)]  # fmt: skip
    await twins.kubectl("delete", "pod", doomed[0], "--wait=false", *kubectl_flags)
    await twins.act("kubernetes.delete_pod", DeletePod(pod=doomed[1], **params))
    given = [
        [pod["metadata"]["deletionGracePeriodSeconds"] for pod in fake.deleted]
        for fake in (twins.by_kubectl, twins.by_remediator)
    ]
    assert given == [[grace], [grace]]


async def test_every_write_is_credited_to_remediator_in_managed_fields(twins: Twins) -> None:
    """As kubectl names itself (kubectl-rollout, kubectl-patch), every write of Remediator
    names it: managedFields, and the audit log, credit the change to `remediator`."""
    twins.seed(three_releases)
    twins.by_remediator.seed_configmap(NAMESPACE, "settings", {"a": "1"})
    await twins.act("kubernetes.rollout_restart", RolloutRestart())
    await twins.act("kubernetes.scale", Scale(by=1, max_replicas=10))
    await twins.act("kubernetes.rollout_undo", RolloutUndo())
    await twins.act("kubernetes.patch_configmap", PatchConfigMap(name="settings", data={"a": "2"}))
    fake = twins.by_remediator
    assert managers(fake.get("Deployment", NAMESPACE, NAME)) == {"remediator"}
    assert managers(fake.get("ConfigMap", NAMESPACE, "settings")) == {"remediator"}
    await twins.kubectl("rollout", "restart", f"deployment/{NAME}")
    assert managers(twins.by_kubectl.get("Deployment", NAMESPACE, NAME)) == {"kubectl-rollout"}
