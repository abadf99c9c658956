"""The fake API server's patch formats (tests/support/kubernetes_patches.py) against the
documented semantics: RFC 6902, RFC 7386, and the strategic merge patch examples of
sig-api-machinery's strategic-merge-patch.md. The parity tests (test_kubectl_parity.py) rely
on the fake applying what kubectl sends as the API server would."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.kubernetes_patches import (
    InvalidPatch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

POD_SPEC: dict[str, Any] = {
    "containers": [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ],
    "tolerations": [{"key": "a"}],
    "finalizers": ["x"],
}

SMP_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "containers merge by name; other fields and containers are kept",
        {"containers": [{"name": "app", "image": "app:2"}]},
        {**POD_SPEC, "containers": [
            {"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}]},
            POD_SPEC["containers"][1],
        ]},
    ),
    (
        "a new container is appended",
        {"containers": [{"name": "debug", "image": "busybox"}]},
        {**POD_SPEC,
         "containers": [*POD_SPEC["containers"], {"name": "debug", "image": "busybox"}]},
    ),
    (
        "$patch: delete removes the element by its key",
        {"containers": [{"name": "sidecar", "$patch": "delete"}]},
        {**POD_SPEC, "containers": [POD_SPEC["containers"][0]]},
    ),
    (
        "env merges by name inside the merged container",
        {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]},
        {**POD_SPEC, "containers": [
            {"name": "app", "image": "app:1",
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            POD_SPEC["containers"][1],
        ]},
    ),
    (
        "a list without a merge key is replaced",
        {"tolerations": [{"key": "b"}]},
        {**POD_SPEC, "tolerations": [{"key": "b"}]},
    ),
    (
        "a primitive list with the merge strategy is a union",
        {"finalizers": ["y", "x"]},
        {**POD_SPEC, "finalizers": ["x", "y"]},
    ),
    (
        "$setElementOrder orders the merged list",
        {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
         "containers": [{"name": "app", "image": "app:2"}]},
        {**POD_SPEC, "containers": [
            POD_SPEC["containers"][1],
            {"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}]},
        ]},
    ),
    (
        "null deletes a field",
        {"tolerations": None},
        {k: v for k, v in POD_SPEC.items() if k != "tolerations"},
    ),
    (
        "$patch: replace on a map replaces it",
        {"$patch": "replace", "containers": [{"name": "only", "image": "x"}]},
        {"containers": [{"name": "only", "image": "x"}]},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("patch", "expected"), [c[1:] for c in SMP_CASES],
                         ids=[c[0] for c in SMP_CASES])  # fmt: skip
def test_strategic_merge_patch(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert strategic_merge_patch(POD_SPEC, patch) == expected


def test_a_merge_patch_replaces_lists_whole() -> None:
    patched = merge_patch(POD_SPEC, {"containers": [{"name": "app", "image": "app:2"}]})
    assert patched["containers"] == [{"name": "app", "image": "app:2"}]


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": 1}
    patched = json_patch(
        doc,
        [
            {"op": "test", "path": "/c", "value": 1},
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "copy", "from": "/a/b/0", "path": "/a/b/0"},
            {"op": "replace", "path": "/a/b/1", "value": 9},
        ],
    )
    assert patched == {"a": {"b": [1, 9, 2, 3]}, "d": 1}
    with pytest.raises(InvalidPatch, match="test failed"):
        json_patch(doc, [{"op": "test", "path": "/c", "value": 2}])
    with pytest.raises(InvalidPatch, match="does not exist"):
        json_patch(doc, [{"op": "replace", "path": "/x/y", "value": 2}])
