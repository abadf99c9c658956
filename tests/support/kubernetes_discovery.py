"""The API discovery documents of the fake Kubernetes API, for `kubectl` run against it.

kubectl finds what a server serves before it calls it: GET /api and /apis (the legacy
discovery documents: kubectl 1.32 asks for the aggregated form first, and falls back when the
answer is plain JSON of kind APIVersions / APIGroupList), then /api/v1 and /apis/apps/v1 (an
APIResourceList each). A resource kubectl does not find there is "the server doesn't have a
resource type". The documents list what the fake serves, with the real server's names, kinds,
short names, verbs and the scale subresource's group (autoscaling/v1), as the real server
returns them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

Obj = dict[str, Any]

_VERBS = ["get", "list", "patch", "delete"]


def _resource(name: str, kind: str, namespaced: bool = True, **extra: Any) -> Obj:
    return {
        "name": name,
        "singularName": kind.lower() if "/" not in name else "",
        "namespaced": namespaced,
        "kind": kind,
        **{"verbs": _VERBS, **extra},
    }


CORE_V1: Obj = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        _resource("pods", "Pod", shortNames=["po"], categories=["all"]),
        _resource("configmaps", "ConfigMap", shortNames=["cm"]),
        _resource("events", "Event", shortNames=["ev"]),
        _resource("nodes", "Node", namespaced=False, shortNames=["no"]),
    ],
}

APPS_V1: Obj = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "apps/v1",
    "resources": [
        _resource("deployments", "Deployment", shortNames=["deploy"], categories=["all"]),
        _resource(
            "deployments/scale", "Scale", group="autoscaling", version="v1", verbs=["get", "patch"]
        ),
        _resource("replicasets", "ReplicaSet", shortNames=["rs"], categories=["all"]),
    ],
}

API_VERSIONS: Obj = {
    "kind": "APIVersions",
    "versions": ["v1"],
    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
}

API_GROUPS: Obj = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        {
            "name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
        }
    ],
}


VERSION: Obj = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake"}


def add_discovery(app: web.Application) -> None:
    """Serve the discovery documents (and /version) on `app`."""
    for path, document in (
        ("/version", VERSION),
        ("/api", API_VERSIONS),
        ("/apis", API_GROUPS),
        ("/api/v1", CORE_V1),
        ("/apis/apps/v1", APPS_V1),
    ):
        app.router.add_route("GET", path, _answer(document))


def _answer(document: Obj) -> Any:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(document)

    return handler
