"""The `kubernetes.*` actions, with the real kubernetes-asyncio client against an API server.

By default the server is tests/support/fake_kubernetes.py (in memory, deterministic, fault
injection). With REMEDIATOR_TEST_KUBECONFIG=/path/to/kubeconfig the same tests run against that
cluster (kind in CI: .github/workflows/kind.yml): each test gets a namespace of its own (see
tests/support/cluster.py), seeded through the API (Deployments of registry.k8s.io/pause,
revisions made by real rollouts) and deleted afterwards; tests that need the fake's fault
injection, backdated objects or not-ready pods are skipped there, saying so.

    REMEDIATOR_TEST_KUBECONFIG=$HOME/.kube/config .venv/bin/pytest tests/test_kubernetes_actions.py
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, AppsV1Api, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from remediator.actions.base import Outcome, StepContext, StepResult, Transient
from remediator.actions.kubernetes import KubernetesActions, kubernetes_client
from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import (
    CATALOGUE,
    DIAGNOSTIC,
    DeletePod,
    NodeStatus,
    NoParams,
    PatchConfigMap,
    RolloutRestart,
    RolloutStatus,
    RolloutUndo,
    Scale,
    WaitRollout,
)
from tests.support.cluster import Cluster, FakeCluster
from tests.support.fake_kubernetes import FakeKubernetes, seeded_revision
from tests.support.services import free_port

Obj = dict[str, Any]


@pytest.fixture
def fake(cluster: Cluster) -> FakeKubernetes:
    """For tests that need the fake: fault injection, backdated objects, held rollouts."""
    if cluster.fake is None:
        pytest.skip("needs the fake API server (fault injection or backdated objects)")
    return cluster.fake


def template_annotations(dep: Obj) -> dict[str, str]:
    annotations: dict[str, str] = dep["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations


def revision_of(dep: Obj) -> int:
    return int(dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


# -- the catalogue and the client ------------------------------------------------------------


async def test_every_kubernetes_catalogue_name_has_an_implementation(
    actions: KubernetesActions,
) -> None:
    names = {name for name in CATALOGUE if name.startswith("kubernetes.")}
    assert set(actions.actions()) == names
    assert {"kubernetes.wait_rollout", "kubernetes.patch_configmap", "kubernetes.diagnose"} <= names
    assert not CATALOGUE["kubernetes.diagnose"].mutating
    assert not CATALOGUE["kubernetes.node_status"].mutating
    assert "kubernetes.node_status" in DIAGNOSTIC  # its data rides along with the page
    with pytest.raises(ValueError, match="wait_up_to"):
        WaitRollout.model_validate({})


async def test_client_is_none_without_a_cluster_or_kubeconfig(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert await kubernetes_client(None) is None


async def test_client_from_a_kubeconfig_reaches_the_server(
    cluster: Cluster, fake: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    await cluster.seed_deployment("api")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    api = await kubernetes_client(kubeconfig)
    assert api is not None
    try:
        result = await KubernetesActions(api).rollout_status(
            RolloutStatus(), cluster.context("api")
        )
    finally:
        await api.close()
    assert result.outcome is Outcome.OK, result.message


# -- refusals before any call ----------------------------------------------------------------

EVERY_ACTION: list[tuple[str, Any]] = [
    ("rollout_status", RolloutStatus()),
    ("rollout_restart", RolloutRestart()),
    ("scale", Scale(replicas=3, max_replicas=5)),
    ("rollout_undo", RolloutUndo()),
    ("delete_pod", DeletePod(pod="api-1")),
    ("patch_configmap", PatchConfigMap(name="cfg", data={"a": "b"})),
    ("diagnose", NoParams()),
]


@pytest.mark.parametrize(("action", "params"), EVERY_ACTION)
@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "", None])
async def test_protected_or_missing_namespace_is_refused_without_a_call(
    cluster: Cluster,
    actions: KubernetesActions,
    action: str,
    params: Any,
    namespace: str | None,
) -> None:
    context = cluster.context("api")
    context = replace(context, target=replace(context.target, namespace=namespace))
    result: StepResult = await getattr(actions, action)(params, context)
    assert result.outcome is Outcome.FAILED
    assert "refusing" in result.message
    if cluster.fake:
        assert cluster.fake.requests == []


async def test_a_target_that_is_not_a_deployment_is_refused(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    context = cluster.context("api")
    context = replace(context, target=replace(context.target, kind="StatefulSet"))
    result = await actions.rollout_restart(RolloutRestart(), context)
    assert result.outcome is Outcome.FAILED
    assert "StatefulSet" in result.message


# -- rollout_status / wait_rollout -----------------------------------------------------------


async def test_rollout_status_reads_revision_replicas_and_age_of_last_change(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2, revisions=2)
    result = await actions.rollout_status(RolloutStatus(), cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    data = result.data
    assert data["revision"] == 2
    assert (data["replicas"], data["updated_replicas"], data["available_replicas"]) == (2, 2, 2)
    assert data["observed_generation"] >= data["generation"] >= 1
    assert data["complete"] is True
    if cluster.fake:  # seeded two hours ago
        assert 7190 <= data["last_change_age_seconds"] <= 7300
    else:
        assert 0 <= data["last_change_age_seconds"] < 600


async def test_rollout_status_waits_until_the_rollout_completes(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    if cluster.fake:
        cluster.fake.converge_after_reads(cluster.namespace, "api", reads=4)
    restarted = await actions.rollout_restart(RolloutRestart(), cluster.context("api"))
    assert restarted.outcome is Outcome.OK
    if cluster.fake:
        assert (await cluster.deployment("api"))["status"]["updatedReplicas"] == 0
    result = await actions.rollout_status(RolloutStatus(wait_up_to="3m"), cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    assert result.data["complete"] is True
    assert result.data["updated_replicas"] == 2


async def test_wait_rollout_fails_at_its_deadline(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    fake.hold_rollouts = True
    await actions.rollout_restart(RolloutRestart(), cluster.context("api"))
    started = time.monotonic()
    result = await actions.wait_rollout(WaitRollout(wait_up_to="100ms"), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert "not complete after 0.1s" in result.message
    assert time.monotonic() - started < 2
    fake.converge(cluster.namespace, "api")
    done = await actions.wait_rollout(WaitRollout(wait_up_to="100ms"), cluster.context("api"))
    assert done.outcome is Outcome.OK, done.message


async def test_rollout_status_of_a_missing_deployment_fails_not_found(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    result = await actions.rollout_status(RolloutStatus(), cluster.context("nope"))
    assert result.outcome is Outcome.FAILED
    assert result.message == f"deployment {cluster.namespace}/nope not found"


# -- rollout_restart -------------------------------------------------------------------------


async def test_restart_patches_the_template_once_per_run(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api")
    before = await cluster.deployment("api")
    context = cluster.context("api")
    result = await actions.rollout_restart(RolloutRestart(), context)
    assert result.outcome is Outcome.OK, result.message
    await cluster.settle("api")
    after = await cluster.deployment("api")
    restarted_at = template_annotations(after)["kubectl.kubernetes.io/restartedAt"]
    assert datetime.fromisoformat(restarted_at) >= context.run_started_at
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert revision_of(after) == revision_of(before) + 1

    mark = await cluster.mark()
    again = await actions.rollout_restart(RolloutRestart(), context)  # the step re-run
    assert again.outcome is Outcome.SKIPPED
    assert "already restarted by this run" in again.message
    assert await cluster.mark() == mark

    later_run = cluster.context("api", started=datetime.fromisoformat(restarted_at))
    later_run = replace(later_run, run_started_at=later_run.run_started_at + timedelta(seconds=1))
    third = await actions.rollout_restart(RolloutRestart(), later_run)
    assert third.outcome is Outcome.OK


async def test_restart_dry_run_reads_and_says_what_it_would_do(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=3)
    mark = await cluster.mark()
    result = await actions.rollout_restart(RolloutRestart(), cluster.context("api", dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    assert result.message == (
        f"would restart deployment {cluster.namespace}/api: a new restartedAt annotation (3 ready)"
    )
    assert await cluster.mark() == mark


async def test_restart_refuses_with_fewer_ready_than_min_available(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    mark = await cluster.mark()
    result = await actions.rollout_restart(RolloutRestart(min_available=3), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert "refusing to restart" in result.message
    assert "2 ready" in result.message
    assert await cluster.mark() == mark


async def test_restart_min_available_as_a_percentage(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=4, ready=1)  # type: ignore[call-arg]
    refused = await actions.rollout_restart(
        RolloutRestart(min_available="50%"), cluster.context("api")
    )
    assert refused.outcome is Outcome.FAILED
    allowed = await actions.rollout_restart(
        RolloutRestart(min_available="25%"), cluster.context("api")
    )
    assert allowed.outcome is Outcome.OK, allowed.message


async def test_restart_and_wait(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_deployment("api", replicas=2)
    if cluster.fake:
        cluster.fake.converge_after_reads(cluster.namespace, "api", reads=3)
    result = await actions.rollout_restart(RolloutRestart(wait=True), cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    status = (await cluster.deployment("api"))["status"]
    assert status["updatedReplicas"] == status["availableReplicas"] == 2


# -- scale -----------------------------------------------------------------------------------


async def test_scale_to_a_count_and_rerun_is_a_no_op(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    params = Scale(replicas=3, max_replicas=5)
    result = await actions.scale(params, cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    assert result.message == f"scaled deployment {cluster.namespace}/api from 2 to 3"
    assert (await cluster.deployment("api"))["spec"]["replicas"] == 3
    await cluster.settle("api")
    mark = await cluster.mark()
    again = await actions.scale(params, cluster.context("api"))
    assert again.outcome is Outcome.OK
    assert again.message == "already at 3"
    assert await cluster.mark() == mark


async def test_scale_by_is_not_repeated_when_the_step_reruns(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    context = cluster.context("api")
    first = await actions.scale(Scale(by=1, max_replicas=5), context)
    assert first.message == f"scaled deployment {cluster.namespace}/api from 2 to 3"
    await cluster.settle("api")
    again = await actions.scale(Scale(by=1, max_replicas=5), context)  # after a crash
    assert again.message == "already at 3"
    next_run = await actions.scale(Scale(by=1, max_replicas=5), cluster.context("api"))
    assert next_run.message == f"scaled deployment {cluster.namespace}/api from 3 to 4"


async def test_scale_is_clamped_to_its_bounds(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_deployment("api", replicas=2)
    up = await actions.scale(Scale(by=5, max_replicas=4), cluster.context("api"))
    assert up.message == f"scaled deployment {cluster.namespace}/api from 2 to 4"
    await cluster.settle("api")
    down = await actions.scale(
        Scale(replicas=0, min_replicas=3, max_replicas=4), cluster.context("api")
    )
    assert down.message == f"scaled deployment {cluster.namespace}/api from 4 to 3"
    assert (await cluster.deployment("api"))["spec"]["replicas"] == 3


async def test_scale_by_never_moves_against_its_sign(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=3)
    result = await actions.scale(Scale(by=2, max_replicas=2), cluster.context("api"))
    assert result.outcome is Outcome.SKIPPED
    assert (await cluster.deployment("api"))["spec"]["replicas"] == 3


async def test_scale_dry_run(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_deployment("api", replicas=3)
    mark = await cluster.mark()
    result = await actions.scale(Scale(by=2, max_replicas=12), cluster.context("api", dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    assert result.message == f"would scale deployment {cluster.namespace}/api from 3 to 5"
    assert await cluster.mark() == mark


async def test_scale_conflict_is_transient_and_the_retry_finishes(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    fake.fail_next("PATCH", "deployments/scale", 409)
    context = cluster.context("api")
    with pytest.raises(Transient, match="409"):
        await actions.scale(Scale(by=2, max_replicas=8), context)
    retried = await actions.scale(Scale(by=2, max_replicas=8), context)
    assert retried.message == f"scaled deployment {cluster.namespace}/api from 2 to 4"
    assert fake.get("Deployment", cluster.namespace, "api")["spec"]["replicas"] == 4  # type: ignore[index]


async def test_a_stale_resource_version_is_a_409(cluster: Cluster) -> None:
    """What the actions rely on for conditional writes (and the fake emulates): a patch whose
    metadata.resourceVersion is stale is a 409, whatever the patch type; a bad value a 422."""
    await cluster.seed_deployment("api", replicas=2)
    apps, ns = AppsV1Api(cluster.api), cluster.namespace
    scale = await apps.read_namespaced_deployment_scale("api", ns)
    stale = scale.metadata.resource_version
    await apps.patch_namespaced_deployment_scale("api", ns, {"spec": {"replicas": 3}})
    with pytest.raises(ApiException) as raised:
        await apps.patch_namespaced_deployment_scale(
            "api", ns, {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 4}}
        )
    assert raised.value.status == 409
    json_patch = [{"op": "replace", "path": "/metadata/resourceVersion", "value": stale}]
    with pytest.raises(ApiException) as conflict:
        await apps.patch_namespaced_deployment("api", ns, json_patch)
    assert conflict.value.status == 409
    with pytest.raises(ApiException) as invalid:
        await apps.patch_namespaced_deployment_scale("api", ns, {"spec": {"replicas": -1}})
    assert invalid.value.status == 422
    assert (await cluster.deployment("api"))["spec"]["replicas"] == 3


# -- rollout_undo ----------------------------------------------------------------------------


async def test_undo_rolls_back_to_the_previous_revision_once(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", revisions=3)
    context = cluster.context("api")
    result = await actions.rollout_undo(RolloutUndo(), context)
    assert result.outcome is Outcome.OK, result.message
    assert result.message == (
        f"rolled back deployment {cluster.namespace}/api from revision 3 to revision 2"
    )
    await cluster.settle("api")
    dep = await cluster.deployment("api")
    assert seeded_revision(dep) == 2
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert revision_of(dep) == 4  # the reused ReplicaSet takes the next revision, as in k8s

    again = await actions.rollout_undo(RolloutUndo(), context)  # the step re-run
    assert again.outcome is Outcome.SKIPPED
    assert "already rolled back by this run to revision 2" in again.message
    assert seeded_revision(await cluster.deployment("api")) == 2


async def test_undo_after_a_restart_reaches_the_previous_release(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    """A restart makes a revision of its own (release 2, restarted): the undo goes past it to
    release 1, where `kubectl rollout undo` would go back to release 2 and only restart it."""
    await cluster.seed_deployment("api", revisions=2)
    context = cluster.context("api")
    restarted = await actions.rollout_restart(RolloutRestart(), context)
    assert restarted.outcome is Outcome.OK, restarted.message
    await cluster.settle("api")
    assert revision_of(await cluster.deployment("api")) == 3
    result = await actions.rollout_undo(RolloutUndo(), context)
    assert result.outcome is Outcome.OK, result.message
    assert result.message.endswith("from revision 3 to revision 1")
    await cluster.settle("api")
    assert seeded_revision(await cluster.deployment("api")) == 1


async def test_undo_with_only_restarts_before_it_fails_saying_so(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", revisions=1)
    for _ in range(2):  # each restart by a run of its own
        restarted = await actions.rollout_restart(RolloutRestart(), cluster.context("api"))
        assert restarted.outcome is Outcome.OK, restarted.message
        await cluster.settle("api")
    mark = await cluster.mark()
    result = await actions.rollout_undo(RolloutUndo(), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert result.message == (
        f"deployment {cluster.namespace}/api has no earlier release: revisions 1, 2 differ "
        "from revision 3 only by restarts"
    )
    assert await cluster.mark() == mark


async def test_undo_to_a_given_revision(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_deployment("api", revisions=3)
    result = await actions.rollout_undo(RolloutUndo(to_revision=1), cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    assert seeded_revision(await cluster.deployment("api")) == 1
    missing = await actions.rollout_undo(RolloutUndo(to_revision=9), cluster.context("api"))
    assert missing.outcome is Outcome.FAILED
    assert "no revision 9" in missing.message


async def test_undo_without_a_previous_revision_fails(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", revisions=1)
    mark = await cluster.mark()
    result = await actions.rollout_undo(RolloutUndo(), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert "no previous revision" in result.message
    assert await cluster.mark() == mark


async def test_undo_dry_run(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_deployment("api", revisions=2)
    mark = await cluster.mark()
    result = await actions.rollout_undo(RolloutUndo(), cluster.context("api", dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    assert result.message == (
        f"would roll back deployment {cluster.namespace}/api from revision 2 to revision 1"
    )
    assert await cluster.mark() == mark


async def test_undo_only_if_changed_within(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("old", revisions=2, changed_ago=timedelta(hours=2))  # type: ignore[call-arg]
    await cluster.seed_deployment("new", revisions=2, changed_ago=timedelta(minutes=5))  # type: ignore[call-arg]
    params = RolloutUndo(only_if_changed_within="1h")
    old = await actions.rollout_undo(params, cluster.context("old"))
    assert old.outcome is Outcome.SKIPPED
    assert "older than 3600s" in old.message
    assert seeded_revision(fake.get("Deployment", cluster.namespace, "old")) == 2  # type: ignore[arg-type]
    new = await actions.rollout_undo(params, cluster.context("new"))
    assert new.outcome is Outcome.OK, new.message


async def test_a_restart_is_not_a_change_of_release_for_only_if_changed_within(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    """Release 2 came out two hours ago; a restart just now made revision 3 of it. An undo
    meant only for a recent release (a bad deploy) leaves it: what runs did not change."""
    await cluster.seed_deployment("api", revisions=2, changed_ago=timedelta(hours=2))  # type: ignore[call-arg]
    restarted = await actions.rollout_restart(RolloutRestart(), cluster.context("api"))
    assert restarted.outcome is Outcome.OK, restarted.message
    params = RolloutUndo(only_if_changed_within="1h")
    result = await actions.rollout_undo(params, cluster.context("api"))
    assert result.outcome is Outcome.SKIPPED, result.message
    assert seeded_revision(fake.get("Deployment", cluster.namespace, "api")) == 2  # type: ignore[arg-type]


async def test_undo_conflict_is_transient(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", revisions=2)
    fake.fail_next("PATCH", "deployments", 409)
    with pytest.raises(Transient):
        await actions.rollout_undo(RolloutUndo(), cluster.context("api"))
    assert seeded_revision(fake.get("Deployment", cluster.namespace, "api")) == 2  # type: ignore[arg-type]


# -- delete_pod ------------------------------------------------------------------------------


async def test_delete_pod_of_the_target_and_rerun(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=3)
    victim = (await cluster.pods("api"))[0]["metadata"]["name"]
    params = DeletePod(pod=victim, grace_period_seconds=0)
    result = await actions.delete_pod(params, cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    assert victim not in {p["metadata"]["name"] for p in await cluster.pods("api")}
    again = await actions.delete_pod(params, cluster.context("api"))
    assert again.outcome is Outcome.OK
    assert "already" in again.message


async def test_delete_pod_refuses_a_pod_not_of_the_target(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    await cluster.seed_deployment("other", replicas=2)
    await cluster.seed_pod("lookalike", {"app": "api"})  # matches the selector, owned by none
    other_pod = (await cluster.pods("other"))[0]["metadata"]["name"]
    mark = await cluster.mark()
    for pod in (other_pod, "lookalike"):
        result = await actions.delete_pod(DeletePod(pod=pod), cluster.context("api"))
        assert result.outcome is Outcome.FAILED
        assert "is not a pod of deployment" in result.message
    assert await cluster.mark() == mark
    names = {p["metadata"]["name"] for p in await cluster.pods("api")}
    assert "lookalike" in names


async def test_delete_pod_refuses_below_min_available(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    victim = (await cluster.pods("api"))[0]["metadata"]["name"]
    result = await actions.delete_pod(
        DeletePod(pod=victim, min_available=2), cluster.context("api")
    )
    assert result.outcome is Outcome.FAILED
    assert "1 ready would remain" in result.message
    assert victim in {p["metadata"]["name"] for p in await cluster.pods("api")}


async def test_delete_pod_dry_run(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_deployment("api", replicas=2)
    victim = (await cluster.pods("api"))[0]["metadata"]["name"]
    result = await actions.delete_pod(DeletePod(pod=victim), cluster.context("api", dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    assert result.message.startswith(f"would delete pod {cluster.namespace}/{victim}")
    assert victim in {p["metadata"]["name"] for p in await cluster.pods("api")}


async def test_delete_pod_with_an_empty_selector_is_an_error(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", labels={})  # type: ignore[call-arg]
    fake.requests.clear()
    result = await actions.delete_pod(DeletePod(pod="anything"), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert "selector is empty" in result.message
    assert [r[0] for r in fake.requests] == ["GET"]  # the deployment, and no listing at all


# -- patch_configmap -------------------------------------------------------------------------


async def test_patch_configmap_sets_keys_once(cluster: Cluster, actions: KubernetesActions) -> None:
    await cluster.seed_configmap("cfg", {"mode": "normal", "keep": "me"})
    params = PatchConfigMap(name="cfg", data={"mode": "degraded"})
    dry = await actions.patch_configmap(params, cluster.context("api", dry_run=True))
    assert dry.outcome is Outcome.DRY_RUN
    assert dry.message == f"would set mode in configmap {cluster.namespace}/cfg"
    assert (await cluster.configmap("cfg"))["data"]["mode"] == "normal"
    result = await actions.patch_configmap(params, cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    assert (await cluster.configmap("cfg"))["data"] == {"mode": "degraded", "keep": "me"}
    mark = await cluster.mark()
    again = await actions.patch_configmap(params, cluster.context("api"))
    assert again.message == f"configmap {cluster.namespace}/cfg already set"
    assert await cluster.mark() == mark
    if cluster.fake:
        patches = [r for r in cluster.fake.requests if r[0] == "PATCH"]
        assert [r[2] for r in patches] == ["application/merge-patch+json"]


async def test_patch_missing_configmap_fails(cluster: Cluster, actions: KubernetesActions) -> None:
    params = PatchConfigMap(name="nope", data={"a": "b"})
    result = await actions.patch_configmap(params, cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert result.message == f"configmap {cluster.namespace}/nope not found"


# -- diagnose --------------------------------------------------------------------------------


async def test_diagnose_collects_pods_events_and_history(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2, revisions=2)
    mark = await cluster.mark()
    result = await actions.diagnose(NoParams(), cluster.context("api"))
    assert result.outcome is Outcome.OK, result.message
    assert [h["revision"] for h in result.data["history"]] == [1, 2]
    assert len(result.data["pods"]) == 2
    assert all(p["phase"] == "Running" and p["ready"] for p in result.data["pods"])
    assert any(e["reason"] == "ScalingReplicaSet" for e in result.data["events"])
    assert result.data["rollout"]["revision"] == 2
    assert await cluster.mark() == mark


async def test_diagnose_says_how_restarting_containers_last_ended(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    assert isinstance(cluster, FakeCluster)
    await cluster.seed_deployment("api", replicas=2, ready=0)
    result = await actions.diagnose(NoParams(), cluster.context("api"))
    [first, second] = result.data["pods"]
    for pod in (first, second):
        assert pod["restarts"] == 3
        [ended] = pod["last_terminated"]
        assert ended.startswith("app: OOMKilled (exit 137) at ")
    await cluster.seed_deployment("web", replicas=1)
    [healthy] = (await actions.diagnose(NoParams(), cluster.context("web"))).data["pods"]
    assert healthy["last_terminated"] == []


# -- node_status -----------------------------------------------------------------------------


def node_context(name: str) -> StepContext:
    return StepContext(RenderedTarget("Node", name, None, None, None), False, datetime.now(UTC))


async def test_node_status_reads_a_ready_node_and_the_pods_on_it(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api", replicas=2)
    node = (await cluster.pods("api"))[0]["spec"]["nodeName"]
    ours = [p for p in await cluster.pods("api") if p["spec"]["nodeName"] == node]
    await cluster.ensure_node(node)
    mark = await cluster.mark()
    result = await actions.node_status(NodeStatus(), node_context(node))
    assert result.outcome is Outcome.OK, result.message
    data = result.data
    assert (data["node"], data["ready"], data["unschedulable"]) == (node, "True", False)
    ready = next(c for c in data["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert datetime.fromisoformat(ready["last_transition_time"]) <= datetime.now(UTC)
    assert {"MemoryPressure", "DiskPressure", "PIDPressure"} <= {
        c["type"] for c in data["conditions"]
    }
    assert {"cpu", "memory", "pods"} <= set(data["capacity"])
    assert {"cpu", "memory", "pods"} <= set(data["allocatable"])
    pods = data["pods"]
    assert pods["total"] >= len(ours)
    assert pods["by_phase"]["Running"] >= len(ours)
    if cluster.fake:  # on kind, the node's system pods are listed too
        assert pods == {
            "total": 2,
            "by_phase": {"Running": 2},
            "not_ready_count": 0,
            "not_ready": [],
        }
        assert (
            result.message
            == f"node {node}: Ready True (KubeletReady), 0 taints; 2 pods (2 Running), 0 not ready"
        )
    assert await cluster.mark() == mark


UNREACHABLE = [
    {
        "key": "node.kubernetes.io/unreachable",
        "effect": "NoSchedule",
        "timeAdded": "2027-01-15T08:00:00Z",
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "effect": "NoExecute",
        "timeAdded": "2027-01-15T08:00:05Z",
    },
]


async def test_node_status_says_why_a_node_is_not_ready_and_which_pods_are_not(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    fake.seed_node("worker-2", ready="Unknown", unschedulable=True, taints=UNREACHABLE)
    fake.seed_node("worker-3")
    fake.seed_pod("prod", "api-a", {"app": "api"}, node="worker-2")
    fake.seed_pod("prod", "web-b", {"app": "web"}, node="worker-2", ready=False, phase="Pending")
    fake.seed_pod("monitoring", "exporter", {"app": "exporter"}, node="worker-2", ready=False)
    fake.seed_pod("batch", "job-1", {"app": "job"}, node="worker-2", ready=False, phase="Succeeded")
    fake.seed_pod("prod", "elsewhere", {"app": "api"}, node="worker-3", ready=False)
    fake.requests.clear()
    result = await actions.node_status(NodeStatus(), node_context("worker-2"))
    assert result.outcome is Outcome.OK, result.message
    assert result.message == (
        "node worker-2: Ready Unknown (NodeStatusUnknown), unschedulable, 2 taints; "
        "4 pods (1 Pending, 2 Running, 1 Succeeded), 2 not ready"
    )
    data = result.data
    ready = next(c for c in data["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert all(c["status"] == "Unknown" for c in data["conditions"])
    assert data["taints"] == [
        {
            "key": "node.kubernetes.io/unreachable",
            "value": None,
            "effect": "NoSchedule",
            "time_added": "2027-01-15T08:00:00+00:00",
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "value": None,
            "effect": "NoExecute",
            "time_added": "2027-01-15T08:00:05+00:00",
        },
    ]
    assert (data["capacity"]["cpu"], data["allocatable"]["cpu"]) == ("4", "3800m")
    assert data["pods"] == {
        "total": 4,
        "by_phase": {"Pending": 1, "Running": 2, "Succeeded": 1},
        "not_ready_count": 2,  # a finished pod is never ready, and is not counted
        "not_ready": ["monitoring/exporter", "prod/web-b"],
    }
    assert [(method, path) for method, path, _ in fake.requests] == [
        ("GET", "/api/v1/nodes/worker-2"),
        ("GET", "/api/v1/pods"),
    ]
    limited = await actions.node_status(NodeStatus(limit=1), node_context("worker-2"))
    assert limited.data["pods"]["not_ready"] == ["monitoring/exporter"]
    assert limited.data["pods"]["not_ready_count"] == 2


async def test_node_status_of_a_node_that_kubelet_reports_not_ready(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    fake.seed_node("worker-2", ready="False")
    result = await actions.node_status(NodeStatus(), node_context("worker-2"))
    assert result.message.startswith("node worker-2: Ready False (KubeletNotReady), 0 taints")
    [ready] = [c for c in result.data["conditions"] if c["type"] == "Ready"]
    assert ready["message"] == "container runtime is down"


async def test_node_status_of_a_missing_node_fails_not_found(
    cluster: Cluster, actions: KubernetesActions
) -> None:
    result = await actions.node_status(NodeStatus(), node_context("no-such-node"))
    assert result.outcome is Outcome.FAILED
    assert result.message == "node no-such-node not found"


async def test_node_status_retries_a_busy_server_and_names_the_cluster_role_when_forbidden(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    fake.seed_node("worker-2")
    fake.fail_next("GET", "nodes", 503)
    with pytest.raises(Transient, match="503"):
        await actions.node_status(NodeStatus(), node_context("worker-2"))
    fake.fail_next("GET", "pods", 403)
    result = await actions.node_status(NodeStatus(), node_context("worker-2"))
    assert result.outcome is Outcome.FAILED
    assert "forbidden (403)" in result.message
    assert "a ClusterRole with that verb on that resource (RBAC)" in result.message


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(
            RenderedTarget("Deployment", "api", "prod", None, None), "reads Nodes", id="deployment"
        ),
        pytest.param(
            RenderedTarget("Node", "worker-2", "prod", None, None),
            "nodes have none",
            id="namespace",
        ),
        pytest.param(
            RenderedTarget("Node", "worker-2,metadata.namespace=prod", None, None, None),
            "not a Kubernetes object name",
            id="selector-injection",
        ),
        pytest.param(RenderedTarget("Node", "", None, None, None), "not a Kubernetes", id="empty"),
    ],
)
async def test_node_status_refuses_anything_but_a_node_by_name_without_a_call(
    cluster: Cluster, actions: KubernetesActions, target: RenderedTarget, expected: str
) -> None:
    context = StepContext(target, False, datetime.now(UTC))
    result = await actions.node_status(NodeStatus(), context)
    assert result.outcome is Outcome.FAILED
    assert expected in result.message
    if cluster.fake:
        assert cluster.fake.requests == []


@pytest.mark.parametrize(("action", "params"), EVERY_ACTION)
async def test_no_other_action_touches_a_node(
    cluster: Cluster, actions: KubernetesActions, action: str, params: Any
) -> None:
    await cluster.ensure_node("worker-2")
    mark = await cluster.mark()
    result: StepResult = await getattr(actions, action)(params, node_context("worker-2"))
    assert result.outcome is Outcome.FAILED
    assert "act on Deployments, not 'Node'" in result.message
    assert await cluster.mark() == mark
    if cluster.fake:
        assert cluster.fake.requests == []


# -- API errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [409, 429, 500, 503])
async def test_retryable_statuses_raise_transient(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions, status: int
) -> None:
    await cluster.seed_deployment("api")
    fake.fail_next("GET", "deployments", status)
    with pytest.raises(Transient, match=str(status)):
        await actions.rollout_status(RolloutStatus(), cluster.context("api"))


async def test_forbidden_fails_with_the_rbac_hint(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api")
    fake.fail_next("PATCH", "deployments", 403)
    result = await actions.rollout_restart(RolloutRestart(), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert "forbidden (403)" in result.message
    assert "RBAC" in result.message


async def test_other_statuses_fail_with_status_and_reason(
    cluster: Cluster, fake: FakeKubernetes, actions: KubernetesActions
) -> None:
    await cluster.seed_deployment("api")
    fake.fail_next("PATCH", "deployments", 422)
    result = await actions.rollout_restart(RolloutRestart(), cluster.context("api"))
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith("Kubernetes API 422")


async def test_an_unreachable_server_is_transient() -> None:
    api = ApiClient(configuration=Configuration(host=f"http://127.0.0.1:{free_port()}"))
    target = RenderedTarget("Deployment", "api", "prod", None, None)
    try:
        with pytest.raises(Transient, match="unreachable"):
            await KubernetesActions(api).rollout_status(
                RolloutStatus(), StepContext(target, False, datetime.now(UTC))
            )
    finally:
        await api.close()
