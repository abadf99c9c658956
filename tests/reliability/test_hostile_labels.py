"""Hostile labels (issue 9): shell and template syntax, traversal, unicode, 10 KB values and
protected namespaces go through the whole pipeline, and none of them is ever executed.

The service runs in this process (the application `remediator serve` runs, in live mode, on
SQLite), so that an audit hook (`sys.addaudithook`) sees every event of its code: starting a
process (subprocess, os.system, exec, spawn, fork), compiling or executing code that holds a
hostile value (a label that became template source), opening a path that holds one, or a
connection or name lookup beyond loopback. The hook refuses all but the compiles as it records
them, so even a regression spawns nothing and reaches no other host. Alerts are posted to the
intake as Alertmanager sends them; the engine decides, the guards admit, the actions run
against the fake Kubernetes API and the escalations reach recording stand-ins for PagerDuty,
Slack and an SMTP server. One benign alert beside them is acted on, so the test can tell.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.config import Settings
from remediator.notify.base import Message
from remediator.notify.email import Email
from remediator.notify.escalator import dedup_key
from remediator.policy.schema import EmailChannel
from remediator.runtime.service import create_app
from remediator.store import Remediation, Store, open_store
from tests.support.fake_kubernetes import KUBECONFIG, NAMESPACE, FakeKubernetes
from tests.support.figures import Figures, scale
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES, without_budgets
from tests.support.service_process import eventually
from tests.support.services import free_port
from tests.support.webhooks import webhook, webhook_alert

SCENARIO = (
    "Hostile labels: `;`, `$()`, backticks, `../`, `{{ }}`, unicode, 10 KB values, `kube-system`"
)
EXPECTED = "refused or escalated, never executed"
TOKEN = "s3cret"
MARKER = "pwned"  # in every hostile value: what the audit hook looks for in code and paths
TEN_KB = 10 * 1024


class AuditWatcher:
    """Records, and refuses, what hostile input must never cause, while a test enables it.

    An audit hook cannot be removed, so this is one per session, idle (one attribute read per
    event) unless `watching`.
    """

    PROCESS_EVENTS = frozenset(
        {
            "subprocess.Popen",
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.fork",
            "os.forkpty",
            "os.startfile",
        }
    )

    def __init__(self) -> None:
        self.enabled = False
        self.seen: list[str] = []

    @contextlib.contextmanager
    def watching(self) -> Iterator[list[str]]:
        self.seen = []
        self.enabled = True
        try:
            yield self.seen
        finally:
            self.enabled = False

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.enabled:
            return
        if event in ("compile", "exec"):
            if _holds_marker(args[0]):
                self.seen.append(f"{event} of code holding a hostile value")
            return
        why = self._refusal(event, args)
        if why is not None:
            self.seen.append(why)
            raise PermissionError(f"refused by the hostile-labels test: {why}")

    def _refusal(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event in self.PROCESS_EVENTS:
            return f"{event} {args[:2]!r}"[:300]
        if event == "open" and isinstance(args[0], str | bytes) and _holds_marker(args[0]):
            return f"open {args[0]!r}"[:300]
        if event in ("socket.getaddrinfo", "socket.gethostbyname") and not _local(args[0]):
            return f"{event} {args[0]!r}"[:300]
        if event == "socket.connect" and isinstance(args[1], tuple) and not _local(args[1][0]):
            return f"{event} {args[1]!r}"[:300]
        return None


def _holds_marker(value: object) -> bool:
    if isinstance(value, str):
        return MARKER in value
    if isinstance(value, bytes):
        return MARKER.encode() in value
    if hasattr(value, "co_consts"):  # a code object: its strings, and its nested code
        return any(_holds_marker(const) for const in value.co_consts)
    return False


def _local(host: object) -> bool:
    if host is None or host in ("", "localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(
            host.decode() if isinstance(host, bytes) else str(host)
        ).is_loopback
    except ValueError:
        return False


WATCHER = AuditWatcher()
sys.addaudithook(WATCHER)


@dataclass(frozen=True)
class Case:
    what: str
    labels: dict[str, str]
    annotations: dict[str, str] | None = None

    @property
    def fingerprint(self) -> str:
        return uuid.uuid5(uuid.NAMESPACE_OID, self.what).hex[:16]


def application_down(**labels: str) -> dict[str, str]:
    """ApplicationDown (P1: PagerDuty and Slack), a health check and a restart when it fails."""
    base = {
        "alertname": "ApplicationDown",
        "namespace": NAMESPACE,
        "deployment": "api",
        "instance": "127.0.0.1:9",
        "severity": "critical",
    }
    return base | labels


HOSTILE = [
    Case("`;` in the name", application_down(deployment="api; touch /tmp/pwned-semicolon")),
    Case("`$()` in the name", application_down(deployment="$(touch /tmp/pwned-subshell)")),
    Case("backticks in the name", application_down(deployment="`touch /tmp/pwned-backtick`")),
    Case("`../` in the name", application_down(deployment="../../../tmp/pwned-traversal")),
    Case("`../` in the namespace", application_down(namespace="../kube-system-pwned")),
    Case("`{{ 7*7 }}` in the name", application_down(deployment="{{ 7*7 }}pwned-arithmetic")),
    Case(
        "`{{ ''.__class__ }}` in the name",
        application_down(deployment="{{ ''.__class__.__mro__[1].__subclasses__() }}pwned-mro"),
    ),
    Case(
        "a `{% for %}` loop in the name",
        application_down(deployment="{% for i in range(10**9) %}pwned-loop{% endfor %}"),
    ),
    Case(
        "`{{ }}` in the instance of the health check URL",
        application_down(instance="127.0.0.1:9/{{ 7*7 }} pwned-url"),
    ),
    Case(
        "`;` in the instance of the health check URL",
        application_down(instance="127.0.0.1:9 ; touch /tmp/pwned-url"),
    ),
    Case("RTL override in the name", application_down(deployment="api\u202e\u2066pwned-rtl")),
    Case("a zero-width space in the name", application_down(deployment="api\u200bpwned-zw")),
    Case("a Cyrillic homoglyph in the name", application_down(deployment="\u0430pi-pwned")),
    Case("a 10 KB name", application_down(deployment=f"{MARKER}-" + "a" * TEN_KB)),
    Case("a 10 KB namespace", application_down(namespace=f"{MARKER}-" + "a" * TEN_KB)),
    Case("a Slack mention in the name", application_down(deployment="<!channel> pwned-mention")),
    Case("kube-system", application_down(namespace="kube-system", deployment="coredns")),
    Case("kube-public", application_down(namespace="kube-public", deployment="api")),
    Case("kube-node-lease", application_down(namespace="kube-node-lease", deployment="api")),
    Case("a namespace not allowed", application_down(namespace="default")),
    Case("the allowed namespace and more", application_down(namespace=f"{NAMESPACE}-pwned")),
    Case("the allowed namespace and a newline", application_down(namespace=f"{NAMESPACE}\n")),
    Case("the allowed namespace in capitals", application_down(namespace=NAMESPACE.upper())),
    Case(
        "`;` in the pod to delete",
        {
            "alertname": "HighMemoryUsage",
            "namespace": NAMESPACE,
            "deployment": "api",
            "pod": "api-1; touch /tmp/pwned-pod",
            "severity": "warning",
        },
    ),
    Case(
        "`../` in the pod to delete",
        {
            "alertname": "HighMemoryUsage",
            "namespace": NAMESPACE,
            "deployment": "api",
            "pod": "../../nodes/pwned-pod",
            "severity": "warning",
        },
    ),
    Case("`$()` in the node", {"alertname": "NodeNotReady", "node": "$(reboot)-pwned-node"}),
    Case(
        "kube-system for an application",
        {"alertname": "GitHubAPIRateLimitLow", "namespace": "kube-system", "deployment": "coredns"},
    ),
    Case(
        "another host in an application's URL",
        {
            "alertname": "GitHubAPIRateLimitLow",
            "namespace": NAMESPACE,
            "deployment": "evil.example/pwned?",
        },
    ),
    Case(
        "hostile names and values no policy matches",
        {
            "alertname": "<!channel> `pwned` $(reboot) *bold* <https://evil.example|click>",
            "severity": "critical",
            "$(touch /tmp/pwned-label-name)": "{{ 7*7 }}pwned-ride-along",
            "team": "../../pwned-team",
        },
        {"summary": "<script>alert('pwned-html')</script>" + "x" * TEN_KB},
    ),
    Case(
        "HTML in an alert that is emailed",
        {"alertname": "<script>alert('pwned-email')</script>", "severity": "warning"},
        {"description": "<img src=x onerror=alert('pwned-img')>"},
    ),
]
# Pieces no Kubernetes name may hold; each generated value has at least one of them.
_SYNTAX = "; $( ) ` ../ {{ }} {% %} | && ' \" \\ <!here> %2e%2e/ * ? # @ :"  # space-separated
FRAGMENTS = (
    *_SYNTAX.split(),
    *(" ", "\n", "\u202e", "\u200b", "\u2028", "\ufeff", "\U0001f4a5"),
)
TARGET_LABELS = [
    (application_down(), "deployment"),
    (application_down(), "namespace"),
    ({"alertname": "HighMemoryUsage", "namespace": NAMESPACE, "deployment": "api"}, "pod"),
    ({"alertname": "NodeNotReady"}, "node"),
    ({"alertname": "GitHubAPIRateLimitLow", "namespace": NAMESPACE}, "deployment"),
    ({"alertname": "GitHubAPIRateLimitLow", "deployment": "claude-manager"}, "namespace"),
]


def generated(count: int) -> list[Case]:
    """Values mixing the fragments with name-like text, each in a label a policy acts on."""
    rng = random.Random(9)
    cases = []
    for number in range(count):
        base, label = rng.choice(TARGET_LABELS)
        pieces = [rng.choice(["api", MARKER, "kube-system", NAMESPACE, "a" * rng.randint(1, 300)])]
        for _ in range(rng.randint(1, 4)):
            pieces += [rng.choice(FRAGMENTS), rng.choice(["rm -rf /", "id", MARKER, "x"])]
        rng.shuffle(pieces)
        value = "".join(pieces) + f"-{MARKER}"
        filled = {"pod": "api-1", "node": "kind-worker", **base, label: value}
        cases.append(Case(f"generated {number} ({label})", filled))
    return cases


HOSTILE += generated(scale(12, 300))
NUL = Case("NUL in the name", application_down(deployment="api\x00pwned-nul"))  # JSON allows it
BENIGN = Case(
    "benign control",
    {"alertname": "HighCPUUsage", "namespace": NAMESPACE, "deployment": "api", "severity": "info"},
)
FINAL = {"refused", "no_match"}  # what a hostile alert may come to: escalated, never run
# What the Kubernetes actions may do, in the allowed namespace only (deploy/kubernetes/rbac.yaml).
ALLOWED_RESOURCES = {"deployments", "deployments/scale", "replicasets", "pods", "events"}


@pytest.fixture
def policies(tmp_path: Path, pagerduty_api: Recorder, mailbox: tuple[Mailbox, int]) -> Path:
    """The shipped policies, escalating to the stand-ins; the GitHub policy's application on a
    loopback server of the test's own, which records whatever reaches it."""
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, directory)
    matrix = directory / "escalation.yaml"
    text = matrix.read_text()
    for old, new in [
        (
            "    routing_key_env: PAGERDUTY_ROUTING_KEY\n",
            f"    routing_key_env: PAGERDUTY_ROUTING_KEY\n"
            f"    events_url: {pagerduty_api.url}/v2/enqueue\n",
        ),
        ("smtp_host: smtp.example.com", "smtp_host: 127.0.0.1"),
        ("smtp_port: 587", f"smtp_port: {mailbox[1]}"),
        ("    username_env: SMTP_USERNAME\n    password_env: SMTP_PASSWORD\n", ""),
        ('    digest: {at: "09:00", timezone: UTC}', "#"),  # P4 is emailed at once here
    ]:
        assert old in text, old
        text = text.replace(old, new)
    matrix.write_text(without_budgets(text))  # every message rendered, none folded
    return directory


@dataclass
class Pipeline:
    client: TestClient[Any, Any]
    store: Store
    kubernetes: FakeKubernetes
    application: Recorder  # the GitHub policy's application and rate-limit API


@pytest.fixture
async def pipeline(
    tmp_path: Path,
    policies: Path,
    slack_api: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Pipeline]:
    for name in [name for name in os.environ if name.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    application = Recorder(Answer(200, {"resources": {"core": {"limit": 5000, "remaining": 1}}}))
    await application.start()
    github = policies / "github-api-rate-limit-low.yaml"
    text = github.read_text()
    service_url = "http://{{ labels.deployment }}.{{ labels.namespace }}.svc:5000"
    assert service_url in text
    text = text.replace(
        service_url, application.url + "/{{ labels.namespace }}/{{ labels.deployment }}"
    )
    text = text.replace(
        "    action: github.rate_limit\n",
        f'    action: github.rate_limit\n    params: {{api_url: "{application.url}"}}\n',
    )
    github.write_text(text)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    monkeypatch.setenv("GITHUB_TOKEN", "github-token")
    monkeypatch.setenv("CLAUDE_MANAGER_ADMIN_TOKEN", "admin-token")
    kubernetes = FakeKubernetes()
    await kubernetes.start(free_port())
    # Whatever a hostile label names exists, so that acting on it would succeed and be seen.
    for namespace, name in [(NAMESPACE, "api"), ("kube-system", "coredns"), ("default", "api")]:
        kubernetes.seed_deployment(namespace, name, replicas=3)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=kubernetes.url))
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    settings = Settings(
        database_url=database_url,
        policies=policies,
        mode="live",
        webhook_token=TOKEN,
        kubeconfig=kubeconfig,
        lease_seconds=3,
    )
    app = await create_app(settings)
    store = await open_store(database_url)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Pipeline(client, store, kubernetes, application)
    finally:
        await store.close()
        await kubernetes.close()
        await application.close()


def test_the_watcher_sees_and_refuses_what_it_looks_for() -> None:
    """Each kind of event the figures count is seen: a figure of 0 means none happened."""
    with WATCHER.watching() as seen:
        with pytest.raises(PermissionError):
            subprocess.run(["true"], check=False)
        with pytest.raises(PermissionError):
            os.system("true")
        with pytest.raises(PermissionError):
            socket.getaddrinfo("pwned.example", 80)  # refused before any lookup
        with pytest.raises(PermissionError):
            Path(f"/tmp/{MARKER}-watcher").open()  # noqa: SIM115
        compile(f"'{MARKER}-compiled'", "<hostile>", "eval")
        exec(compile(f"x = '{MARKER}-executed'", "<hostile>", "exec"), {})
    assert [event.split()[0] for event in seen] == [
        "subprocess.Popen",
        "os.system",
        "socket.getaddrinfo",
        "open",
        "compile",
        "compile",
        "exec",
    ]


async def post(pipeline: Pipeline, case: Case) -> int:
    alert = webhook_alert(
        case.labels, fingerprint=case.fingerprint, starts_at="2026-06-01T10:00:00Z"
    )
    alert["annotations"] = case.annotations or {}
    answer = await pipeline.client.post(
        "/api/v1/alerts", json=webhook(alert), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return answer.status


async def remediations_by_fingerprint(store: Store) -> dict[str, Remediation]:
    return {r.fingerprint: r for r in await store.list_remediations(10 * len(HOSTILE))}


async def escalated(store: Store, remediation: Remediation) -> bool:
    """Every channel of the alert's level has been sent its message."""
    sent = {e.channel for e in await store.outbox_for(dedup_key(remediation)) if e.sent_at}
    channels = set(remediation.plan.channels)
    return bool(channels) and channels <= sent


def slack_texts(slack_api: Recorder) -> list[str]:
    """Every text Slack would render as mrkdwn: the fallback and each block's."""
    texts = []
    for request in slack_api.requests:
        texts.append(request.json["text"])
        for block in request.json["blocks"]:
            for part in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
                if part and part.get("type") == "mrkdwn":
                    texts.append(part["text"])
    return texts


def emailed_html(box: Mailbox) -> list[str]:
    pages = []
    for envelope, _ in box.received:
        assert isinstance(envelope.content, bytes)
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        html = mail.get_body(preferencelist=("html",))
        assert html is not None
        pages.append(html.get_content())
    return pages


async def test_no_hostile_label_is_ever_executed(
    pipeline: Pipeline,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    mailbox: tuple[Mailbox, int],
    figures: Figures,
) -> None:
    store = pipeline.store
    with WATCHER.watching() as seen:
        answers = {case.what: await post(pipeline, case) for case in [*HOSTILE, BENIGN]}
        answers[NUL.what] = await post(pipeline, NUL)

        async def settled(remediation: Remediation | None) -> bool:
            """Escalated, if refused; else (a failure of the test) done acting."""
            if remediation is None:
                return False
            if remediation.outcome in FINAL:
                return await escalated(store, remediation)
            return remediation.outcome != "running"

        async def all_settled() -> bool:
            found = await remediations_by_fingerprint(store)
            for case in [*HOSTILE, BENIGN]:
                if not await settled(found.get(case.fingerprint)):
                    return False
            return True

        # Should it time out, the figure below says which alerts and why, not only "timed out".
        with contextlib.suppress(AssertionError):
            await eventually(all_settled, what="every alert handled and escalated", timeout=60)
    found = await remediations_by_fingerprint(store)
    remediations = {case.what: found.get(case.fingerprint) for case in HOSTILE}
    outcomes = {what: r.outcome if r else "not handled" for what, r in remediations.items()}
    executed = [
        what
        for what, r in remediations.items()
        if r is not None and (r.run_id is not None or await store.steps(r.id))
    ]
    refused = [what for what, outcome in outcomes.items() if outcome in FINAL]
    escalations = [
        what for what, r in remediations.items() if r is not None and await escalated(store, r)
    ]
    nul_stored = [r for r in await store.recent_alerts(500) if r.fingerprint == NUL.fingerprint]

    namespaces = (f"/apis/apps/v1/namespaces/{NAMESPACE}/", f"/api/v1/namespaces/{NAMESPACE}/")
    outside = [
        (method, path)
        for method, path, _ in pipeline.kubernetes.requests
        if not path.startswith(namespaces) or _resource(path) not in ALLOWED_RESOURCES
    ]
    writes = [(method, path) for method, path, _ in pipeline.kubernetes.writes]
    outside += [(r.method, r.path) for r in pipeline.application.requests]

    texts = slack_texts(slack_api)
    pages = emailed_html(mailbox[0])
    sent_by_channel = {"pagerduty": 0, "slack": 0, "email": 0}
    for remediation in filter(None, remediations.values()):
        for entry in await store.outbox_for(dedup_key(remediation)):
            if entry.sent_at is not None and entry.channel in sent_by_channel:
                sent_by_channel[entry.channel] += 1
    received = {
        "pagerduty": len(pagerduty_api.requests),
        "slack": len(slack_api.requests),
        "email": len(mailbox[0].received),
    }
    everything_sent = [str(r.json) for r in [*pagerduty_api.requests, *slack_api.requests]]
    everything_sent += pages
    inert = {
        "no Slack mention or link from a label": not any(
            raw in text for text in texts for raw in ("<!channel>", "<https://evil")
        ),
        "Slack shows them escaped": any("&lt;!channel&gt;" in text for text in texts),
        "no raw HTML from a label in email": not any(
            raw in page for page in pages for raw in ("<script>", "<img src=x")
        ),
        "email shows it escaped": any("&lt;script&gt;" in page for page in pages),
        "`{{ 7*7 }}` stays those characters": any("{{ 7*7 }}pwned" in t for t in everything_sent)
        and not any("49pwned" in text for text in everything_sent),
        "PagerDuty summaries within its 1024": all(
            len(r.json["payload"]["summary"]) <= 1024 for r in pagerduty_api.requests
        ),
    }
    passed = (
        not seen
        and not outside
        and not executed
        and len(refused) == len(escalations) == len(HOSTILE)
        and answers[NUL.what] == 400
        and not nul_stored
        and received == sent_by_channel
        and all(inert.values())
    )
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"{len(seen)} subprocess or exec events; {len(outside)} actions outside the"
            f" allow-list; {len(refused) + (answers[NUL.what] == 400)} of {len(HOSTILE) + 1}"
            f" hostile alerts refused (1 with 400 at intake), {len(escalations)} of the"
            f" {len(HOSTILE)} stored ones escalated ({sum(received.values())} messages),"
            f" {len(executed)} executed;"
            f" {sum(inert.values())} of {len(inert)} inertness checks of the rendered messages"
        ),
        passed=passed,
    )
    assert seen == []
    assert answers == {case.what: 200 for case in [*HOSTILE, BENIGN]} | {NUL.what: 400}
    assert not nul_stored
    assert refused == [case.what for case in HOSTILE], outcomes
    assert executed == []
    assert escalations == [case.what for case in HOSTILE]
    assert outside == []
    # The benign control was acted on (the scale is noted on the deployment, then made): the
    # only changes the fake API saw.
    deployment = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/api"
    assert writes == [("PATCH", deployment), ("PATCH", f"{deployment}/scale")]
    benign = found.get(BENIGN.fingerprint)
    assert benign is not None
    assert benign.outcome == "verifying"
    assert received == sent_by_channel
    assert inert == {check: True for check in inert}


def _resource(path: str) -> str:
    """deployments, deployments/scale, pods, ... of a namespaced API path."""
    parts = path.strip("/").split("/")
    parts = parts[parts.index("namespaces") + 2 :]
    return "/".join(parts[:1] + parts[2:3])


def test_a_hostile_alertname_cannot_break_the_daily_digest() -> None:
    config = EmailChannel.model_validate(
        {"smtp_host": "127.0.0.1", "smtp_port": 25, "from": "r@example.com", "to": ["o@x.org"]}
    )
    hostile = Message(
        id="entry-1",
        action="trigger",
        dedup_key="remediator/alert/x/1",
        level="P4",
        summary="no policy matches",
        alertname="Evil\r\nBcc: victim@example.com pwned-digest",
        status="firing",
        labels={},
        annotations={},
        policy=None,
        target=None,
        outcome="no_match",
        reason="no policy matches: escalate only",
    )
    mail = Email(config).compose_digest([hostile])
    assert "\n" not in str(mail["Subject"])
    assert "Bcc" not in mail
