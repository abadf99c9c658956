"""The policies shipped in policies/."""

from __future__ import annotations

from pathlib import Path

SHIPPED_POLICIES = Path(__file__).resolve().parents[2] / "policies"
# The shipped policies, the severity matrix and the guard rails aside.
SHIPPED_POLICY_COUNT = len(list(SHIPPED_POLICIES.glob("*.yaml"))) - 2
