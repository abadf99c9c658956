"""`remediator policies check`: every kind of mistake names its file, line, column and field."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from remediator.cli.policies import check
from remediator.policy.loader import PolicyErrors, load_policies
from tests.support.policies import SHIPPED_POLICY_COUNT

SHIPPED = Path(__file__).resolve().parents[1] / "policies"

VALID = """\
name: restart-api
match:
  - alertname="ApplicationDown"
target:
  kind: Deployment
  namespace: "{{ labels.namespace }}"
  name: "{{ labels.deployment }}"
steps:
  - action: kubernetes.rollout_restart
rate_limit:
  windows:
    - {max: 2, per: 1h}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "escalation.yaml").write_text((SHIPPED / "escalation.yaml").read_text())
    return tmp_path


def errors_for(directory: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    with pytest.raises(PolicyErrors) as raised:
        load_policies(directory)
    return [str(error) for error in raised.value.errors]


def test_the_shipped_policies_are_valid() -> None:
    out = io.StringIO()
    assert check(SHIPPED, out) == 0
    assert f"{SHIPPED_POLICY_COUNT} policies valid" in out.getvalue()


def test_a_valid_policy_loads(policy_dir: Path) -> None:
    (policy_dir / "restart.yaml").write_text(VALID)
    assert [policy.name for policy in load_policies(policy_dir).policies] == ["restart-api"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            ("- action: kubernetes.rollout_restart", "- action: kubernetes.rollout_restrat"),
            "p.yaml:9:13: steps[0].action: unknown action 'kubernetes.rollout_restrat';"
            " did you mean 'kubernetes.rollout_restart'?",
            id="unknown-action",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: kubernetes.scale\n    params: {replicas: 3, max_replicas: 5, speed: 2}",
            ),
            "p.yaml:10:44: steps[0].params.speed: unknown parameter 'speed' for kubernetes.scale"
            " (expected: replicas, by, min_replicas, max_replicas)",
            id="unknown-parameter",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: http.request\n    params: {url: 'http://api', json_body: {}}",
            ),
            "p.yaml:10:33: steps[0].params.json_body: unknown parameter 'json_body' for"
            " http.request; did you mean 'json'? (expected: url, method, json, headers_from_env,"
            " expect_status, timeout)",
            id="unknown-parameter-typo",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: kubernetes.diagnose\n    params: {verbose: true}",
            ),
            "p.yaml:10:14: steps[0].params.verbose: unknown parameter 'verbose':"
            " kubernetes.diagnose takes no parameters",
            id="unknown-parameter-of-no-parameters",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: kubernetes.scale\n    params: {replicas: many, max_replicas: 5}",
            ),
            "p.yaml:10:24: steps[0].params.replicas: Input should be a valid integer",
            id="parameter-type",
        ),
        pytest.param(
            ("per: 1h", "per: 1 hour"),
            "p.yaml:12:21: rate_limit.windows[0].per: "
            "expected a duration such as 30s, 10m or 1h30m, got '1 hour'",
            id="bad-duration",
        ),
        pytest.param(
            ('alertname="ApplicationDown"', 'alertname=~"(unclosed"'),
            "p.yaml:3:5: match[0]:",
            id="invalid-regex",
        ),
        pytest.param(
            ('alertname="ApplicationDown"', 'deployment=~"api-[a-z]++"'),
            "p.yaml:3:5: match[0]: invalid regular expression 'api-[a-z]++':"
            " bad repetition operator: ++",
            id="regex-go-refuses",
        ),
        pytest.param(
            ('alertname="ApplicationDown"', 'deployment=~"api-\\\\C"'),
            "p.yaml:3:5: match[0]: invalid regular expression 'api-\\\\C':"
            " invalid escape sequence: \\C",
            id="regex-only-re2-takes",
        ),
        pytest.param(
            ("steps:", "namespaces: [prod, 'prod-(']\nsteps:"),
            "p.yaml:8:13: namespaces: invalid regular expression 'prod-(': missing ): ^(?:prod-()$",
            id="namespace-regex",
        ),
        pytest.param(
            ('"{{ labels.deployment }}"', '"{{ labels.deployment }"'),
            "p.yaml:7:9: target.name: template syntax error:",
            id="template-syntax",
        ),
        pytest.param(
            ('"{{ labels.deployment }}"', '"{{ lables.deployment }}"'),
            "p.yaml:7:9: target.name: template uses 'lables', which it cannot see"
            " (it sees alert, annotations, labels)",
            id="template-unknown-name",
        ),
        pytest.param(
            ("steps:", "stepz:"),
            "p.yaml:8:1: stepz: unknown key 'stepz', did you mean 'steps'?",
            id="unknown-field",
        ),
        pytest.param(
            ("name: restart-api\n", ""),
            "p.yaml:1:1: name: Field required",
            id="missing-field",
        ),
        pytest.param(
            ("  kind: Deployment", "  kind: Deployment\n   bad: indent"),
            "p.yaml:6:7: YAML syntax error:",
            id="yaml-syntax",
        ),
        pytest.param(
            ("name: restart-api\n", "name: restart-api\nname: again\n"),
            "p.yaml:2:1: duplicate key 'name'",
            id="duplicate-key",
        ),
        pytest.param(
            ('  - alertname="ApplicationDown"', "  - {alertname: ApplicationDown}"),
            'p.yaml:3:5: match[0]: expected a matcher such as alertname="ApplicationDown"',
            id="matcher-not-text",
        ),
        pytest.param(
            ('  - alertname="ApplicationDown"', '  - alertname="ApplicationDown'),
            'p.yaml:3:5: match[0]: value lacks its closing double quote: "ApplicationDown',
            id="matcher-quote",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: http.check\n    params: {url: 'file:///etc/passwd'}",
            ),
            "p.yaml:10:19: steps[0].params.url: expected an http:// or https:// URL",
            id="url-scheme",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: kubernetes.scale\n    params: {replicas: 3, by: 1, max_replicas: 5}",
            ),
            "p.yaml:10:13: steps[0].params: set exactly one of replicas and by",
            id="scale-both-ways",
        ),
        pytest.param(
            (
                "- action: kubernetes.rollout_restart",
                "- action: kubernetes.scale\n    params: {by: 1, min_replicas: 6, max_replicas: 5}",
            ),
            "p.yaml:10:13: steps[0].params: min_replicas is above max_replicas",
            id="scale-bounds",
        ),
        pytest.param(
            ('  namespace: "{{ labels.namespace }}"\n', ""),
            "p.yaml:5:3: target: a Deployment target needs a namespace",
            id="target-namespace",
        ),
        pytest.param(
            (
                "  - action: kubernetes.rollout_restart",
                "  - {id: a, action: kubernetes.rollout_restart}\n"
                "  - {id: a, action: kubernetes.rollout_status}",
            ),
            "p.yaml:9:3: steps: step ids must be unique; repeated: a",
            id="step-ids",
        ),
        pytest.param(
            (
                "rate_limit:",
                "verify:\n  check: {action: kubernetes.rollout_restart}\nrate_limit:",
            ),
            "p.yaml:11:10: verify.check: a check must only read;"
            " kubernetes.rollout_restart changes things",
            id="check-that-changes",
        ),
    ],
)
def test_each_mistake_names_file_line_column_and_field(
    policy_dir: Path, change: tuple[str, str], expected: str
) -> None:
    [error] = errors_for(policy_dir, {"p.yaml": VALID.replace(*change)})
    assert error.startswith(f"{policy_dir}/{expected}"), error


@pytest.mark.parametrize(
    "regex", [r"\pL+-[0-9]+", r"\Qapi.v1\E", "(?U)api-.+", "api(?i)-X", "([a-z0-9]+-?)+"]
)
def test_a_regex_go_takes_is_taken(policy_dir: Path, regex: str) -> None:
    quoted = regex.replace("\\", "\\\\")  # a matcher's value unescapes `\\`
    text = VALID.replace('alertname="ApplicationDown"', f'deployment=~"{quoted}"')
    (policy_dir / "p.yaml").write_text(text)
    [policy] = load_policies(policy_dir).policies
    assert policy.match[0].value == regex


def test_a_file_that_is_not_a_mapping_is_named(policy_dir: Path) -> None:
    [error] = errors_for(policy_dir, {"p.yaml": "- name: restart-api\n"})
    assert error == f"{policy_dir}/p.yaml:1:1: expected a mapping of fields at the top of the file"


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyErrors) as raised:
        load_policies(tmp_path / "nope")
    assert [str(error) for error in raised.value.errors] == [
        f"{tmp_path}/nope:1:1: policy directory not found"
    ]


def test_an_invalid_allow_list_regex_is_named(policy_dir: Path) -> None:
    guardrails = "allowed_namespaces:\n  - prod-(\n"
    [error] = errors_for(policy_dir, {"guardrails.yaml": guardrails, "p.yaml": VALID})
    assert error.startswith(
        f"{policy_dir}/guardrails.yaml:2:3: allowed_namespaces: invalid regular expression 'prod-('"
    )


def test_a_matrix_missing_a_level_is_named(policy_dir: Path) -> None:
    matrix = (
        (SHIPPED / "escalation.yaml")
        .read_text()
        .replace(
            "  P4:\n    channels: [email]\n    respond_within: 1d\n"
            '    digest: {at: "09:00", timezone: UTC}    # "next business day": one email a day\n',
            "",
        )
    )
    [error] = errors_for(policy_dir, {"escalation.yaml": matrix, "p.yaml": VALID})
    assert error == f"{policy_dir}/escalation.yaml:16:3: levels: levels must define P4"


def test_a_duplicate_policy_name_names_both_files(policy_dir: Path) -> None:
    [error] = errors_for(policy_dir, {"a.yaml": VALID, "b.yaml": VALID})
    assert (
        error
        == f"{policy_dir}/b.yaml:1:7: name: duplicate policy name 'restart-api', also in a.yaml"
    )


def test_a_when_expression_with_bad_syntax_is_named(policy_dir: Path) -> None:
    text = VALID.replace(
        "- action: kubernetes.rollout_restart",
        "- action: kubernetes.rollout_restart\n    when: not (steps.health.ok",
    )
    [error] = errors_for(policy_dir, {"p.yaml": text})
    assert error == (
        f"{policy_dir}/p.yaml:10:11: steps[0].when: cannot read the expression"
        " 'not (steps.health.ok': it ends before it is complete (a bracket left open, or an"
        " operand missing)"
    )


def test_a_missing_severity_matrix_is_an_error(tmp_path: Path) -> None:
    [error] = errors_for(tmp_path, {"p.yaml": VALID})
    assert (
        error == f"{tmp_path}/escalation.yaml:1:1: file not found: the severity matrix is required"
    )


def test_a_matrix_level_naming_an_undefined_channel_is_an_error(policy_dir: Path) -> None:
    matrix = (
        (SHIPPED / "escalation.yaml")
        .read_text()
        .replace(
            "  pagerduty:\n    routing_key_env: PAGERDUTY_ROUTING_KEY\n    budget: 60/1m\n", ""
        )
    )
    [error] = errors_for(policy_dir, {"escalation.yaml": matrix, "p.yaml": VALID})
    assert (
        "escalation.yaml:16:3: levels: "
        "level P1 uses channels not defined under channels: ['pagerduty']" in error
    )


def test_check_prints_every_error_and_exits_1(policy_dir: Path) -> None:
    (policy_dir / "a.yaml").write_text(VALID.replace("kubernetes.rollout_restart", "nope"))
    (policy_dir / "b.yaml").write_text(VALID.replace("name: restart-api", "name: Restart API"))
    out = io.StringIO()
    assert check(policy_dir, out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{policy_dir}/a.yaml:9:13: steps[0].action: unknown action 'nope'")
    assert lines[1].startswith(f"{policy_dir}/b.yaml:1:7: name: String should match pattern")
    assert lines[2] == "2 errors in 2 policy files"


def test_a_secret_in_a_remediator_variable_is_refused(policy_dir: Path) -> None:
    """The service refuses unknown REMEDIATOR_* variables, so such a secret could never be set."""
    matrix = (
        (SHIPPED / "escalation.yaml")
        .read_text()
        .replace("SLACK_WEBHOOK_URL", "REMEDIATOR_SLACK_WEBHOOK_URL")
    )
    [error] = errors_for(policy_dir, {"escalation.yaml": matrix, "p.yaml": VALID})
    assert error.startswith(f"{policy_dir}/escalation.yaml:43:22: channels.slack.webhook_url_env:")
    assert "REMEDIATOR_* variables are the service's own settings" in error


def test_a_ladder_that_goes_round_in_a_circle_is_named(policy_dir: Path) -> None:
    matrix = (
        (SHIPPED / "escalation.yaml")
        .read_text()
        .replace("    page_while_remediating: true", "    next: {after: 1h, level: P3}", 1)
    )
    [error] = errors_for(policy_dir, {"escalation.yaml": matrix, "p.yaml": VALID})
    assert error == (
        f"{policy_dir}/escalation.yaml:16:3: levels: "
        "the ladder from P1 goes round in a circle: P1 -> P3 -> P2 -> P1"
    )


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        ("{at: 9:00}", "31:18: levels.P4.digest.at: expected a time of day in quotes"),  # YAML: 540
        ('{at: "25:00"}', "31:18: levels.P4.digest.at: expected a time of day in quotes"),
        (
            '{at: "09:00", timezone: Mars/Olympus}',
            "31:37: levels.P4.digest.timezone: unknown time zone 'Mars/Olympus'",
        ),
    ],
)
def test_a_digest_time_must_be_a_quoted_time_of_day_in_a_known_zone(
    policy_dir: Path, digest: str, expected: str
) -> None:
    matrix = (
        (SHIPPED / "escalation.yaml")
        .read_text()
        .replace('digest: {at: "09:00", timezone: UTC}', f"digest: {digest}")
    )
    [error] = errors_for(policy_dir, {"escalation.yaml": matrix, "p.yaml": VALID})
    assert error.startswith(f"{policy_dir}/escalation.yaml:{expected}")


def test_a_condition_may_name_earlier_steps_but_nothing_unknown(policy_dir: Path) -> None:
    steps = "steps:\n  - id: health\n    action: http.check\n    params: {url: http://x}\n"
    then = "  - action: kubernetes.rollout_restart\n    when: not steps.health.ok"
    valid = VALID.replace("steps:\n  - action: kubernetes.rollout_restart", steps + then)
    assert load_policies_in(policy_dir, valid)
    [error] = errors_for(policy_dir, {"p.yaml": valid.replace("steps.health", "stpes.health")})
    assert error.startswith(f"{policy_dir}/p.yaml:13:11: steps[1].when: expression uses 'stpes'")


def load_policies_in(directory: Path, text: str) -> object:
    (directory / "p.yaml").write_text(text)
    return load_policies(directory)


NODE = """\
name: read-node
match:
  - alertname="NodeNotReady"
target:
  kind: Node
  name: "{{ labels.node }}"
steps:
  - action: kubernetes.node_status
rate_limit:
  windows:
    - {max: 2, per: 1h}
"""


def test_a_node_target_is_read_without_a_namespace(policy_dir: Path) -> None:
    (policy_dir / "p.yaml").write_text(NODE)
    [policy] = load_policies(policy_dir).policies
    assert (policy.target.kind, policy.target.namespace) == ("Node", None)


def test_a_node_target_allows_reads_only_and_each_change_is_named_at_its_line(
    policy_dir: Path,
) -> None:
    changes = NODE.replace(
        "  - action: kubernetes.node_status\n",
        "  - action: kubernetes.node_status\n"
        "  - action: kubernetes.diagnose\n"
        "  - action: kubernetes.scale\n"
        "    params: {by: -1, max_replicas: 3}\n",
    ) + ("on_resolved:\n  - action: http.request\n    params: {url: 'http://drainer/uncordon'}\n")
    errors = errors_for(policy_dir, {"p.yaml": changes})
    assert errors == [
        f"{policy_dir}/p.yaml:10:13: steps[2].action: a Node target allows reads only;"
        " kubernetes.scale changes things",
        f"{policy_dir}/p.yaml:16:13: on_resolved[0].action: a Node target allows reads only;"
        " http.request changes things",
    ]


def test_a_node_target_names_no_namespace(policy_dir: Path) -> None:
    text = NODE.replace("  kind: Node\n", "  kind: Node\n  namespace: prod\n")
    [error] = errors_for(policy_dir, {"p.yaml": text})
    assert error == (
        f"{policy_dir}/p.yaml:5:3: target: a Node target is cluster-scoped and names only the"
        " node; remove namespace"
    )


@pytest.mark.parametrize(
    ("verify", "action", "params"),
    [
        ('http: "http://{{ labels.namespace }}:5000/health"', "http.check", "url"),
        (
            'promql: {url: "http://prometheus:9090", query: up == 0, below: 1}',
            "prometheus.query",
            "query",
        ),
    ],
)
def test_verify_http_and_promql_are_checks_written_short(
    policy_dir: Path, verify: str, action: str, params: str
) -> None:
    text = VALID + f"verify:\n  resolved_within: 10m\n  {verify}\n"
    [policy] = load_policies_in(policy_dir, text).policies  # type: ignore[attr-defined]
    assert policy.verify.check is not None
    assert policy.verify.check.action == action
    assert params in policy.verify.check.params


def test_a_short_check_with_a_wrong_parameter_or_beside_another_is_named(
    policy_dir: Path,
) -> None:
    wrong = VALID + "verify:\n  promql: {url: 'http://prometheus:9090', qurey: up}\n"
    missing, unknown = errors_for(policy_dir, {"p.yaml": wrong})
    assert missing == f"{policy_dir}/p.yaml:14:11: verify.promql.query: Field required"
    assert unknown.startswith(f"{policy_dir}/p.yaml:14:")
    assert "verify.promql.qurey: unknown parameter 'qurey' for prometheus.query" in unknown
    both = VALID + "verify:\n  http: http://x/health\n  promql: {url: http://p, query: up}\n"
    [error] = errors_for(policy_dir, {"p.yaml": both})
    assert error.startswith(f"{policy_dir}/p.yaml:14:3: verify: verify takes one of check,")


def test_an_invalid_blast_radius_names_its_file_and_field(policy_dir: Path) -> None:
    policy = VALID + "max_targets: {count: 0, per: 10m}\n"
    rails = "max_targets: {count: 5, per: 8d}\n"
    errors = errors_for(policy_dir, {"p.yaml": policy, "guardrails.yaml": rails})
    assert [error.split(": ", 2)[:2] for error in errors] == [
        [f"{policy_dir}/guardrails.yaml:1:30", "max_targets.per"],
        [f"{policy_dir}/p.yaml:{VALID.count(chr(10)) + 1}:22", "max_targets.count"],
    ]
    assert "a max_targets window lasts from 1s to 7d" in errors[0]


FIVE_MISTAKES = """\
name: restart-api
priorty: 5
severity: P5
match:
  - alertname="ApplicationDown"
target:
  kind: Deployment
  namespace: "{{ labels.namespace }"
  name: "{{ labels.deployment }}"
steps:
  - action: kubernetes.scale
    params: {replicas: 3, max_replicas: 5, speed: 2}
  - action: kubernetes.rollout_restart
    when: "steps.health.ok ="
rate_limit:
  windows:
    - {max: 2, per: 1h}
"""


def test_check_reports_every_mistake_of_a_file_in_one_run_sorted_by_line(
    policy_dir: Path,
) -> None:
    (policy_dir / "a.yaml").write_text(FIVE_MISTAKES)
    (policy_dir / "b.yaml").write_text(VALID.replace("name: restart-api", "name: b\nseverity: P0"))
    out = io.StringIO()
    assert check(policy_dir, out) == 1
    a, b = f"{policy_dir}/a.yaml", f"{policy_dir}/b.yaml"
    assert out.getvalue().splitlines() == [
        f"{a}:2:1: priorty: unknown key 'priorty', did you mean 'priority'?",
        f"{a}:3:11: severity: 'P5' is not allowed;"
        " expected one of 'P1', 'P2', 'P3', 'P4', 'from_label'",
        f"{a}:8:14: target.namespace: template syntax error: unexpected '}}'"
        " (line 1 of the template)",
        f"{a}:12:44: steps[0].params.speed: unknown parameter 'speed' for kubernetes.scale"
        " (expected: replicas, by, min_replicas, max_replicas)",
        f"{a}:14:11: steps[1].when: cannot read the expression 'steps.health.ok =':"
        " text follows a complete expression (a comparison is ==, not =)",
        f"{b}:2:11: severity: 'P0' is not allowed;"
        " expected one of 'P1', 'P2', 'P3', 'P4', 'from_label'",
        "6 errors in 2 policy files",
    ]


def test_one_error_is_counted_in_the_singular(policy_dir: Path) -> None:
    (policy_dir / "a.yaml").write_text(VALID.replace("steps:", "stepz:"))
    out = io.StringIO()
    assert check(policy_dir, out) == 1
    assert out.getvalue().splitlines()[-1] == "1 error in 1 policy file"


def test_check_warns_of_a_matcher_value_that_keeps_its_quotes(policy_dir: Path) -> None:
    quoted = VALID.replace('alertname="ApplicationDown"', "alertname='ApplicationDown'")
    (policy_dir / "a.yaml").write_text(quoted)
    out = io.StringIO()
    assert check(policy_dir, out) == 0
    assert out.getvalue().splitlines() == [
        f"{policy_dir}/a.yaml:3:5: match[0]: warning: the value 'ApplicationDown' keeps its"
        " quotes, which the label value would have to contain too (as in Alertmanager), so this"
        ' never matches; write alertname="ApplicationDown"',
        f"{policy_dir}: 1 policy valid, 1 warning",
    ]


def test_check_warns_of_a_policy_shadowed_for_every_alert_it_matches(policy_dir: Path) -> None:
    broad = VALID.replace("name: restart-api", "name: broad\npriority: 10")
    narrow = VALID.replace("name: restart-api", "name: narrow").replace(
        'alertname="ApplicationDown"', 'alertname="ApplicationDown"\n  - namespace="prod"'
    )
    other = VALID.replace("name: restart-api", "name: other\npriority: 20").replace(
        'alertname="ApplicationDown"', 'alertname="ApplicationDown"\n  - team="db"'
    )
    for name, text in {"a.yaml": broad, "b.yaml": narrow, "c.yaml": other}.items():
        (policy_dir / name).write_text(text)
    out = io.StringIO()
    assert check(policy_dir, out) == 0
    assert out.getvalue().splitlines() == [
        f"{policy_dir}/b.yaml:3:3: match: warning: policy 'narrow' never wins: 'broad'"
        ' (priority 10 > 0) matches every alert it matches (alertname="ApplicationDown")',
        f"{policy_dir}: 3 policies valid, 1 warning",
    ]
