"""Alert histories and policy directories for `policies replay` (tests/test_replay.py and the
replay benchmark)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.policies import shipped_matrix
from tests.support.webhooks import webhook, webhook_alert

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)

RESTART = """\
name: restart-shop
match:
  - alertname="ShopDown"
severity: P2
namespaces: ["prod"]
target:
  kind: Application
  namespace: prod
  name: "{{ labels.app }}"
  url: "http://{{ labels.app }}.prod.svc"
steps:
  - action: http.request
    params: {method: POST, url: "http://{{ labels.app }}.prod.svc/admin/restart"}
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: RATE, per: 1h}
max_targets: {count: 2, per: 10m}
circuit_breaker: {failures: 2, window: 1h, cooldown: 30m}
"""


def restart_policy(rate: int = 1) -> str:
    return RESTART.replace("RATE", str(rate))


STAGING = (
    restart_policy(1)
    .replace("restart-shop", "restart-staging")
    .replace('alertname="ShopDown"', 'alertname="StagingDown"')
    .replace("prod", "staging")
)


def write_policy_dir(directory: Path, *policies: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "escalation.yaml").write_text(shipped_matrix())
    for number, policy in enumerate(policies):
        (directory / f"policy-{number}.yaml").write_text(policy)
    return directory


def git(repository: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@example.com",
         *args],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert(
    alertname: str,
    app: str,
    minutes: float,
    *,
    resolved_after: float | None = None,
    severity: str = "high",
    fingerprint: str | None = None,
) -> list[dict[str, Any]]:
    """An alert episode's webhook alerts: its firing, and its resolution if it resolves."""
    labels = {"alertname": alertname, "app": app, "severity": severity}
    fingerprint = fingerprint or f"{alertname}-{app}-{minutes:g}".lower()
    fired = webhook_alert(labels, fingerprint=fingerprint, starts_at=at(minutes))
    if resolved_after is None:
        return [fired]
    resolved = webhook_alert(
        labels, fingerprint=fingerprint, starts_at=at(minutes), status="resolved",
        ends_at=at(minutes + resolved_after),
    )  # fmt: skip
    return [fired, resolved]


# A morning of the shop: a restart, the same app again within the hour (rate limit), a second
# app, a third within 10 minutes (blast radius), an alert no policy matches, and the first app
# two hours later.
HISTORY = [
    *alert("ShopDown", "cart", 0, resolved_after=4),
    *alert("ShopDown", "cart", 5, resolved_after=30),
    *alert("ShopDown", "search", 6, resolved_after=3),
    *alert("ShopDown", "checkout", 7, resolved_after=20),
    *alert("DiskFull", "db", 8, severity="critical", resolved_after=60),
    *alert("ShopDown", "cart", 120, resolved_after=2),
]


def payloads(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One webhook payload per alert state."""
    return [webhook(one) for one in alerts]


def write_jsonl(file: Path, alerts: Iterable[dict[str, Any]]) -> Path:
    file.write_text("".join(json.dumps(body) + "\n" for body in payloads(alerts)))
    return file
