"""Where a policy's requests may go (issue 16, item 1): guardrails `allowed_hosts`, the URL a
label fills in, and the addresses a name resolves to when the actions connect."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from remediator.actions.base import StepContext
from remediator.actions.egress import EgressRefused, guarded_session
from remediator.actions.http import HttpActions
from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide
from remediator.engine.plan import Plan, Refused, RenderedTarget
from remediator.policy.egress import Egress, parse_host_pattern
from remediator.policy.loader import PolicyErrors, load_policies
from remediator.policy.parameters import HttpRequest
from remediator.policy.policyset import PolicySet
from tests.support.notify_recorder import Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
STAND_IN = "127.0.0.1:18080"  # allowed by name, as tests allow their loopback stand-ins
RAILS = f"allowed_hosts: ['*.svc', '*.svc.cluster.local', '{STAND_IN}']\n"


def firing(**labels: str) -> Alert:
    return Alert.model_validate(
        {"status": AlertStatus.FIRING, "labels": labels, "startsAt": NOW, "fingerprint": "f00d"}
    )


def application_down(instance: str) -> Alert:
    return firing(
        alertname="ApplicationDown",
        namespace="claude-deployment-prod",
        deployment="api",
        instance=instance,
        severity="critical",
    )


@pytest.fixture
def shipped_with_stand_in(tmp_path: Path) -> PolicySet:
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, directory)
    rails = directory / "guardrails.yaml"
    rails.write_text(rails.read_text().split("allowed_hosts:")[0] + RAILS)
    return load_policies(directory)


HOSTILE_INSTANCES = [
    pytest.param(f"{STAND_IN}/latest/meta-data/?x=", "may hold only", id="path-and-query"),
    pytest.param(f"user:pw@{STAND_IN}", "may hold only", id="userinfo"),
    pytest.param(f"evil.example@{STAND_IN}", "may hold only", id="userinfo-host"),
    pytest.param(f"{STAND_IN}#", "may hold only", id="fragment"),
    pytest.param(f"{STAND_IN}?x=", "may hold only", id="query"),
    pytest.param(f"{STAND_IN}/admin", "may hold only", id="path"),
    pytest.param(f"{STAND_IN}\\@evil.example", "may hold only", id="backslash"),
    pytest.param("%31%32%37.0.0.1:18080", "may hold only", id="percent-encoded-host"),
    pytest.param(f"{STAND_IN} ", "may hold only", id="trailing-space"),
    pytest.param(f"{STAND_IN}:80", "is not a URL", id="two-ports"),
    pytest.param("169.254.169.254", "not in guardrails allowed_hosts", id="aws-metadata"),
    pytest.param("[fd00:ec2::254]", "not in guardrails allowed_hosts", id="aws-metadata-v6"),
    pytest.param("metadata.google.internal", "not in guardrails", id="gcp-metadata"),
    pytest.param("[::1]:18080", "not in guardrails allowed_hosts", id="ipv6-loopback"),
    pytest.param("127.0.0.1:9", "not in guardrails allowed_hosts", id="another-port"),
    pytest.param("localhost:18080", "not in guardrails allowed_hosts", id="localhost"),
    pytest.param("0.0.0.0:18080", "not in guardrails allowed_hosts", id="unspecified"),
    pytest.param("2130706433:18080", "numeric form", id="decimal-ip"),
    pytest.param("0x7f.1:18080", "numeric form", id="hex-ip"),
    pytest.param("0177.0.0.1:18080", "numeric form", id="octal-ip"),
    pytest.param("127.1:18080", "numeric form", id="short-ip"),
    pytest.param("evil.example", "not in guardrails allowed_hosts", id="outside-host"),
    pytest.param("api.svc.evil.example", "not in guardrails", id="svc-as-a-subdomain"),
]


@pytest.mark.parametrize(("instance", "why"), HOSTILE_INSTANCES)
def test_a_hostile_instance_is_refused_with_the_reason(
    shipped_with_stand_in: PolicySet, instance: str, why: str
) -> None:
    decision = decide(application_down(instance), shipped_with_stand_in, NOW)
    assert isinstance(decision, Refused), decision
    assert decision.reason.startswith("steps[0] (http.check) url: "), decision.reason
    assert why in decision.reason


@pytest.mark.parametrize(
    "instance",
    ["api.claude-deployment-prod.svc:5000", "api.prod.svc.cluster.local:8080", STAND_IN],
)
def test_an_allowed_instance_is_planned(shipped_with_stand_in: PolicySet, instance: str) -> None:
    decision = decide(application_down(instance), shipped_with_stand_in, NOW)
    assert isinstance(decision, Plan), decision
    assert decision.steps[0].params.model_dump()["url"] == f"http://{instance}/health"


PROBE = """\
name: probe
match: ['alertname="Probe"']
target: {{kind: Application, name: app}}
steps:
  - action: http.check
    params: {{url: "{url}"}}
rate_limit: {{windows: [{{max: 1, per: 1h}}]}}
"""


def probe_policies(tmp_path: Path, url: str, rails: str = RAILS) -> PolicySet:
    directory = tmp_path / "policies"
    directory.mkdir(exist_ok=True)
    shutil.copy(SHIPPED_POLICIES / "escalation.yaml", directory)
    (directory / "guardrails.yaml").write_text(rails)
    (directory / "probe.yaml").write_text(PROBE.format(url=url))
    return load_policies(directory)


@pytest.mark.parametrize(
    ("url", "labels", "expected"),
    [
        pytest.param(
            "http://api.prod.svc/health?verbose=1&name={{ labels.app }}",
            {"app": "shop"},
            "http://api.prod.svc/health?verbose=1&name=shop",
            id="a-literal-query-with-a-label-value",
        ),
        pytest.param(
            "http://{{ labels.app }}.prod.svc/items/{{ labels.item }}",
            {"app": "shop", "item": "a%20b"},
            "http://shop.prod.svc/items/a%20b",
            id="a-label-in-the-host-and-a-path-segment",
        ),
    ],
)
def test_what_the_policy_writes_stays_allowed(
    tmp_path: Path, url: str, labels: dict[str, str], expected: str
) -> None:
    decision = decide(firing(alertname="Probe", **labels), probe_policies(tmp_path, url), NOW)
    assert isinstance(decision, Plan), decision
    assert decision.steps[0].params.model_dump()["url"] == expected


@pytest.mark.parametrize(
    ("url", "labels", "why"),
    [
        pytest.param(
            "http://api.prod.svc/health?name={{ labels.app }}",
            {"app": "shop&admin=1"},
            "may hold only",
            id="a-label-adding-a-query-parameter",
        ),
        pytest.param(
            "http://api.prod.svc/items/{{ labels.item }}",
            {"item": ".."},
            "would leave its path segment",
            id="dot-dot-as-a-path-segment",
        ),
        pytest.param(
            "http://api.prod.svc/items/{{ labels.item }}",
            {"item": "%2e%2e%2fadmin"},
            "would leave its path segment",
            id="an-escaped-slash-in-a-path-segment",
        ),
        pytest.param(
            "http://{{ labels.app }}.prod.svc/",
            {"app": "evil.example#"},
            "may hold only",
            id="a-fragment-in-the-host",
        ),
    ],
)
def test_a_label_that_changes_the_urls_shape_is_refused(
    tmp_path: Path, url: str, labels: dict[str, str], why: str
) -> None:
    decision = decide(firing(alertname="Probe", **labels), probe_policies(tmp_path, url), NOW)
    assert isinstance(decision, Refused), decision
    assert why in decision.reason


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://user:pw@api.prod.svc/", "may not carry a user or password"),
        ("http://{{ labels.a }}@api.prod.svc/", "may not carry a user or password"),
        ("http://api.prod.svc/#{{ labels.a }}", "may not fill in a URL's fragment"),
        ("http://{% if true %}api.prod.svc{% endif %}/", "{{ }} expressions only"),
    ],
)
def test_a_url_template_that_would_let_a_label_add_credentials_is_refused_at_load(
    tmp_path: Path, url: str, why: str
) -> None:
    with pytest.raises(PolicyErrors) as raised:
        probe_policies(tmp_path, url)
    [error] = raised.value.errors
    assert error.file.name == "probe.yaml"
    assert error.position.line == 6
    assert why in error.message


@pytest.mark.parametrize(
    ("pattern", "line", "why"),
    [
        ("a b", 3, "expected a host name"),
        ("*.svc:99999", 3, "the port must be a number from 1 to 65535"),
        ("fd00::1", 3, "write an IPv6 address in brackets"),
        ("10.0.0.1/8", 3, "not an IP address or network"),
        ("http://api.svc", 3, "the port must be a number"),
    ],
)
def test_a_bad_allowed_hosts_entry_names_its_file_and_line(
    tmp_path: Path, pattern: str, line: int, why: str
) -> None:
    rails = f"allowed_hosts:\n  - '*.svc'\n  - '{pattern}'\n"
    with pytest.raises(PolicyErrors) as raised:
        probe_policies(tmp_path, "http://api.prod.svc/", rails)
    [error] = raised.value.errors
    assert (error.file.name, error.position.line, error.path) == (
        "guardrails.yaml",
        line,
        "allowed_hosts[1]",
    )
    assert why in error.message


@pytest.mark.parametrize(
    ("patterns", "url", "allowed"),
    [
        (["*.svc"], "http://api.prod.svc:8080/", True),
        (["*.svc:5000"], "http://api.prod.svc:8080/", False),
        (["*.svc"], "http://api.prod.svc.evil.example/", False),
        (["10.0.0.0/8:8080"], "http://10.1.2.3:8080/", True),
        (["10.0.0.0/8:8080"], "http://10.1.2.3:9090/", False),
        (["[fd00::/8]"], "http://[fd00::1]/", True),
        (["*"], "http://127.0.0.1/", False),  # a glob never opens loopback
        (["0.0.0.0/0"], "http://169.254.169.254/", False),  # nor a wide network
        (["0.0.0.0/0"], "http://[::ffff:169.254.169.254]/", False),
        (["127.0.0.0/8"], "http://127.0.0.2/", True),  # a network inside loopback names it
        (["169.254.169.254:80"], "http://169.254.169.254/", True),
        (["*.internal"], "http://metadata.google.internal/", False),
        (["metadata.google.internal"], "http://metadata.google.internal/", True),
        (["*"], "https://api.github.com/", True),
        (["api.github.com:443"], "http://api.github.com/", False),
    ],
)
def test_allowed_hosts_patterns(patterns: list[str], url: str, allowed: bool) -> None:
    refusal = Egress.of(patterns).url_refusal(url)
    assert (refusal is None) == allowed, refusal


def test_a_pattern_keeps_its_text() -> None:
    assert parse_host_pattern("*.SVC:8080").name == "*.svc"
    assert parse_host_pattern("[fd00::/8]:443").port == 443


@pytest.fixture
async def stand_in() -> AsyncIterator[Recorder]:
    recorder = Recorder(Answer(200, "ok"))
    await recorder.start()
    yield recorder
    await recorder.close()


def port_of(recorder: Recorder) -> int:
    return int(recorder.url.rsplit(":", 1)[1])


async def test_a_name_a_glob_allows_that_resolves_to_loopback_is_refused_when_connecting(
    stand_in: Recorder,
) -> None:
    port = port_of(stand_in)
    rules = Egress.of(["local*"])  # allows the name `localhost`, and names no address
    async with guarded_session(lambda: rules) as session:
        with pytest.raises(EgressRefused, match=r"localhost \(127\.0\.0\.1\) is a loopback"):
            await session.get(f"http://localhost:{port}/health")
    assert stand_in.requests == []


async def test_a_name_allowed_exactly_may_resolve_to_loopback(stand_in: Recorder) -> None:
    port = port_of(stand_in)
    rules = Egress.of([f"localhost:{port}"])
    async with (
        guarded_session(lambda: rules) as session,
        session.get(f"http://localhost:{port}/health") as answer,
    ):
        assert answer.status == 200
    assert [r.path for r in stand_in.requests] == ["/health"]


async def test_the_client_checks_the_allow_list_as_it_is_now(stand_in: Recorder) -> None:
    """A plan made under an older allow-list: the request is checked again when sent."""
    rules = [Egress.of([stand_in.url.removeprefix("http://")])]
    async with guarded_session(lambda: rules[0]) as session:
        async with session.get(f"{stand_in.url}/health") as answer:
            assert answer.status == 200
        rules[0] = Egress.of(["*.svc"])
        with pytest.raises(EgressRefused, match="not in guardrails allowed_hosts"):
            await session.get(f"{stand_in.url}/health")
    assert len(stand_in.requests) == 1


async def test_a_hook_that_redirects_is_not_followed(stand_in: Recorder) -> None:
    other = Recorder(Answer(200, "ok"))
    await other.start()
    try:
        stand_in.answer_next(307, headers={"Location": f"{other.url}/latest/meta-data/"})
        rules = Egress.of([stand_in.url.removeprefix("http://"), "127.0.0.1"])
        params = HttpRequest.model_validate({"url": f"{stand_in.url}/hook"})
        context = StepContext(RenderedTarget("Application", "app", None, None, None), False, NOW)
        async with guarded_session(lambda: rules) as session:
            result = await HttpActions(session).request(params, context)
    finally:
        await other.close()
    assert not result.ok
    assert "307, a redirect to" in result.message
    assert "(not followed)" in result.message
    assert other.requests == []


async def test_an_unguarded_session_is_what_the_guard_replaces(stand_in: Recorder) -> None:
    """The control: without the guard, `localhost` reaches the loopback stand-in."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://localhost:{port_of(stand_in)}/health") as answer,
    ):
        assert answer.status == 200
