"""The `kubernetes.*` actions, against the API server with kubernetes-asyncio.

Each action acts on its target Deployment and on nothing else: a target outside a namespace,
or in kube-system, kube-public or kube-node-lease, is refused before any API call; a pod is
deleted only when it belongs to the target (owned by one of its ReplicaSets and matching its
selector), and an empty selector is an error, never "everything". One action reads beyond a
namespace: `kubernetes.node_status` reads a Node and the pods on it, cluster-wide, and writes
nothing (a Node target allows no change: policy.schema).

Every action reads before it writes, so that a step re-run after a crash finds its work done:
a restart, scale or undo records when it was made (an annotation on the Deployment) and a
record newer than the run's start is not acted on again. In dry-run the reads happen and the
result says what would be done.

Errors: 409, 429, 5xx and dropped connections raise Transient (the engine retries); a missing
Deployment, a 403 (with the RBAC hint) or any other status is a failed result.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import (
    ApiClient,
    AppsV1Api,
    Configuration,
    CoreV1Api,
    V1DeleteOptions,
    V1Preconditions,
)
from kubernetes_asyncio.client.exceptions import ApiException

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
from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import (
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

PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CHANGE_CAUSE = "kubernetes.io/change-cause"
SCALED = "remediator/scaled"  # {"at": ISO time, "from": n, "to": m}
UNDONE = "remediator/undone"  # {"at": ISO time, "from": revision, "to": revision}
POD_TEMPLATE_HASH = "pod-template-hash"
# Annotations of the Deployment that an undo keeps, and never takes from the ReplicaSet: the
# list kubectl rollout undo keeps (annotationsToSkip in kubectl's rollback.go; every other
# annotation of the Deployment is replaced by the ReplicaSet's, which the controller copied
# from the Deployment when that revision was current), and this service's own records.
_KUBECTL_KEEPS_ON_UNDO = frozenset(
    {
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
        "deprecated.deployment.rollback.to",
    }
)
_KEPT_ON_UNDO = _KUBECTL_KEEPS_ON_UNDO | {SCALED, UNDONE}
# Every write names this service, so that managedFields and the audit log credit it.
FIELD_MANAGER = "remediator"
_SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_DEFAULT_PROGRESS_DEADLINE = 600.0
_EVENTS_KEPT = 30

# Each request's bound: kubernetes-asyncio sets none, so a request to an API server that stopped
# answering (a dead route, a failover) would hold its step until the step's timeout, where a new
# connection may answer at once. Connecting, and each wait for the answer's next bytes, not the
# whole answer: a large list that keeps arriving is not cut off. A timeout is Transient: the
# runner tries the step again. Every call passes it.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(sock_connect=5, sock_read=10)

F = TypeVar("F", bound=Callable[..., Awaitable[StepResult]])


async def kubernetes_client(kubeconfig: Path | None) -> ApiClient | None:
    """A client: the pod's service account in a cluster, else `kubeconfig`, else None (dry-run).

    The caller closes it (`await client.close()`).
    """
    configuration = Configuration()
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if in_cluster and await asyncio.to_thread(_SERVICE_ACCOUNT_TOKEN.exists):
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    elif kubeconfig is not None:
        await kube_config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
        )
    else:
        return None
    return ApiClient(configuration=configuration)


class _Done(Exception):
    """Raised inside an action to end it with a result (a refusal, a not-found)."""

    def __init__(self, result: StepResult) -> None:
        super().__init__(result.message)
        self.result = result


def _calls_api(refuse: Callable[[RenderedTarget], StepResult | None]) -> Callable[[F], F]:
    """Refuse a wrong target before any call (`refuse`), then map API and connection errors
    to Transient or a failed result with a useful message."""

    def decorate(method: F) -> F:
        @wraps(method)
        async def wrapper(self: KubernetesActions, params: Any, context: StepContext) -> StepResult:
            refusal = refuse(context.target)
            if refusal is not None:
                return refusal
            try:
                return await method(self, params, context)
            except _Done as done:
                return done.result
            except ApiException as exc:
                return _api_failure(exc, context.target)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                raise Transient(f"Kubernetes API unreachable: {exc!r}") from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def _refuse_target(target: RenderedTarget) -> StepResult | None:
    if target.kind != "Deployment":
        return failed(f"kubernetes actions act on Deployments, not {target.kind!r}")
    if not target.namespace:
        return failed(f"refusing to act on {target}: it has no namespace")
    if target.namespace in PROTECTED_NAMESPACES:
        return failed(f"refusing to act in namespace {target.namespace}: it is never acted in")
    if not target.name:
        return failed("refusing to act on a deployment without a name")
    return None


_RFC1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _refuse_node(target: RenderedTarget) -> StepResult | None:
    """Only a Node, by a valid name: the name goes into a field selector, where a comma would
    add a term of its own."""
    if target.kind != "Node":
        return failed(f"kubernetes.node_status reads Nodes, not {target.kind!r}")
    if target.namespace:
        return failed(f"refusing to read node {target.name!r} in a namespace: nodes have none")
    if len(target.name) > 253 or not _RFC1123_SUBDOMAIN.fullmatch(target.name):
        return failed(f"refusing to read node {target.name!r}: not a Kubernetes object name")
    return None


_api_errors = _calls_api(_refuse_target)
_node_api_errors = _calls_api(_refuse_node)


def _api_failure(exc: ApiException, target: RenderedTarget) -> StepResult:
    status = int(exc.status or 0)
    message = _status_message(exc)
    if status in (409, 429) or status >= 500:
        raise Transient(f"Kubernetes API {status} {exc.reason}: {message}") from exc
    if status == 404:
        return failed(f"{target} not found")
    if status == 403:
        grant = (
            f"a Role with that verb on that resource in namespace {target.namespace}"
            if target.namespace
            else "a ClusterRole with that verb on that resource"
        )
        return failed(
            f"forbidden (403): {message}. Grant the remediator's ServiceAccount {grant} (RBAC)",
            status=status,
        )
    return failed(f"Kubernetes API {status} {exc.reason}: {message}", status=status)


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.body or exc.reason)
    return str(body.get("message", exc.reason)) if isinstance(body, dict) else str(body)


def _ns(target: RenderedTarget) -> str:
    """The target's namespace, checked by `_refuse_target` before any action runs."""
    if not target.namespace:
        raise _Done(failed(f"refusing to act on {target}: it has no namespace"))
    return target.namespace


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _record(value: object) -> dict[str, Any]:
    """One of our annotations, parsed; {} when absent or unreadable."""
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _by_this_run(record: Mapping[str, Any], context: StepContext) -> bool:
    at = _parse_time(record.get("at"))
    return at is not None and at >= context.run_started_at


def _label_selector(selector: Any) -> str:
    """The API's label selector string; an empty selector is refused, never taken as "all"."""
    parts: list[str] = []
    for key, value in sorted((getattr(selector, "match_labels", None) or {}).items()):
        parts.append(f"{key}={value}")
    for expression in getattr(selector, "match_expressions", None) or []:
        key, operator, values = expression.key, expression.operator, expression.values or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise _Done(failed(f"unsupported selector operator {operator!r}"))
    if not parts:
        raise _Done(failed("the deployment's selector is empty: refusing to act on all pods"))
    return ",".join(parts)


def _revision(obj: Any) -> int:
    annotations = obj.metadata.annotations or {}
    try:
        return int(annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def _owned_by(obj: Any, uid: str, kind: str) -> bool:
    return any(
        ref.uid == uid and ref.kind == kind and ref.controller
        for ref in obj.metadata.owner_references or []
    )


def _pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    return any(
        condition.type == "Ready" and condition.status == "True"
        for condition in pod.status.conditions or []
    )


def _required(min_available: int | str, desired: int) -> int:
    if isinstance(min_available, int):
        return min_available
    return math.ceil(desired * int(min_available.rstrip("%")) / 100)


@dataclass(frozen=True)
class _Rollout:
    """A Deployment's rollout as `kubectl rollout status` judges it."""

    deployment: Any

    @property
    def desired(self) -> int:
        replicas = self.deployment.spec.replicas
        return 1 if replicas is None else int(replicas)

    def count(self, field: str) -> int:
        return int(getattr(self.deployment.status, field, None) or 0)

    @property
    def complete(self) -> bool:
        status = self.deployment.status
        observed = int(status.observed_generation or 0) if status else 0
        return (
            observed >= int(self.deployment.metadata.generation or 0)
            and self.count("updated_replicas") >= self.desired
            and self.count("replicas") <= self.count("updated_replicas")
            and self.count("available_replicas") >= self.count("updated_replicas")
        )

    @property
    def deadline_exceeded(self) -> bool:
        conditions = self.deployment.status.conditions if self.deployment.status else None
        return any(
            c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
            for c in conditions or []
        )

    def summary(self) -> str:
        return (
            f"{self.count('updated_replicas')}/{self.desired} updated, "
            f"{self.count('available_replicas')} available, {self.count('ready_replicas')} ready"
        )


class KubernetesActions:
    """The `kubernetes.*` actions, against one API server."""

    def __init__(self, api_client: ApiClient, *, poll_interval: float = 2.0) -> None:
        self._apps = AppsV1Api(api_client)
        self._core = CoreV1Api(api_client)
        self._serialize: Callable[[Any], Any] = api_client.sanitize_for_serialization
        self._poll_interval = poll_interval

    def actions(self) -> dict[str, Action]:
        return {
            "kubernetes.rollout_status": self.rollout_status,
            "kubernetes.wait_rollout": self.wait_rollout,
            "kubernetes.rollout_restart": self.rollout_restart,
            "kubernetes.scale": self.scale,
            "kubernetes.rollout_undo": self.rollout_undo,
            "kubernetes.delete_pod": self.delete_pod,
            "kubernetes.patch_configmap": self.patch_configmap,
            "kubernetes.diagnose": self.diagnose,
            "kubernetes.node_status": self.node_status,
        }

    # -- reading -----------------------------------------------------------------------------

    async def _deployment(self, target: RenderedTarget) -> Any:
        return await self._apps.read_namespaced_deployment(
            target.name, _ns(target), _request_timeout=REQUEST_TIMEOUT
        )

    async def _replica_sets(self, deployment: Any) -> list[Any]:
        """The Deployment's ReplicaSets, oldest revision first: matching its selector and owned."""
        selector = _label_selector(deployment.spec.selector)
        listed = await self._apps.list_namespaced_replica_set(
            deployment.metadata.namespace,
            label_selector=selector,
            _request_timeout=REQUEST_TIMEOUT,
        )
        owned = [rs for rs in listed.items if _owned_by(rs, deployment.metadata.uid, "Deployment")]
        return sorted(owned, key=_revision)

    async def _pods(self, deployment: Any, replica_sets: list[Any]) -> list[Any]:
        """The Deployment's pods: matching its selector and owned by one of its ReplicaSets."""
        selector = _label_selector(deployment.spec.selector)
        listed = await self._core.list_namespaced_pod(
            deployment.metadata.namespace,
            label_selector=selector,
            _request_timeout=REQUEST_TIMEOUT,
        )
        uids = {rs.metadata.uid for rs in replica_sets}
        return [
            pod
            for pod in listed.items
            if any(
                ref.uid in uids and ref.kind == "ReplicaSet"
                for ref in pod.metadata.owner_references or []
            )
        ]

    def _rollout_data(self, deployment: Any, replica_sets: list[Any]) -> dict[str, Any]:
        rollout = _Rollout(deployment)
        created = [
            t
            for t in (_parse_time(rs.metadata.creation_timestamp) for rs in replica_sets)
            if t is not None
        ]
        newest = max(created, default=_parse_time(deployment.metadata.creation_timestamp))
        age = (_now() - newest).total_seconds() if newest else None
        return {
            "revision": _revision(deployment),
            "generation": int(deployment.metadata.generation or 0),
            "observed_generation": int(
                getattr(deployment.status, "observed_generation", None) or 0
            ),
            "replicas": rollout.desired,
            "updated_replicas": rollout.count("updated_replicas"),
            "ready_replicas": rollout.count("ready_replicas"),
            "available_replicas": rollout.count("available_replicas"),
            "last_change_age_seconds": None if age is None else max(0, int(age)),
            "complete": rollout.complete,
            "paused": bool(deployment.spec.paused),
        }

    async def _wait(self, target: RenderedTarget, up_to: timedelta) -> StepResult:
        deadline = time.monotonic() + up_to.total_seconds()
        while True:
            deployment = await self._deployment(target)
            rollout = _Rollout(deployment)
            if rollout.complete:
                data = self._rollout_data(deployment, await self._replica_sets(deployment))
                return ok(f"rollout of {target} complete: {rollout.summary()}", **data)
            if rollout.deadline_exceeded:
                return failed(f"rollout of {target} exceeded its progress deadline")
            if time.monotonic() >= deadline:
                return failed(
                    f"rollout of {target} not complete after {up_to.total_seconds():g}s: "
                    f"{rollout.summary()}"
                )
            await asyncio.sleep(min(self._poll_interval, max(0.0, deadline - time.monotonic())))

    # -- actions -----------------------------------------------------------------------------

    @_api_errors
    async def rollout_status(self, params: RolloutStatus, context: StepContext) -> StepResult:
        target = context.target
        if params.wait_up_to and not context.dry_run:
            return await self._wait(target, params.wait_up_to)
        deployment = await self._deployment(target)
        data = self._rollout_data(deployment, await self._replica_sets(deployment))
        return ok(
            f"{target} at revision {data['revision']}: {_Rollout(deployment).summary()}", **data
        )

    @_api_errors
    async def wait_rollout(self, params: WaitRollout, context: StepContext) -> StepResult:
        if context.dry_run:
            return await self.rollout_status(RolloutStatus(), context)
        return await self._wait(context.target, params.wait_up_to)

    @_api_errors
    async def rollout_restart(self, params: RolloutRestart, context: StepContext) -> StepResult:
        target = context.target
        deployment = await self._deployment(target)
        template_annotations = deployment.spec.template.metadata.annotations or {}
        restarted_at = _parse_time(template_annotations.get(RESTARTED_AT))
        if restarted_at is not None and restarted_at >= context.run_started_at:
            return skipped(
                f"already restarted by this run at {restarted_at.isoformat()}",
                restarted_at=restarted_at.isoformat(),
            )
        if deployment.spec.paused:
            return failed(f"{target} is paused: resume it before restarting")
        rollout = _Rollout(deployment)
        ready = rollout.count("ready_replicas")
        required = _required(params.min_available, rollout.desired)
        if ready < required:
            return failed(
                f"refusing to restart {target}: {ready} ready, fewer than min_available "
                f"{params.min_available}",
                ready=ready,
            )
        if context.dry_run:
            return dry_run(
                f"would restart {target}: a new restartedAt annotation ({ready} ready)", ready=ready
            )
        now = _now().isoformat()
        patched = await self._apps.patch_namespaced_deployment(
            target.name,
            _ns(target),
            {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}},
            field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT,
        )
        if params.wait:
            deadline = deployment.spec.progress_deadline_seconds or _DEFAULT_PROGRESS_DEADLINE
            waited = await self._wait(target, timedelta(seconds=float(deadline)))
            if not waited.ok:
                return waited
        return ok(f"restarted {target}", restarted_at=now, generation=patched.metadata.generation)

    @_api_errors
    async def scale(self, params: Scale, context: StepContext) -> StepResult:
        target = context.target
        deployment = await self._deployment(target)
        record = _record((deployment.metadata.annotations or {}).get(SCALED))
        current_scale = await self._apps.read_namespaced_deployment_scale(
            target.name, _ns(target), _request_timeout=REQUEST_TIMEOUT
        )
        current = int(current_scale.spec.replicas or 0)
        if _by_this_run(record, context):
            desired = int(record["to"])  # a re-run after a crash: finish, never add again
        else:
            wanted = params.replicas if params.replicas is not None else current + (params.by or 0)
            desired = min(max(wanted, params.min_replicas), params.max_replicas)
            if params.by is not None and (desired - current) * params.by < 0:
                return skipped(
                    f"{target} is at {current}, outside [{params.min_replicas}, "
                    f"{params.max_replicas}]: not scaling against `by: {params.by}`",
                    replicas=current,
                )
        if desired == current:
            return ok(f"already at {current}", replicas=current)
        if context.dry_run:
            return dry_run(f"would scale {target} from {current} to {desired}", replicas=current)
        resource_version = current_scale.metadata.resource_version
        if not _by_this_run(record, context):
            # Recorded first, so that a re-run after a crash scales to `desired`, not by `by`
            # again. The scale shares the Deployment's resourceVersion: take the new one.
            note = json.dumps({"at": _now().isoformat(), "from": current, "to": desired})
            annotated = await self._apps.patch_namespaced_deployment(
                target.name,
                _ns(target),
                {"metadata": {"resourceVersion": resource_version, "annotations": {SCALED: note}}},
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )
            resource_version = annotated.metadata.resource_version
        await self._apps.patch_namespaced_deployment_scale(
            target.name,
            _ns(target),
            {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": desired}},
            field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return ok(f"scaled {target} from {current} to {desired}", replicas=desired)

    def _template(self, template: Any) -> dict[str, Any]:
        """A ReplicaSet's pod template as the Deployment would carry it: without the hash label."""
        serialized: dict[str, Any] = self._serialize(template)
        serialized.get("metadata", {}).get("labels", {}).pop(POD_TEMPLATE_HASH, None)
        return serialized

    @_api_errors
    async def rollout_undo(self, params: RolloutUndo, context: StepContext) -> StepResult:
        target = context.target
        deployment = await self._deployment(target)
        annotations = dict(deployment.metadata.annotations or {})
        record = _record(annotations.get(UNDONE))
        if _by_this_run(record, context):
            return skipped(
                f"already rolled back by this run to revision {record.get('to')}",
                revision=_revision(deployment),
            )
        if deployment.spec.paused:
            return failed(f"{target} is paused: resume it before rolling back")
        replica_sets = await self._replica_sets(deployment)
        by_revision = {_revision(rs): rs for rs in replica_sets}
        current = _revision(deployment) or max(by_revision, default=0)
        templates = {r: self._template(rs.spec.template) for r, rs in by_revision.items()}
        releases = {r: _release(t) for r, t in templates.items()}
        wanted = _undo_to(params, target, current, by_revision, releases)
        template = templates[wanted]
        if template == self._serialize(deployment.spec.template):
            return skipped(
                f"{target}'s template already matches revision {wanted}", revision=current
            )
        if context.dry_run:
            return dry_run(
                f"would roll back {target} from revision {current} to revision {wanted}",
                revision=current,
            )
        annotations = _annotations_on_undo(annotations, by_revision[wanted].metadata.annotations)
        annotations[UNDONE] = json.dumps({"at": _now().isoformat(), "from": current, "to": wanted})
        await self._apps.patch_namespaced_deployment(
            target.name,
            _ns(target),
            [
                # Replacing resourceVersion makes the write conditional: 409 if it changed.
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": deployment.metadata.resource_version,
                },
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ],
            field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return ok(
            f"rolled back {target} from revision {current} to revision {wanted}",
            from_revision=current,
            to_revision=wanted,
        )

    @_api_errors
    async def delete_pod(self, params: DeletePod, context: StepContext) -> StepResult:
        target = context.target
        deployment = await self._deployment(target)
        replica_sets = await self._replica_sets(deployment)
        try:
            pod = await self._core.read_namespaced_pod(
                params.pod, _ns(target), _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return ok(f"pod {target.namespace}/{params.pod} already gone")
            raise
        pods = await self._pods(deployment, replica_sets)
        if pod.metadata.uid not in {p.metadata.uid for p in pods}:
            return failed(
                f"refusing to delete pod {target.namespace}/{params.pod}: it is not a pod of "
                f"{target}"
            )
        if pod.metadata.deletion_timestamp is not None:
            return ok(f"pod {target.namespace}/{params.pod} already being deleted")
        ready = sum(1 for p in pods if _pod_ready(p))
        remaining = ready - 1 if _pod_ready(pod) else ready
        required = _required(params.min_available, _Rollout(deployment).desired)
        if remaining < required:
            return failed(
                f"refusing to delete pod {target.namespace}/{params.pod}: {remaining} ready "
                f"would remain, fewer than min_available {params.min_available}",
                ready=ready,
            )
        if context.dry_run:
            return dry_run(
                f"would delete pod {target.namespace}/{params.pod} of {target} ({ready} ready)",
                ready=ready,
            )
        try:
            await self._core.delete_namespaced_pod(
                params.pod,
                _ns(target),
                body=V1DeleteOptions(
                    grace_period_seconds=params.grace_period_seconds,
                    preconditions=V1Preconditions(uid=pod.metadata.uid),
                ),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return ok(f"pod {target.namespace}/{params.pod} already gone")
            raise
        return ok(f"deleted pod {target.namespace}/{params.pod} of {target}", ready=ready)

    @_api_errors
    async def patch_configmap(self, params: PatchConfigMap, context: StepContext) -> StepResult:
        namespace = _ns(context.target)
        where = f"configmap {namespace}/{params.name}"
        try:
            configmap = await self._core.read_namespaced_config_map(
                params.name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return failed(f"{where} not found")
            raise
        current = configmap.data or {}
        changed = sorted(key for key, value in params.data.items() if current.get(key) != value)
        if not changed:
            return ok(f"{where} already set", keys=sorted(params.data))
        if context.dry_run:
            return dry_run(f"would set {', '.join(changed)} in {where}", keys=changed)
        await self._core.patch_namespaced_config_map(
            params.name,
            namespace,
            {
                "metadata": {"resourceVersion": configmap.metadata.resource_version},
                "data": {key: params.data[key] for key in changed},
            },
            field_manager=FIELD_MANAGER,
            _request_timeout=REQUEST_TIMEOUT,
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
        )
        return ok(f"set {', '.join(changed)} in {where}", keys=changed)

    @_api_errors
    async def diagnose(self, params: NoParams, context: StepContext) -> StepResult:
        target = context.target
        deployment = await self._deployment(target)
        replica_sets = await self._replica_sets(deployment)
        pods = await self._pods(deployment, replica_sets)
        events = await self._core.list_namespaced_event(
            _ns(target), _request_timeout=REQUEST_TIMEOUT
        )
        about = {("Deployment", deployment.metadata.name)}
        about |= {("ReplicaSet", rs.metadata.name) for rs in replica_sets}
        about |= {("Pod", pod.metadata.name) for pod in pods}
        relevant = [
            e for e in events.items if (e.involved_object.kind, e.involved_object.name) in about
        ]
        relevant.sort(key=_event_time)
        pod_data = [_pod_summary(pod) for pod in pods]
        data = {
            "rollout": self._rollout_data(deployment, replica_sets),
            "pods": pod_data,
            "events": [_event_summary(e) for e in relevant[-_EVENTS_KEPT:]],
            "history": [_history_entry(rs) for rs in replica_sets],
        }
        restarts = sum(p["restarts"] for p in pod_data)
        return ok(
            f"{target}: {len(pods)} pods, {restarts} restarts, {len(relevant)} events, "
            f"{len(replica_sets)} revisions",
            **data,
        )

    @_node_api_errors
    async def node_status(self, params: NodeStatus, context: StepContext) -> StepResult:
        """A read for the escalation of a NotReady node: its conditions, taints and capacity,
        and the pods on it in every namespace. It changes nothing: a node is a person's."""
        name = context.target.name
        node = await self._core.read_node(name, _request_timeout=REQUEST_TIMEOUT)
        listed = await self._core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={name}",
            _request_timeout=REQUEST_TIMEOUT,
        )
        data = _node_summary(node) | {"pods": _pods_on_node(listed.items, params.limit)}
        return ok(_node_message(context.target, data), **data)


def _annotations_on_undo(
    current: Mapping[str, str], restored: Mapping[str, str] | None
) -> dict[str, str]:
    """The Deployment's annotations after an undo, as kubectl makes them: the kept ones of its
    own, and every other one from the ReplicaSet restored."""
    kept = {key: value for key, value in current.items() if key in _KEPT_ON_UNDO}
    taken = {key: value for key, value in (restored or {}).items() if key not in _KEPT_ON_UNDO}
    return kept | taken


def _release(template: Mapping[str, Any]) -> str:
    """What a pod template runs, whatever restarts it had: the template without the restart
    annotation, as a comparable string."""
    stripped = json.loads(json.dumps(template))
    metadata = stripped.get("metadata", {})
    metadata.get("annotations", {}).pop(RESTARTED_AT, None)
    if not metadata.get("annotations"):
        metadata.pop("annotations", None)
    return json.dumps(stripped, sort_keys=True)


def _previous_release(target: RenderedTarget, current: int, releases: Mapping[int, str]) -> int:
    """The most recent revision before `current` that runs something else than `current` does:
    a restart makes a revision of its own, and rolling back to it would only restart again."""
    earlier = sorted((r for r in releases if 0 < r < current), reverse=True)
    running = releases.get(current)
    wanted = next((r for r in earlier if releases[r] != running), 0)
    if not wanted and earlier:
        raise _Done(
            failed(
                f"{target} has no earlier release: revisions {_listed(earlier)} differ from "
                f"revision {current} only by restarts",
                revision=current,
            )
        )
    if not wanted:
        raise _Done(failed(f"{target} has no previous revision", revision=current))
    return wanted


def _release_began(current: int, releases: Mapping[int, str]) -> int:
    """The revision that brought in the current release: restarts since then made revisions
    of their own, but did not change what runs."""
    began = current
    for revision in sorted((r for r in releases if r < current), reverse=True):
        if releases[revision] != releases.get(current):
            break
        began = revision
    return began


def _listed(revisions: list[int]) -> str:
    return ", ".join(str(r) for r in sorted(revisions))


def _undo_to(
    params: RolloutUndo,
    target: RenderedTarget,
    current: int,
    by_revision: Mapping[int, Any],
    releases: Mapping[int, str],
) -> int:
    """The revision to roll back to; raises _Done when there is none or the undo is skipped."""
    if params.only_if_changed_within is not None:
        current_rs = by_revision.get(_release_began(current, releases))
        created = _parse_time(current_rs.metadata.creation_timestamp) if current_rs else None
        if created is None or _now() - created > params.only_if_changed_within:
            raise _Done(
                skipped(
                    f"{target} revision {current} is older than "
                    f"{params.only_if_changed_within.total_seconds():g}s: not rolling back",
                    revision=current,
                )
            )
    if params.to_revision is not None:
        if params.to_revision not in by_revision:
            raise _Done(failed(f"{target} has no revision {params.to_revision}", revision=current))
        wanted = params.to_revision
    else:
        wanted = _previous_release(target, current, releases)
    if wanted == current:
        raise _Done(skipped(f"{target} already at revision {current}", revision=current))
    return wanted


def _iso(value: object) -> str | None:
    parsed = _parse_time(value)
    return parsed.isoformat() if parsed else None


def _event_time(event: Any) -> datetime:
    for value in (event.last_timestamp, event.event_time, event.metadata.creation_timestamp):
        parsed = _parse_time(value)
        if parsed is not None:
            return parsed
    return datetime.min.replace(tzinfo=UTC)


def _event_summary(event: Any) -> dict[str, Any]:
    return {
        "type": event.type,
        "reason": event.reason,
        "object": f"{event.involved_object.kind}/{event.involved_object.name}",
        "message": event.message,
        "count": event.count,
        "last_seen": _event_time(event).isoformat(),
    }


def _pod_summary(pod: Any) -> dict[str, Any]:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    waiting = [
        f"{s.name}: {s.state.waiting.reason}"
        for s in statuses
        if s.state is not None and s.state.waiting is not None
    ]
    return {
        "name": pod.metadata.name,
        "phase": pod.status.phase if pod.status else None,
        "ready": _pod_ready(pod),
        "restarts": sum(int(s.restart_count or 0) for s in statuses),
        "waiting": waiting,
        "last_terminated": [_last_terminated(s) for s in statuses if _terminated(s) is not None],
        "node": pod.spec.node_name if pod.spec else None,
    }


def _terminated(status: Any) -> Any:
    last = status.last_state
    return last.terminated if last is not None else None


def _last_terminated(status: Any) -> str:
    """How a container last ended, e.g. `api: OOMKilled (exit 137) at 2027-01-15T08:00:00Z`:
    what a crash loop's page must say."""
    ended = _terminated(status)
    at = f" at {_iso(ended.finished_at)}" if ended.finished_at else ""
    return f"{status.name}: {ended.reason or 'terminated'} (exit {ended.exit_code}){at}"


def _history_entry(replica_set: Any) -> dict[str, Any]:
    containers = replica_set.spec.template.spec.containers or []
    status = replica_set.status
    return {
        "revision": _revision(replica_set),
        "replicaset": replica_set.metadata.name,
        "created": _iso(replica_set.metadata.creation_timestamp),
        "replicas": int(status.replicas or 0) if status else 0,
        "ready": int(status.ready_replicas or 0) if status else 0,
        "images": [c.image for c in containers],
        "change_cause": (replica_set.metadata.annotations or {}).get(CHANGE_CAUSE),
    }


def _node_summary(node: Any) -> dict[str, Any]:
    """What `kubectl describe node` shows of why a node is not ready, as data."""
    status, spec = node.status, node.spec
    conditions = [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "last_transition_time": _iso(c.last_transition_time),
        }
        for c in (status.conditions if status else None) or []
    ]
    ready = next((c for c in conditions if c["type"] == "Ready"), None)
    taints = [
        {"key": t.key, "value": t.value, "effect": t.effect, "time_added": _iso(t.time_added)}
        for t in (spec.taints if spec else None) or []
    ]
    return {
        "node": node.metadata.name,
        "ready": ready["status"] if ready else "Unknown",
        "ready_reason": ready["reason"] if ready else None,
        "conditions": conditions,
        "unschedulable": bool(spec.unschedulable) if spec else False,
        "taints": taints,
        "capacity": dict((status.capacity if status else None) or {}),
        "allocatable": dict((status.allocatable if status else None) or {}),
    }


def _pods_on_node(pods: list[Any], limit: int) -> dict[str, Any]:
    """Counts by phase, and which pods are not ready (a finished pod is never ready: left out)."""
    by_phase: dict[str, int] = {}
    not_ready: list[str] = []
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        phase = (pod.status.phase if pod.status else None) or "Unknown"
        by_phase[phase] = by_phase.get(phase, 0) + 1
        if phase != "Succeeded" and not _pod_ready(pod):
            not_ready.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
    return {
        "total": len(pods),
        "by_phase": dict(sorted(by_phase.items())),
        "not_ready_count": len(not_ready),
        "not_ready": not_ready[:limit],
    }


def _node_message(target: RenderedTarget, data: Mapping[str, Any]) -> str:
    """E.g. `node w-1: Ready Unknown (NodeStatusUnknown), unschedulable, 2 taints; 5 pods (1
    Pending, 4 Running), 5 not ready`: the page's one line."""
    reason = f" ({data['ready_reason']})" if data["ready_reason"] else ""
    cordoned = ", unschedulable" if data["unschedulable"] else ""
    pods = data["pods"]
    phases = ", ".join(f"{count} {phase}" for phase, count in pods["by_phase"].items())
    return (
        f"{target}: Ready {data['ready']}{reason}{cordoned}, {len(data['taints'])} taints; "
        f"{pods['total']} pods{f' ({phases})' if phases else ''}, "
        f"{pods['not_ready_count']} not ready"
    )
