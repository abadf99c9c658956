"""The three patch formats of the Kubernetes API, applied as the API server applies them.

- JSON patch (RFC 6902, `application/json-patch+json`): add, remove, replace, move, copy, test.
- JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge, null deletes, lists
  are replaced whole.
- Strategic merge patch (`application/strategic-merge-patch+json`, what kubectl and the Python
  client send for a dict body): as a merge patch, except that a list with a merge key in the
  API's Go types (`patchMergeKey`: containers by name, ports by containerPort, ...) is merged
  element by element, and the directives `$patch` (replace, delete, merge),
  `$setElementOrder/<list>`, `$retainKeys` and `$deleteFromPrimitiveList/<list>` apply.
  https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md

A patch the server would refuse raises `InvalidPatch`, answered 422 by the fake.
"""

from __future__ import annotations

import copy
from typing import Any

# The lists of the kinds the fake serves that merge by a key (`patchMergeKey` and
# `patchStrategy:"merge"` in k8s.io/api), by the field's name; every other list is replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "conditions": "type",
    "ownerReferences": "uid",
}
# Lists of strings that merge as sets (`patchStrategy:"merge"` without a key).
MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})

ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"


class InvalidPatch(Exception):
    """A patch the API server answers 422 (Invalid) to; the message says where."""


# -- RFC 7386 -----------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- RFC 6902 -----------------------------------------------------------------------------------

_MISSING = object()


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise InvalidPatch(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, path: str) -> tuple[Any, Any]:
    """The container holding `path`'s last part, and that part (an index for a list)."""
    *parents, last = _pointer(path)
    node: Any = doc
    for part in parents:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise InvalidPatch(f"path {path} does not exist") from exc
    if isinstance(node, list) and last != "-":
        try:
            return node, int(last)
        except ValueError as exc:
            raise InvalidPatch(f"path {path}: {last!r} is not a list index") from exc
    return node, last


def _lookup(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return _MISSING


def _take(doc: Any, path: str) -> Any:
    node, key = _parent(doc, path)
    value = _lookup(node, key)
    if value is _MISSING:
        raise InvalidPatch(f"path {path} does not exist")
    del node[key]
    return value


def _put(doc: Any, path: str, value: Any, *, replace: bool) -> None:
    node, key = _parent(doc, path)
    if replace and _lookup(node, key) is _MISSING:
        raise InvalidPatch(f"path {path} does not exist")
    if isinstance(node, list) and not replace:
        node.insert(len(node) if key == "-" else key, value)
    else:
        node[key] = value


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902, all six operations, on objects and list indices."""
    doc = copy.deepcopy(target)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            node, key = _parent(doc, path)
            if _lookup(node, key) != op.get("value"):
                raise InvalidPatch(f"test failed at {path}")
        elif kind == "remove":
            _take(doc, path)
        elif kind in ("add", "replace"):
            _put(doc, path, copy.deepcopy(op.get("value")), replace=kind == "replace")
        elif kind in ("move", "copy"):
            source = op.get("from", "")
            value = _take(doc, source) if kind == "move" else _copy_of(doc, source)
            _put(doc, path, value, replace=False)
        else:
            raise InvalidPatch(f"unsupported JSON patch operation {kind!r}")
    return doc


def _copy_of(doc: Any, path: str) -> Any:
    node, key = _parent(doc, path)
    value = _lookup(node, key)
    if value is _MISSING:
        raise InvalidPatch(f"path {path} does not exist")
    return copy.deepcopy(value)


# -- strategic merge patch ----------------------------------------------------------------------


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch of `target` (a map)."""
    if not isinstance(patch, dict):
        raise InvalidPatch("a strategic merge patch must be a JSON object")
    return _merge_map(target if isinstance(target, dict) else {}, patch)


def _merge_map(target: dict[str, Any], patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _MISSING
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive not in (None, "merge"):
        raise InvalidPatch(f"unknown patch type {directive!r} in a map")
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = _merge_field(key, result.get(key), value)
        if merged is _MISSING:
            result.pop(key, None)
        else:
            result[key] = merged
    _delete_from_lists(result, patch)
    _retain_keys(result, patch)
    _order_lists(result, patch)
    return result


def _merge_field(key: str, current: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return _merge_map(current if isinstance(current, dict) else {}, value)
    if isinstance(value, list) and key in MERGE_KEYS:
        return _merge_keyed(MERGE_KEYS[key], current if isinstance(current, list) else [], value)
    if isinstance(value, list) and key in MERGED_PRIMITIVE_LISTS:
        old = current if isinstance(current, list) else []
        return old + [item for item in value if item not in old]
    return copy.deepcopy(value)


def _merge_keyed(key: str, current: list[Any], patch: list[Any]) -> list[Any]:
    """A list merged element by element on `key`; `{"$patch": "replace"}` replaces it."""
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise InvalidPatch(f"an element of a list merged by {key!r} has no {key!r}")
        at = next((i for i, old in enumerate(result) if old.get(key) == item[key]), None)
        merged = _merge_map(result[at] if at is not None else {}, item)
        if at is None and merged is not _MISSING:
            result.append(merged)
        elif at is not None and merged is _MISSING:
            del result[at]
        elif at is not None:
            result[at] = merged
    return result


def _delete_from_lists(result: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, gone in patch.items():
        if key.startswith(DELETE_FROM) and isinstance(gone, list):
            field = key.removeprefix(DELETE_FROM)
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in gone]


def _retain_keys(result: dict[str, Any], patch: dict[str, Any]) -> None:
    retained = patch.get("$retainKeys")
    if isinstance(retained, list):
        for key in [k for k in result if k not in retained]:
            del result[key]


def _order_lists(result: dict[str, Any], patch: dict[str, Any]) -> None:
    """`$setElementOrder/<list>`: the order of the merged list's elements (by merge key, or the
    values of a primitive list); elements it does not name keep their place after those."""
    for key, order in patch.items():
        if not key.startswith(ORDER) or not isinstance(order, list):
            continue
        field = key.removeprefix(ORDER)
        items = result.get(field)
        if not isinstance(items, list):
            continue
        merge_key = MERGE_KEYS.get(field)
        wanted = [o.get(merge_key) if merge_key and isinstance(o, dict) else o for o in order]

        def place(item: Any, merge_key: str | None = merge_key, wanted: list[Any] = wanted) -> int:
            name = item.get(merge_key) if merge_key and isinstance(item, dict) else item
            return wanted.index(name) if name in wanted else len(wanted)

        result[field] = sorted(items, key=place)
