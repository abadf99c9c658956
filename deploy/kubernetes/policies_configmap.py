"""Write policies-configmap.yaml: the ConfigMap of the policy files, mounted at REMEDIATOR_POLICIES.

Run it after changing anything in policies/ (tests/test_deploy.py fails while the two differ):

    python3 deploy/kubernetes/policies_configmap.py

kustomize's configMapGenerator cannot be used instead: it refuses files outside the
kustomization's directory (policies/ is two levels up) unless every `kubectl apply -k` is given
`--load-restrictor LoadRestrictionsNone`. The policy tests (policies/tests/) are for CI and are
not shipped to the cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
POLICIES = HERE.parents[1] / "policies"
OUTPUT = HERE / "policies-configmap.yaml"
HEADER = (
    "# Generated from policies/*.yaml: do not edit here. Change the policy files, then run\n"
    "#   python3 deploy/kubernetes/policies_configmap.py\n"
)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so the ConfigMap reads like the files it holds."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def policy_files(directory: Path = POLICIES) -> dict[str, str]:
    """What the service loads from its policy directory: the top-level YAML files."""
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return {path.name: path.read_text(encoding="utf-8") for path in files}


def render(directory: Path = POLICIES) -> str:
    configmap: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "remediator-policies",
            "namespace": "remediator",
            "labels": {"app.kubernetes.io/name": "remediator"},
        },
        "data": policy_files(directory),
    }
    body = yaml.dump(configmap, Dumper=_LiteralDumper, sort_keys=False, width=1000)
    return HEADER + body


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
