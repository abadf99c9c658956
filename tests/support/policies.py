"""The policies shipped in policies/."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

SHIPPED_POLICIES = Path(__file__).resolve().parents[2] / "policies"
# The shipped policies, the severity matrix and the guard rails aside.
SHIPPED_POLICY_COUNT = len(list(SHIPPED_POLICIES.glob("*.yaml"))) - 2


def shipped_matrix(resolve_after: str = "0s") -> str:
    """The shipped escalation.yaml, its resolves held `resolve_after` (at once, unless a test
    is about holding them: tests/test_flapping.py)."""
    text = (SHIPPED_POLICIES / "escalation.yaml").read_text()
    shipped = "\nresolve_after: 5m\n"
    assert shipped in text
    return text.replace(shipped, f"\nresolve_after: {resolve_after}\n")


# The tests' stand-ins (HTTP servers, Prometheus, Alertmanager) listen on loopback, which
# guardrails allowed_hosts refuses unless an entry names it: the tests name it, as an
# operator names a host their policies may reach.
STAND_INS = "127.0.0.1"
STAND_INS_ALLOWED = f"allowed_hosts: ['*.svc', '*.svc.cluster.local', '{STAND_INS}']\n"


def shipped_guardrails(overrides: str, *, stand_ins: bool = True) -> str:
    """The shipped guardrails.yaml with the settings in `overrides` (YAML) put over it, and
    (with `stand_ins`) the loopback stand-ins allowed as hosts."""
    rails = yaml.safe_load((SHIPPED_POLICIES / "guardrails.yaml").read_text()) or {}
    if stand_ins:
        rails["allowed_hosts"] = [*rails.get("allowed_hosts", []), STAND_INS]
    rails.update(yaml.safe_load(overrides) or {})
    return yaml.safe_dump(rails, sort_keys=False)


def without_budgets(matrix: str) -> str:
    """The matrix text with no channel budget: for a test of every message a channel renders
    or of every incident escalated, not of floods (tests/reliability/test_escalation_floods)."""
    return re.sub(r"(?m)^    budget: .*\n", "", matrix)
