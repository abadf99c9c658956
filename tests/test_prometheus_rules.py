"""The shipped rules for Remediator itself (deploy/prometheus/remediator-rules.yml): promtool
accepts them, their unit tests pass, the compose Prometheus loads them, and every metric they
read is one the service exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from remediator.metrics import Metrics

PROMETHEUS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = PROMETHEUS / "remediator-rules.yml"
RULE_TESTS = PROMETHEUS / "remediator-rules.test.yml"
ALERTS = {
    "RemediatorPagesStuckUnsent",
    "RemediatorQueueBackingUp",
    "RemediatorPolicyRunsFailing",
    "RemediatorPausedForHours",
}


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install it with `apt-get install prometheus`")
    return found


def promtool_run(promtool: str, *args: str) -> str:
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rules() -> list[dict[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules(promtool: str) -> None:
    promtool_run(promtool, "check", "rules", str(RULES))


def test_the_rules_pass_their_unit_tests(promtool: str) -> None:
    promtool_run(promtool, "test", "rules", str(RULE_TESTS))


def test_each_alert_is_unit_tested_firing_and_silent() -> None:
    assert {rule["alert"] for rule in rules()} == ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    fires = {check["alertname"] for check in checks if check["exp_alerts"]}
    silent = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert fires == silent == ALERTS


def test_the_compose_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert RULES.name in config["rule_files"]


def test_every_metric_the_rules_read_is_exported() -> None:
    exported = {
        line.split()[2]
        for line in generate_latest(Metrics().registry).decode().splitlines()
        if line.startswith("# TYPE ")
    }
    exported |= {f"{name}_total" for name in exported}  # a counter's samples
    for rule in rules():
        read = set(re.findall(r"\bremediator_[a-z_]+", rule["expr"]))
        assert read, rule["alert"]
        assert read <= exported, f"{rule['alert']} reads {sorted(read - exported)}"
