"""decide() on plain data: the shipped policies, priorities, safety of templates, the index."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from remediator.alerts import Alert, AlertStatus
from remediator.cli.policies import explain, run_tests
from remediator.engine.decide import decide
from remediator.engine.plan import NoMatch, Plan, Refused
from remediator.metrics import Metrics
from remediator.policy.loader import load_policies
from remediator.policy.policyset import PolicySet
from remediator.runtime.live_policies import LivePolicies
from tests.support.own_process import json_printed_by
from tests.support.policies import SHIPPED_POLICIES
from tests.support.samples import SAMPLES

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def alert(**labels: str) -> Alert:
    return Alert(
        status=AlertStatus.FIRING,
        labels=labels,
        startsAt=NOW,
        fingerprint="f00d",
    )


def test_application_down_plans_every_step_with_rendered_parameters(shipped: PolicySet) -> None:
    decision = decide(
        alert(
            alertname="ApplicationDown",
            namespace="claude-deployment-prod",
            deployment="api",
            instance="api.claude-deployment-prod.svc:5000",
            severity="critical",
        ),
        shipped,
        NOW,
    )
    assert isinstance(decision, Plan)
    assert decision.rate_limit_key == "application-down/claude-deployment-prod/api"
    assert [step.action for step in decision.steps] == [
        "http.check",
        "kubernetes.diagnose",
        "kubernetes.rollout_restart",
        "kubernetes.rollout_status",
        "http.check",
        "kubernetes.rollout_undo",
    ]
    assert (
        decision.steps[0].params.model_dump()["url"]
        == "http://api.claude-deployment-prod.svc:5000/health"
    )
    assert [step.mutating for step in decision.steps] == [False, False, True, False, False, True]
    assert decision.escalation.page_while_remediating
    assert decision.decided_at == NOW


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param("api; rm -rf /", id="shell"),
        pytest.param("{{ 7*7 }}", id="template"),
        pytest.param("{{ labels.__class__ }}", id="dunder"),
        pytest.param("", id="empty"),
        pytest.param("API", id="uppercase"),
        pytest.param("a" * 254, id="too-long"),
        pytest.param("../kube-system", id="path"),
    ],
)
def test_a_hostile_label_can_only_become_a_refused_plan(shipped: PolicySet, hostile: str) -> None:
    decision = decide(
        alert(
            alertname="HighErrorRate",
            namespace="claude-deployment-prod",
            deployment=hostile,
            severity="warning",
        ),
        shipped,
        NOW,
    )
    if hostile == "":
        assert isinstance(decision, NoMatch)  # deployment=~".+" does not match an empty label
    else:
        assert isinstance(decision, Refused)
        assert "is not a valid RFC 1123 name" in decision.reason
        assert decision.escalation.level == "P2"


def test_a_hostile_pod_parameter_is_refused(shipped: PolicySet) -> None:
    decision = decide(
        alert(
            alertname="HighMemoryUsage",
            namespace="claude-deployment-prod",
            deployment="api",
            pod="api-1 --all",
            container="api",
        ),
        shipped,
        NOW,
    )
    assert isinstance(decision, Refused)
    assert "steps[2] pod 'api-1 --all' is not a valid RFC 1123 name" in decision.reason


def test_an_unmatched_alert_escalates_by_its_severity_label(shipped: PolicySet) -> None:
    decision = decide(alert(alertname="Unknown", severity="high"), shipped, NOW)
    assert isinstance(decision, NoMatch)
    assert (decision.escalation.level, decision.escalation.channels) == ("P2", ("slack", "email"))
    unlabelled = decide(alert(alertname="Unknown"), shipped, NOW)
    assert unlabelled.escalation.level == shipped.matrix.default_level


POLICY = """\
name: {name}
priority: {priority}
match: [{match}]
target: {{kind: Deployment, namespace: prod, name: api}}
namespaces: [prod]
steps: [{{action: kubernetes.rollout_restart}}]
rate_limit: {{windows: [{{max: 1, per: 1h}}]}}
"""


def write_policy(directory: Path, file: str, name: str, priority: int, match: str) -> None:
    (directory / file).write_text(POLICY.format(name=name, priority=priority, match=match))


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    shutil.copy(SHIPPED_POLICIES / "escalation.yaml", tmp_path)
    return tmp_path


def test_highest_priority_wins_then_file_name(policy_dir: Path) -> None:
    write_policy(policy_dir, "b.yaml", "b-low", 1, "'alertname=\"X\"'")
    write_policy(policy_dir, "c.yaml", "c-high", 5, "'alertname=~\"X|Y\"'")
    write_policy(policy_dir, "a.yaml", "a-high", 5, "'alertname=\"X\"'")
    decision = decide(alert(alertname="X"), load_policies(policy_dir), NOW)
    assert isinstance(decision, Plan)
    assert decision.policy == "a-high"
    decision = decide(alert(alertname="Y"), load_policies(policy_dir), NOW)
    assert isinstance(decision, Plan)
    assert decision.policy == "c-high"


def test_a_disabled_policy_never_wins(policy_dir: Path) -> None:
    write_policy(policy_dir, "a.yaml", "a", 5, "'alertname=\"X\"'")
    (policy_dir / "a.yaml").write_text((policy_dir / "a.yaml").read_text() + "enabled: false\n")
    assert isinstance(decide(alert(alertname="X"), load_policies(policy_dir), NOW), NoMatch)


def test_matching_consults_only_the_alertnames_policies_and_unindexed_ones(
    policy_dir: Path,
) -> None:
    for number in range(1000):
        write_policy(
            policy_dir, f"p{number:04}.yaml", f"p{number}", 0, f"'alertname=\"A{number}\"'"
        )
    write_policy(policy_dir, "z.yaml", "by-team", 0, "'team=\"db\"'")
    policies = load_policies(policy_dir)
    assert [p.name for p in policies.candidates({"alertname": "A7"})] == ["p7", "by-team"]
    decision = decide(alert(alertname="A999"), policies, NOW)
    assert isinstance(decision, Plan)
    assert decision.policy == "p999"


def test_the_shipped_policy_tests_pass() -> None:
    out = io.StringIO()
    assert run_tests(SHIPPED_POLICIES, out) == 0, out.getvalue()
    assert "0 failed" in out.getvalue()


def test_a_failing_policy_test_prints_a_diff_with_its_line(policy_dir: Path) -> None:
    write_policy(policy_dir, "a.yaml", "a", 0, "'alertname=\"X\"'")
    (policy_dir / "tests").mkdir()
    (policy_dir / "tests" / "a.yaml").write_text(
        "tests:\n"
        "  - name: matches a\n"
        "    alert: {labels: {alertname: X}}\n"
        "    expect: {policy: a}\n"
        "  - name: scales instead\n"
        "    alert: {labels: {alertname: X}}\n"
        "    expect: {policy: a, steps: [kubernetes.scale]}\n"
    )
    out = io.StringIO()
    assert run_tests(policy_dir, out) == 1
    text = out.getvalue()
    assert "PASS a.yaml: matches a" in text
    assert f"FAIL {policy_dir}/tests/a.yaml:5: scales instead" in text
    assert "--- expected\n+++ decided" in text
    assert "-- kubernetes.scale\n+- kubernetes.rollout_restart" in text
    assert text.endswith("1 passed, 1 failed\n")


def test_a_policy_test_file_that_does_not_parse_is_named_and_the_others_still_run(
    policy_dir: Path,
) -> None:
    write_policy(policy_dir, "a.yaml", "a", 0, "'alertname=\"X\"'")
    (policy_dir / "tests").mkdir()
    (policy_dir / "tests" / "a.yaml").write_text(
        "tests:\n  - name: matches a\n    alert: {labels: {alertname: X}\n    expect: {policy: a}\n"
    )
    (policy_dir / "tests" / "b.yaml").write_text(
        "tests:\n  - name: still runs\n    alert: {labels: {alertname: X}}\n"
        "    expect: {policy: a}\n"
    )
    (policy_dir / "tests" / "c.yaml").write_bytes(b"tests: \xff\n")
    out = io.StringIO()
    assert run_tests(policy_dir, out) == 1
    [syntax, passed, unreadable, summary] = out.getvalue().splitlines()
    assert syntax.startswith(f"{policy_dir}/tests/a.yaml:4:5: YAML syntax error: "), syntax
    assert unreadable.startswith(f"{policy_dir}/tests/c.yaml:1:1: cannot read: "), unreadable
    assert (passed, summary) == ("PASS b.yaml: still runs", "1 passed, 2 failed")


def test_explain_names_the_winner_and_the_failed_matchers_of_near_misses() -> None:
    out = io.StringIO()
    assert explain(SAMPLES / "high-error-rate.firing.json", SHIPPED_POLICIES, out) == 0
    text = out.getvalue()
    assert "high-error-rate (high-error-rate.yaml, priority 50): matches" in text
    assert (
        'pod-crash-looping (pod-crash-looping.yaml, priority 60): fails alertname="PodCrashLooping"'
        in text
    )
    assert "outcome: plan" in text
    assert "kubernetes.rollout_undo" in text


def test_explain_marks_each_matching_policy_that_loses_and_why(policy_dir: Path) -> None:
    write_policy(policy_dir, "b.yaml", "b-low", 5, "'alertname=\"X\"'")
    write_policy(policy_dir, "c.yaml", "c-high", 10, "'alertname=~\"X|Y\"'")
    write_policy(policy_dir, "a.yaml", "a-high", 10, "'alertname=\"X\"'")
    payload = policy_dir / "x.json"  # not a policy file: only *.yaml and *.yml are
    body = json.loads((SAMPLES / "application-down.firing.json").read_text())["body"]
    body["alerts"] = body["alerts"][:1]
    body["alerts"][0]["labels"] = {"alertname": "X"}
    payload.write_text(json.dumps(body))
    out = io.StringIO()
    assert explain(payload, policy_dir, out) == 0
    verdicts = [line.strip() for line in out.getvalue().splitlines() if "priority" in line]
    assert verdicts == [
        "a-high (a.yaml, priority 10): matches and wins",
        "c-high (c.yaml, priority 10): matches, but loses to a-high"
        " (same priority 10, a.yaml sorts before c.yaml)",
        "b-low (b.yaml, priority 5): matches, but loses to a-high (priority 10 > 5)",
    ]
    assert "policy: a-high" in out.getvalue()


async def test_a_bad_edit_is_refused_and_the_live_set_stays(policy_dir: Path) -> None:
    write_policy(policy_dir, "a.yaml", "a", 0, "'alertname=\"X\"'")
    metrics = Metrics()
    live = LivePolicies.load(policy_dir, metrics.policies)
    (policy_dir / "a.yaml").write_text("name: a\nmatch: [\n")
    assert not await live.reload()
    assert [policy.name for policy in live.current.policies] == ["a"]
    assert live.health()["status"] == "degraded"
    assert "a.yaml:" in live.health()["detail"]
    assert metrics.policies.policy_reloads.labels("failed")._value.get() == 1
    write_policy(policy_dir, "a.yaml", "renamed", 0, "'alertname=\"X\"'")
    assert await live.reload()
    assert [policy.name for policy in live.current.policies] == ["renamed"]
    assert live.health()["status"] == "ok"


def test_explain_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    """`remediator policies explain FILE | head -1`: no traceback when head stops reading."""
    capture = json.loads((SAMPLES / "high-error-rate.firing.json").read_text())
    [one] = capture["body"]["alerts"]
    capture["body"]["alerts"] = [{**one, "fingerprint": f"{n:016x}"} for n in range(300)]
    payload = tmp_path / "many.json"
    payload.write_text(json.dumps(capture))  # far more than a pipe holds
    command = ["policies", "explain", str(payload), "--policies", str(SHIPPED_POLICIES)]
    reader = subprocess.Popen(
        [sys.executable, "-m", "remediator", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    reader.stdout.readline()
    reader.stdout.close()  # as head does after its line
    _, errors = reader.communicate(timeout=60)
    assert b"Traceback" not in errors
    assert reader.returncode == 0


def test_a_node_target_is_cluster_scoped_and_its_plan_only_reads(shipped: PolicySet) -> None:
    decision = decide(
        alert(alertname="NodeNotReady", node="worker-2", severity="high"), shipped, NOW
    )
    assert isinstance(decision, Plan)
    assert (decision.target.kind, decision.target.namespace) == ("Node", None)
    assert decision.rate_limit_key == "node-not-ready/-/worker-2"
    assert decision.steps
    assert not any(step.mutating for step in decision.steps + decision.on_resolved)


NAMESPACE_ALLOWED = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide
from remediator.engine.plan import Plan
from remediator.policy.loader import load_policies

policies = load_policies(Path(sys.argv[1]))
decided = {}
for namespace in ["a" * 63, "a" * 62 + "x", "ab-" * 20 + "abx"]:
    labels = {"alertname": "X", "namespace": namespace}
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    alert = Alert(status=AlertStatus.FIRING, labels=labels, startsAt=now, fingerprint="f00d")
    decided[namespace] = isinstance(decide(alert, policies, now), Plan)
print(json.dumps(decided))
"""


def test_a_catastrophic_namespace_pattern_decides_in_linear_time(policy_dir: Path) -> None:
    """A namespace is a label (a DNS label: 63 characters at most), checked against the policy's
    and the guard rails' patterns; backtracking, `([a-z0-9]+-?)+x` on 63 characters would take
    years. RE2 runs them, as it runs matchers."""
    (policy_dir / "guardrails.yaml").write_text("allowed_namespaces: ['(a|aa)+x']\n")
    policy = POLICY.format(name="p", priority=0, match="'alertname=\"X\"'")
    policy = policy.replace("namespace: prod,", "namespace: '{{ labels.namespace }}',")
    policy = policy.replace("namespaces: [prod]", "namespaces: ['([a-z0-9]+-?)+x']")
    (policy_dir / "p.yaml").write_text(policy)
    decided = json_printed_by(
        NAMESPACE_ALLOWED, str(policy_dir), what="checking 63-character namespaces"
    )
    assert decided == {"a" * 63: False, "a" * 62 + "x": True, "ab-" * 20 + "abx": True}
