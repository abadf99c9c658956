"""A small in-memory Kubernetes API server for the `kubernetes.*` action tests.

It serves exactly the endpoints the actions use, with the real API's JSON shapes (apiVersion,
kind, metadata with uid, resourceVersion, generation, creationTimestamp, ownerReferences) and
its status codes (Status objects for 404 NotFound, 409 Conflict, 422 Invalid, 415):

    GET, PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}
    GET, PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale    (autoscaling/v1 Scale)
    GET         /apis/apps/v1/namespaces/{ns}/replicasets?labelSelector=...
    GET         /api/v1/namespaces/{ns}/pods?labelSelector=...
    GET, DELETE /api/v1/namespaces/{ns}/pods/{name}      (DeleteOptions.preconditions.uid)
    GET, PATCH  /api/v1/namespaces/{ns}/configmaps/{name}
    GET         /api/v1/namespaces/{ns}/events
    GET         /api/v1/nodes/{name}                     (cluster-scoped)
    GET         /api/v1/pods?fieldSelector=spec.nodeName=...&labelSelector=...   (all namespaces)

PATCH takes the three patch formats as the API server applies them (tests/support/
kubernetes_patches.py): strategic merge (what kubernetes-asyncio and kubectl send for a map),
JSON merge and JSON patch. A patched object whose metadata.resourceVersion differs from the
stored one is a 409 Conflict, as on the real server; an invalid result (negative replicas, a
template whose labels do not match the selector, a changed selector or name) is a 422. Each
write is credited in metadata.managedFields to `?fieldManager=`, or else to the client's
User-Agent. A pod is deleted with the request's gracePeriodSeconds, or else its own
terminationGracePeriodSeconds (`deleted` keeps them). The discovery documents
(tests/support/kubernetes_discovery.py) let `kubectl` itself act on the fake.

Behaviours of the controllers, made deterministic: a spec change bumps metadata.generation; a
pod-template change makes (or, on undo, reuses) the ReplicaSet of that template with the next
revision (deployment.kubernetes.io/revision), and the Deployment's annotation follows; pods
are owned by ReplicaSets and carry the pod-template-hash label; a deleted pod is replaced;
the Deployment's annotations are copied onto its current ReplicaSet (all but the rollout's own),
and a reused ReplicaSet's old revision goes to its revision-history; events are recorded
(ScalingReplicaSet, Killing). Rollouts finish at once, unless a test holds
them (`hold_rollouts`, then `converge`, or `converge_after_reads`): no timing is involved.

Tests seed objects (`seed_deployment` with N ready pods and a revision history,
`seed_configmap`, `seed_pod`, `seed_event`, `seed_node`), inspect them (`get`, `pods_of`), see
the requests made (`requests`), are told of each change as it is made (`watchers`), roll out
a new template as a deploy would (`roll_out`) and inject failures (`fail_next`). Start it with
`await fake.start(port)` on a loopback port and point
`kubernetes_asyncio.client.Configuration(host=fake.url)` at it.

The same tests run against a real cluster (kind): with REMEDIATOR_TEST_KUBECONFIG set, the
fixture in test_kubernetes_actions.py seeds through the API instead (a namespace per test) and
skips the few tests that need this fake's fault injection or backdated objects.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.support.kubernetes_discovery import add_discovery
from tests.support.kubernetes_patches import (
    InvalidPatch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
NOT_COPIED_TO_RS = frozenset(
    {
        REVISION,
        REVISION_HISTORY,
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
        "deprecated.deployment.rollback.to",
    }
)
HASH = "pod-template-hash"
# The namespace the shipped policies act in; a restart's annotation; a kubeconfig for the
# service, pointing at the fake's URL.
NAMESPACE = "claude-deployment-prod"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{url}"}}}}]
users: [{{name: fake, user: {{token: fake}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]
current-context: fake
"""

# kind -> (apiVersion, plural, group for Status details)
KINDS = {
    "Deployment": ("apps/v1", "deployments", "apps"),
    "ReplicaSet": ("apps/v1", "replicasets", "apps"),
    "Pod": ("v1", "pods", ""),
    "ConfigMap": ("v1", "configmaps", ""),
    "Event": ("v1", "events", ""),
    "Node": ("v1", "nodes", ""),
    "Scale": ("autoscaling/v1", "deployments", "apps"),
}
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, code: int, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}

    def response(self) -> web.Response:
        return status_response(self.code, self.message, self.details)


def status_response(code: int, message: str, details: Obj | None = None) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "details": details or {},
        "code": code,
    }
    return web.json_response(body, status=code)


def _resource(kind: str) -> str:
    _, plural, group = KINDS[kind]
    return f"{plural}.{group}" if group else plural


def not_found(kind: str, name: str) -> ApiError:
    _, plural, group = KINDS[kind]
    return ApiError(
        404, f'{_resource(kind)} "{name}" not found', {"name": name, "group": group, "kind": plural}
    )


def _apply(content_type: str, current: Obj, body: Any) -> Obj:
    """`body` applied to `current` as a patch of `content_type`; 415 for another type."""
    formats = {
        "application/json-patch+json": (list, json_patch),
        "application/merge-patch+json": (dict, merge_patch),
        "application/strategic-merge-patch+json": (dict, strategic_merge_patch),
    }
    shape, apply = formats.get(content_type.split(";")[0].strip(), (None, None))
    if shape is None or apply is None or not isinstance(body, shape):
        raise ApiError(415, f"the body of the request was in an unknown format: {content_type}")
    try:
        patched: Obj = apply(current, body)
    except InvalidPatch as exc:
        raise ApiError(422, str(exc)) from exc
    return canonical(patched)


def canonical(value: Any) -> Any:
    """As the API server stores an object decoded into its Go types: unset fields (null, or
    an empty map or list of an `omitempty` field) are not kept."""
    if isinstance(value, dict):
        kept = {k: canonical(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def manager_of(request: web.Request) -> str:
    """Who a write is credited to in managedFields: `?fieldManager=`, or else (as the API
    server does) the client's User-Agent up to its first '/'."""
    named = request.query.get("fieldManager")
    return named or request.headers.get("User-Agent", "unknown").split("/")[0]


# The pod fields the API server can select on (a few of them) and the pod's value of each.
_POD_FIELDS = {
    "metadata.name": lambda pod: pod["metadata"]["name"],
    "metadata.namespace": lambda pod: pod["metadata"]["namespace"],
    "spec.nodeName": lambda pod: pod["spec"].get("nodeName", ""),
    "status.phase": lambda pod: pod["status"].get("phase", ""),
}


def field_matches(selector: str | None, pod: Obj) -> bool:
    """A pod field selector as the API server reads it (=, ==, !=, comma-separated); a field it
    cannot select on is a 400, as on the real server."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        negated = "!=" in term
        field, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        if field not in _POD_FIELDS:
            raise ApiError(400, f"field label not supported: {field}")
        if (_POD_FIELDS[field](pod) == value) == negated:
            return False
    return True


def _resource_path(path: str) -> str:
    """What `fail_next` calls a request's resource: "deployments", "deployments/scale",
    "pods" (in a namespace or in all), "nodes"."""
    parts = path.strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]  # /api/v1/..., /apis/GROUP/VERSION/...
    if len(parts) > 2 and parts[0] == "namespaces":
        parts = parts[2:]
    return "/".join(parts[:1] + parts[2:3])


_SET_SELECTOR = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$")


def _split_selector(selector: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            yield selector[start:i].strip()
            start = i + 1
    if selector[start:].strip():
        yield selector[start:].strip()


def matches(selector: str | None, labels: dict[str, str]) -> bool:
    """A label selector as the API server reads it (=, ==, !=, in, notin, exists, !exists)."""
    return all(_term_matches(term, labels) for term in _split_selector(selector or ""))


def _term_matches(term: str, labels: dict[str, str]) -> bool:
    if found := _SET_SELECTOR.match(term):
        values = {v.strip() for v in found[3].split(",")}
        return (found[2] == "in") == (labels.get(found[1]) in values)
    if "!=" in term:
        key, value = term.split("!=", 1)
        return labels.get(key.strip()) != value.strip()
    if "=" in term:
        key, value = term.replace("==", "=").split("=", 1)
        return labels.get(key.strip()) == value.strip()
    if term.startswith("!"):
        return term[1:] not in labels
    return term in labels


def _selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def _template_key(template: Obj) -> str:
    clean = copy.deepcopy(template)
    clean.get("metadata", {}).get("labels", {}).pop(HASH, None)
    return json.dumps(clean, sort_keys=True)


@dataclass
class Fault:
    method: str
    resource: str  # "deployments", "deployments/scale", "pods", ...
    status: int
    times: int


class FakeKubernetes:
    """The API server and the deployment, replica-set and garbage controllers, in memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.requests: list[tuple[str, str, str]] = []  # method, path, content type
        self.deleted: list[Obj] = []  # pods deleted, with their deletionGracePeriodSeconds
        # Told of each change as it is made: (kind, the object before, after; None: deleted).
        self.watchers: list[Callable[[str, Obj, Obj | None], None]] = []
        self.hold_rollouts = False
        self._reads_until_converged: dict[tuple[str, str], int] = {}
        self._faults: list[Fault] = []
        self._versions = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, port: int) -> str:
        app = web.Application()
        base_apps = "/apis/apps/v1/namespaces/{ns}"
        base_core = "/api/v1/namespaces/{ns}"
        app.router.add_route("GET", base_apps + "/deployments/{name}", self._get_deployment)
        app.router.add_route("PATCH", base_apps + "/deployments/{name}", self._patch_deployment)
        app.router.add_route("GET", base_apps + "/deployments/{name}/scale", self._get_scale)
        app.router.add_route("PATCH", base_apps + "/deployments/{name}/scale", self._patch_scale)
        app.router.add_route("GET", base_apps + "/replicasets", self._list("ReplicaSet"))
        app.router.add_route("GET", base_core + "/pods", self._list("Pod"))
        app.router.add_route("GET", base_core + "/pods/{name}", self._get("Pod"))
        app.router.add_route("DELETE", base_core + "/pods/{name}", self._delete_pod)
        app.router.add_route("GET", base_core + "/configmaps/{name}", self._get("ConfigMap"))
        app.router.add_route("PATCH", base_core + "/configmaps/{name}", self._patch_configmap)
        app.router.add_route("GET", base_core + "/events", self._list("Event"))
        app.router.add_route("GET", "/api/v1/nodes/{name}", self._get_node)
        app.router.add_route("GET", "/api/v1/pods", self._list_all_pods)
        add_discovery(app)
        app.middlewares.append(self._middleware)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            (request.method, request.path, request.headers.get("Content-Type", ""))
        )
        sub = _resource_path(request.path)
        for fault in self._faults:
            if fault.times > 0 and fault.method == request.method and fault.resource == sub:
                fault.times -= 1
                return status_response(fault.status, f"injected {fault.status}")
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as error:
            return error.response()
        except web.HTTPNotFound:
            return status_response(404, "the server could not find the requested resource")
        return response

    # -- the test's API ----------------------------------------------------------------------

    @property
    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def fail_next(self, method: str, resource: str, status: int, times: int = 1) -> None:
        """Answer the next `times` `method` requests on `resource` (a plural) with `status`."""
        self._faults.append(Fault(method, resource, status, times))

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def list_objects(self, kind: str, namespace: str) -> list[Obj]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self.objects.items())
            if k == kind and ns == namespace
        ]

    def replica_sets_of(self, namespace: str, name: str) -> list[Obj]:
        dep = self.objects[("Deployment", namespace, name)]
        return sorted(
            (rs for rs in self._owned("ReplicaSet", dep)),
            key=lambda rs: int(rs["metadata"]["annotations"][REVISION]),
        )

    def pods_of(self, namespace: str, name: str) -> list[Obj]:
        return [p for rs in self.replica_sets_of(namespace, name) for p in self._owned("Pod", rs)]

    def seed_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        ready: int | None = None,
        revisions: int = 1,
        changed_ago: timedelta = timedelta(hours=2),
        labels: dict[str, str] | None = None,
        causes: dict[int, str] | None = None,
    ) -> Obj:
        """A Deployment with `revisions` ReplicaSets (`pod_template` 1..N; the newest created
        `changed_ago` ago, each older one a day before) and `replicas` pods, `ready` of them
        ready. `labels={}` makes a Deployment with an empty selector. `causes` annotates the
        Deployment with a kubernetes.io/change-cause as each of those revisions is made (kept,
        as on a cluster, until a later one replaces it)."""
        labels = {"app": name} if labels is None else labels
        created = datetime.now(UTC) - changed_ago - timedelta(days=revisions)
        dep: Obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._metadata(namespace, name, created, annotations={}),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {},
                "strategy": {"type": "RollingUpdate"},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        }
        dep["metadata"]["generation"] = 0
        self.objects[("Deployment", namespace, name)] = dep
        for revision in range(1, revisions + 1):
            dep["spec"]["template"] = pod_template(labels, revision)
            dep["metadata"]["generation"] += 1
            ago = changed_ago + timedelta(days=revisions - revision)
            if revision in (causes or {}):
                dep["metadata"]["annotations"][CHANGE_CAUSE] = (causes or {})[revision]
            self._reconcile(dep, created=datetime.now(UTC) - ago)
            self._copy_annotations(dep)
        self._converge(dep, ready=replicas if ready is None else ready)
        return copy.deepcopy(dep)

    def seed_configmap(self, namespace: str, name: str, data: dict[str, str]) -> Obj:
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._metadata(namespace, name, datetime.now(UTC)),
            "data": dict(data),
        }
        self.objects[("ConfigMap", namespace, name)] = cm
        return copy.deepcopy(cm)

    def seed_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        *,
        node: str = "kind-worker",
        ready: bool = True,
        phase: str = "Running",
    ) -> Obj:
        """A pod owned by nothing (or by whatever the test adds), on `node`."""
        pod = self._pod(namespace, name, labels, owner=None, ready=ready, node=node)
        pod["status"]["phase"] = phase
        self.objects[("Pod", namespace, name)] = pod
        return copy.deepcopy(pod)

    def seed_node(
        self,
        name: str,
        *,
        ready: str = "True",
        unschedulable: bool = False,
        taints: list[Obj] | None = None,
    ) -> Obj:
        """A Node as the kubelet reports it; `ready` is its Ready condition's status ("True",
        "False" or "Unknown": the kubelet stopped posting, as after a crash or a partition)."""
        now = datetime.now(UTC)
        node: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": self._metadata("", name, now - timedelta(days=3)),
            "spec": {"podCIDR": "10.244.1.0/24", "providerID": f"kind://docker/kind/{name}"},
            "status": node_status(name, ready, now),
        }
        del node["metadata"]["namespace"]
        node["metadata"]["labels"] = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        if unschedulable:
            node["spec"]["unschedulable"] = True
        if taints:
            node["spec"]["taints"] = copy.deepcopy(taints)
        self.objects[("Node", "", name)] = node
        return copy.deepcopy(node)

    def seed_event(self, namespace: str, about: Obj, reason: str, message: str) -> None:
        self._event(about, reason, message, kind="Warning")

    def roll_out(self, namespace: str, name: str, template: Obj) -> None:
        """A new pod template, as a deploy from CI makes it: the controllers roll it out."""
        dep = self.objects[("Deployment", namespace, name)]
        patched = copy.deepcopy(dep)
        patched["spec"]["template"] = copy.deepcopy(template)
        self._store_deployment(dep, patched)

    def converge(self, namespace: str, name: str) -> None:
        """Finish the Deployment's rollout: what the controllers would do, done now."""
        self._converge(self.objects[("Deployment", namespace, name)])

    def converge_after_reads(self, namespace: str, name: str, reads: int) -> None:
        """Hold the rollout, and finish it when the Deployment has been read `reads` times."""
        self.hold_rollouts = True
        self._reads_until_converged[(namespace, name)] = reads

    # -- handlers ----------------------------------------------------------------------------

    def _find(self, kind: str, request: web.Request) -> Obj:
        ns, name = request.match_info["ns"], request.match_info["name"]
        found = self.objects.get((kind, ns, name))
        if found is None:
            raise not_found(kind, name)
        return found

    def _get(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(self._find(kind, request))

        return handler

    def _list(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            selector = request.query.get("labelSelector")
            items = [
                obj
                for (k, ns, _), obj in sorted(self.objects.items())
                if k == kind
                and ns == request.match_info["ns"]
                and matches(selector, obj["metadata"].get("labels") or {})
            ]
            api_version = KINDS[kind][0]
            return web.json_response(
                {
                    "apiVersion": api_version,
                    "kind": f"{kind}List",
                    "metadata": {"resourceVersion": str(next(self._versions))},
                    "items": items,
                }
            )

        return handler

    async def _get_node(self, request: web.Request) -> web.Response:
        found = self.objects.get(("Node", "", request.match_info["name"]))
        if found is None:
            raise not_found("Node", request.match_info["name"])
        return web.json_response(found)

    async def _list_all_pods(self, request: web.Request) -> web.Response:
        labels, fields = request.query.get("labelSelector"), request.query.get("fieldSelector")
        items = [
            obj
            for (kind, _, _), obj in sorted(self.objects.items())
            if kind == "Pod"
            and matches(labels, obj["metadata"].get("labels") or {})
            and field_matches(fields, obj)
        ]
        version = str(next(self._versions))
        body = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version}}
        return web.json_response(body | {"items": items})

    async def _get_deployment(self, request: web.Request) -> web.Response:
        dep = self._find("Deployment", request)
        key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        if key in self._reads_until_converged:
            self._reads_until_converged[key] -= 1
            if self._reads_until_converged[key] <= 0:
                del self._reads_until_converged[key]
                self._converge(dep)
        return web.json_response(dep)

    async def _patched(self, request: web.Request, current: Obj) -> Obj:
        content_type = request.headers.get("Content-Type", "")
        try:
            body = await request.json()
        except ValueError as exc:
            raise ApiError(400, f"invalid JSON: {exc}") from exc
        patched = _apply(content_type, current, body)
        meta, old = patched.get("metadata", {}), current["metadata"]
        if meta.get("resourceVersion") != old["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {_resource(current["kind"])} "{old["name"]}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        for field in ("name", "namespace", "uid", "creationTimestamp"):
            if meta.get(field) != old.get(field):
                raise ApiError(422, f"metadata.{field}: Invalid value: field is immutable")
        return patched

    async def _patch_deployment(self, request: web.Request) -> web.Response:
        dep = self._find("Deployment", request)
        patched = await self._patched(request, dep)
        self._validate_deployment(dep, patched)
        _credit(patched, manager_of(request))
        self._store_deployment(dep, patched)
        return web.json_response(dep)

    def _validate_deployment(self, old: Obj, new: Obj) -> None:
        spec = new.get("spec") or {}
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, f"spec.replicas: Invalid value: {replicas!r}")
        if spec.get("selector") != old["spec"]["selector"]:
            raise ApiError(422, "spec.selector: Invalid value: field is immutable")
        template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
        selector = _selector_string(spec["selector"].get("matchLabels") or {})
        if not matches(selector, template_labels):
            raise ApiError(
                422, "spec.template.metadata.labels: Invalid value: `selector` does not match"
            )
        if not (spec.get("template") or {}).get("spec", {}).get("containers"):
            raise ApiError(422, "spec.template.spec.containers: Required value")

    def _store_deployment(self, dep: Obj, patched: Obj) -> None:
        before = copy.deepcopy(dep)
        spec_changed = patched["spec"] != dep["spec"]
        template_changed = patched["spec"]["template"] != dep["spec"]["template"]
        patched["status"] = dep["status"]  # the main resource ignores status changes
        patched["metadata"]["generation"] = dep["metadata"]["generation"] + spec_changed
        patched["metadata"]["resourceVersion"] = str(next(self._versions))
        dep.clear()
        dep.update(patched)
        if template_changed:
            self._reconcile(dep, created=datetime.now(UTC))
        self._copy_annotations(dep)
        if spec_changed:
            self._progress(dep)
        for watcher in self.watchers:
            watcher("Deployment", before, dep)

    def _scale(self, dep: Obj) -> Obj:
        meta = dep["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": dep["spec"]["replicas"]},
            "status": {
                "replicas": dep["status"].get("replicas", 0),
                "selector": _selector_string(dep["spec"]["selector"].get("matchLabels") or {}),
            },
        }

    async def _get_scale(self, request: web.Request) -> web.Response:
        return web.json_response(self._scale(self._find("Deployment", request)))

    async def _patch_scale(self, request: web.Request) -> web.Response:
        dep = self._find("Deployment", request)
        patched = await self._patched(request, self._scale(dep))
        replicas = patched.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, f"spec.replicas: Invalid value: {replicas!r}")
        new = copy.deepcopy(dep)
        new["spec"]["replicas"] = replicas
        _credit(new, manager_of(request), subresource="scale")
        self._store_deployment(dep, new)
        return web.json_response(self._scale(dep))

    async def _patch_configmap(self, request: web.Request) -> web.Response:
        cm = self._find("ConfigMap", request)
        patched = await self._patched(request, cm)
        data = patched.get("data") or {}
        if not all(isinstance(v, str) for v in data.values()):
            raise ApiError(422, "data: Invalid value: values must be strings")
        _credit(patched, manager_of(request))
        patched["metadata"]["resourceVersion"] = str(next(self._versions))
        cm.clear()
        cm.update(patched)
        return web.json_response(cm)

    async def _delete_pod(self, request: web.Request) -> web.Response:
        pod = self._find("Pod", request)
        options = await request.json() if request.can_read_body else {}
        wanted_uid = ((options or {}).get("preconditions") or {}).get("uid")
        if wanted_uid and wanted_uid != pod["metadata"]["uid"]:
            raise ApiError(
                409,
                f"Precondition failed: UID in precondition: {wanted_uid}, "
                f"UID in object meta: {pod['metadata']['uid']}",
            )
        meta = pod["metadata"]
        del self.objects[("Pod", meta["namespace"], meta["name"])]
        self._event(pod, "Killing", f"Stopping container {pod['spec']['containers'][0]['name']}")
        owner = next(iter(meta.get("ownerReferences") or []), None)
        for rs in self._all("ReplicaSet", meta["namespace"]):
            if owner and rs["metadata"]["uid"] == owner["uid"]:
                self._replace_pods(rs, rs["spec"]["replicas"], ready=not self.hold_rollouts)
        meta["deletionTimestamp"] = timestamp(datetime.now(UTC))
        # The grace the request gives, else the pod's own (defaulted to 30 s on creation).
        given = (options or {}).get("gracePeriodSeconds")
        own = pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        meta["deletionGracePeriodSeconds"] = own if given is None else given
        self.deleted.append(pod)
        for watcher in self.watchers:
            watcher("Pod", pod, None)
        return web.json_response(pod)

    # -- controllers -------------------------------------------------------------------------

    def _metadata(
        self, namespace: str, name: str, created: datetime, **extra: Any
    ) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(next(self._versions)),
            "creationTimestamp": timestamp(created),
            **extra,
        }

    def _all(self, kind: str, namespace: str) -> list[Obj]:
        return [o for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]

    def _owned(self, kind: str, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        return [
            o
            for o in self._all(kind, owner["metadata"]["namespace"])
            if any(r["uid"] == uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    def _reconcile(self, dep: Obj, created: datetime) -> None:
        """The deployment controller on a template change: the ReplicaSet of that template
        (made, or reused on an undo) takes the next revision, and the Deployment follows."""
        replica_sets = self._owned("ReplicaSet", dep)
        revision = 1 + max(
            (int(rs["metadata"]["annotations"][REVISION]) for rs in replica_sets), default=0
        )
        key = _template_key(dep["spec"]["template"])
        rs = next((r for r in replica_sets if _template_key(r["spec"]["template"]) == key), None)
        if rs is None:
            rs = self._new_replica_set(dep, key, created)
        elif REVISION in rs["metadata"]["annotations"]:  # reused: its old revision is history
            old = rs["metadata"]["annotations"][REVISION]
            history = rs["metadata"]["annotations"].get(REVISION_HISTORY)
            rs["metadata"]["annotations"][REVISION_HISTORY] = f"{history},{old}" if history else old
        rs["metadata"]["annotations"][REVISION] = str(revision)
        rs["metadata"]["resourceVersion"] = str(next(self._versions))
        dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        self._event(dep, "ScalingReplicaSet", f"Scaled up replica set {rs['metadata']['name']}")

    def _copy_annotations(self, dep: Obj) -> None:
        """The controller copies the Deployment's annotations onto its current ReplicaSet, but
        for those of the rollout itself (skipCopyAnnotation in deployment/util)."""
        annotations = dep["metadata"].get("annotations") or {}
        current = annotations.get(REVISION)
        for rs in self._owned("ReplicaSet", dep):
            if rs["metadata"]["annotations"].get(REVISION) == current:
                copied = {k: v for k, v in annotations.items() if k not in NOT_COPIED_TO_RS}
                rs["metadata"]["annotations"].update(copied)

    def _new_replica_set(self, dep: Obj, key: str, created: datetime) -> Obj:
        namespace, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        pod_hash = hashlib.sha256(key.encode()).hexdigest()[:10]
        template = copy.deepcopy(dep["spec"]["template"])
        template["metadata"].setdefault("labels", {})[HASH] = pod_hash
        match_labels = dict(dep["spec"]["selector"].get("matchLabels") or {})
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": self._metadata(
                namespace,
                f"{name}-{pod_hash}",
                created,
                generation=1,
                labels=dict(template["metadata"]["labels"]),
                annotations={},
                ownerReferences=[_owner(dep)],
            ),
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {**match_labels, HASH: pod_hash}},
                "template": template,
            },
            "status": {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0},
        }
        self.objects[("ReplicaSet", namespace, rs["metadata"]["name"])] = rs
        return rs

    def _progress(self, dep: Obj) -> None:
        dep["status"]["observedGeneration"] = dep["metadata"]["generation"]
        key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        if self.hold_rollouts or key in self._reads_until_converged:
            dep["status"]["updatedReplicas"] = 0
            return
        self._converge(dep)

    def _converge(self, dep: Obj, ready: int | None = None) -> None:
        desired = dep["spec"]["replicas"]
        ready = desired if ready is None else ready
        current = str(dep["metadata"]["annotations"][REVISION])
        for rs in self._owned("ReplicaSet", dep):
            is_current = rs["metadata"]["annotations"][REVISION] == current
            self._replace_pods(rs, desired if is_current else 0, ready=True, ready_count=ready)
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": desired - ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready >= desired else "False",
                    "reason": "MinimumReplicasAvailable",
                },
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        dep["metadata"]["resourceVersion"] = str(next(self._versions))

    def _replace_pods(
        self, rs: Obj, count: int, *, ready: bool, ready_count: int | None = None
    ) -> None:
        """The replica-set controller: `count` pods, the first `ready_count` of them ready."""
        pods: list[Obj] = sorted(self._owned("Pod", rs), key=lambda p: p["metadata"]["name"])
        for extra in pods[count:]:
            meta = extra["metadata"]
            del self.objects[("Pod", meta["namespace"], meta["name"])]
        for _ in range(count - len(pods)):
            meta = rs["metadata"]
            name = f"{meta['name']}-{uuid.uuid4().hex[:5]}"
            pod = self._pod(
                meta["namespace"], name, rs["spec"]["template"]["metadata"]["labels"], rs, ready
            )
            self.objects[("Pod", meta["namespace"], name)] = pod
        pods = sorted(self._owned("Pod", rs), key=lambda p: p["metadata"]["name"])
        if ready_count is not None:
            for i, pod in enumerate(pods):
                _set_ready(pod, i < ready_count)
        n_ready = sum(_is_ready(p) for p in pods)
        rs["spec"]["replicas"] = count
        rs["status"] = {
            "replicas": count,
            "readyReplicas": n_ready,
            "availableReplicas": n_ready,
            "observedGeneration": 1,
        }

    def _pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        owner: Obj | None,
        ready: bool,
        node: str = "kind-worker",
    ) -> Obj:
        template = (
            owner["spec"]["template"]["spec"]
            if owner
            else {"containers": [{"name": "app", "image": IMAGE}]}
        )
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self._metadata(
                namespace,
                name,
                datetime.now(UTC),
                labels=dict(labels),
                ownerReferences=[_owner(owner)] if owner else [],
            ),
            "spec": {**copy.deepcopy(template), "nodeName": node},
            "status": {},
        }
        _set_ready(pod, ready)
        return pod

    def _event(self, about: Obj, reason: str, message: str, kind: str = "Normal") -> None:
        meta, now = about["metadata"], timestamp(datetime.now(UTC))
        name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
        self.objects[("Event", meta["namespace"], name)] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": self._metadata(meta["namespace"], name, datetime.now(UTC)),
            "involvedObject": {
                "apiVersion": KINDS[about["kind"]][0],
                "kind": about["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "fake-kubernetes"},
        }


IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_GRACE_SECONDS = 30  # a pod's terminationGracePeriodSeconds when its spec sets none


def pod_template(labels: dict[str, str], revision: int) -> Obj:
    """The seeded pod template of a revision: the revision is in env SEEDED_REVISION."""
    return {
        "metadata": {"labels": dict(labels) or {"app": "unselected"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "env": [{"name": "SEEDED_REVISION", "value": str(revision)}],
                }
            ],
            "terminationGracePeriodSeconds": 1,
        },
    }


_NODE_CONDITIONS = [
    # type, status when healthy, its reason then, its message then
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
]


def node_status(name: str, ready: str, now: datetime) -> Obj:
    """A Node's status as the kubelet posts it; once it stops posting ("Unknown"), the node
    controller sets every condition Unknown, as it does."""
    stale = ready == "Unknown"
    conditions = []
    for kind, healthy, reason, message in _NODE_CONDITIONS:
        status, why, says = healthy, reason, message
        if stale:
            status, why, says = (
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        elif kind == "Ready" and ready == "False":
            status, why, says = "False", "KubeletNotReady", "container runtime is down"
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": why,
                "message": says,
                "lastHeartbeatTime": timestamp(now - timedelta(minutes=10 if stale else 0)),
                "lastTransitionTime": timestamp(now - timedelta(minutes=6)),
            }
        )
    resources = {"cpu": "4", "memory": "16374584Ki", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "capacity": resources,
        "allocatable": {**resources, "cpu": "3800m", "memory": "15850296Ki"},
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "172.18.0.3"},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "0" * 32,
            "systemUUID": str(uuid.uuid4()),
            "bootID": str(uuid.uuid4()),
            "kernelVersion": "6.8.0-45-generic",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "containerd://2.1.1",
            "kubeletVersion": "v1.33.1",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def _credit(obj: Obj, manager: str, subresource: str | None = None) -> None:
    """The write's entry in metadata.managedFields (one per manager, operation and
    subresource, as the API server keeps them; without the fieldsV1 set of fields)."""
    entry = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": obj["apiVersion"],
        "time": timestamp(datetime.now(UTC)),
        "fieldsType": "FieldsV1",
        **({"subresource": subresource} if subresource else {}),
    }
    same = ("manager", "operation", "subresource")
    fields = obj["metadata"].setdefault("managedFields", [])
    kept = [f for f in fields if any(f.get(k) != entry.get(k) for k in same)]
    obj["metadata"]["managedFields"] = [*kept, entry]


def seeded_revision(obj: Obj) -> int:
    """The SEEDED_REVISION of a Deployment's or ReplicaSet's pod template."""
    return int(obj["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"])


def _owner(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _is_ready(pod: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def _set_ready(pod: Obj, ready: bool) -> None:
    now = timestamp(datetime.now(UTC))
    flag = "True" if ready else "False"
    container = pod["spec"]["containers"][0]
    pod["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ],
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": f"docker.io/library/{container['image']}@sha256:{'0' * 64}",
                "ready": ready,
                "started": True,
                "restartCount": 0 if ready else 3,
                "state": {"running": {"startedAt": now}},
                # A container that is not ready here has been restarting: how it last ended.
                **(
                    {}
                    if ready
                    else {
                        "lastState": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "OOMKilled",
                                "startedAt": now,
                                "finishedAt": now,
                                "containerID": f"containerd://{'1' * 64}",
                            }
                        }
                    }
                ),
            }
        ],
        "startTime": now,
    }
