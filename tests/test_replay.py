"""`remediator policies replay`: stored alerts or a payload file through a policy set on a
simulated clock, a diff between two policy sets, and nothing acted on, sent or written."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.actions.http import HttpActions
from remediator.alerts import Notification
from remediator.cli import main
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.replay.changes import from_notifications, read_payloads
from remediator.replay.results import Mode
from remediator.replay.simulate import replay
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Store, open_store
from tests.support.clocks import Clock
from tests.support.policies import SHIPPED_POLICIES
from tests.support.replay import (
    HISTORY,
    STAGING,
    T0,
    alert,
    git,
    payloads,
    restart_policy,
    write_jsonl,
    write_policy_dir,
)
from tests.support.samples import SAMPLES, sample, sample_names


def replay_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["policies", "replay", *args])
    said = capsys.readouterr()
    return code, said.out, said.err


def outcomes(document: dict[str, Any]) -> dict[str, str]:
    return {
        a["fingerprint"]: a["outcome"] + (f" ({a['guard']})" if a["guard"] else "")
        for a in document["alerts"]
    }


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git repository whose policies/ holds the restart policy (one run an hour), committed."""
    root = tmp_path / "repo"
    write_policy_dir(root / "policies", restart_policy(rate=2))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


# A file of payloads.


def test_replays_a_file_of_the_shared_samples(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "samples.jsonl"
    # The captured ApplicationDown names its instance by a short name, which guardrails'
    # allowed_hosts refuses (tests/test_egress.py): here it is named as in the cluster.
    short, in_cluster = "claude-manager:5000", "claude-manager.claude-deployment-prod.svc:5000"
    file.write_text(
        "".join(
            json.dumps(sample(name)).replace(short, in_cluster) + "\n" for name in sample_names()
        )
    )

    code, out, err = replay_cli(
        capsys, "--policies", str(SHIPPED_POLICIES), "--file", str(file), "--json"
    )

    assert code == 0, err
    document = json.loads(out)
    by_name = {a["alertname"]: a for a in document["alerts"]}
    assert sorted(by_name) == [
        "ApplicationDown", "GitHubAPIRateLimitLow", "HighErrorRate", "HighMemoryUsage",
    ]  # fmt: skip
    down = by_name["ApplicationDown"]  # fired and resolved within its 10m window
    assert (down["policy"], down["outcome"]) == ("application-down", "succeeded")
    assert [(m["channel"], m["notify"]) for m in down["messages"]] == [
        ("pagerduty", "trigger"),
        ("slack", "trigger"),
        ("pagerduty", "resolve"),
        ("slack", "resolve"),
    ]  # fmt: skip  (P1: paged while remediating, resolved with its alert)
    assert "kubernetes.rollout_restart(min_available=0)" in down["steps"]
    assert by_name["HighErrorRate"]["outcome"] == "verifying"  # its window outlasts the record
    assert document["model"].startswith("times are the alerts' own")


def test_takes_one_payload_a_file_a_json_list_and_a_captured_payload(tmp_path: Path) -> None:
    bodies = [sample(name) for name in sample_names()]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(bodies))
    captured = tmp_path / "captured.json"
    captured.write_text(json.dumps({"headers": {}, "body": bodies[0]}))

    assert len(read_payloads(listed)) == len(bodies)
    [one] = read_payloads(captured)
    assert one == Notification.model_validate(bodies[0])


def test_a_bad_payload_file_is_refused_naming_the_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = write_jsonl(tmp_path / "history.jsonl", HISTORY[:2])
    file.write_text(file.read_text() + '{"version": "4", "alerts": [{"status": "firing"}]}\n')

    code, out, err = replay_cli(capsys, "--policies", str(SHIPPED_POLICIES), "--file", str(file))

    assert (code, out) == (2, "")
    assert err.startswith(f"remediator: {file}: line 3: not a webhook payload: ")
    assert "alerts.0.labels: Field required" in err


# What a replay says.


def test_a_morning_replayed_in_live_mode(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policies = write_policy_dir(tmp_path / "policies", restart_policy(rate=1))
    file = write_jsonl(tmp_path / "history.jsonl", HISTORY)

    code, out, err = replay_cli(capsys, "--policies", str(policies), "--file", str(file), "--json")

    assert code == 0, err
    document = json.loads(out)
    assert outcomes(document) == {
        "shopdown-cart-0": "succeeded",  # resolved in 4 minutes, within its 10m window
        "shopdown-cart-5": "blocked (rate_limit)",  # one run an hour on cart
        "shopdown-search-6": "succeeded",
        "shopdown-checkout-7": "blocked (blast_radius)",  # a third app within 10 minutes
        "diskfull-db-8": "no_match",
        "shopdown-cart-120": "succeeded",  # the hour has passed
    }
    by_fingerprint = {a["fingerprint"]: a for a in document["alerts"]}
    blocked = by_fingerprint["shopdown-cart-5"]
    assert [(m["channel"], m["notify"]) for m in blocked["messages"]] == [
        ("slack", "trigger"), ("email", "trigger"), ("slack", "resolve"), ("email", "resolve"),
    ]  # fmt: skip
    assert by_fingerprint["shopdown-cart-0"]["messages"] == []  # P2 pages nobody while it works
    assert by_fingerprint["diskfull-db-8"]["pages"] == 1  # critical, no policy: PagerDuty
    assert by_fingerprint["shopdown-cart-0"]["steps"] == [
        "http.request(method=POST, url=http://cart.prod.svc/admin/restart)"
    ]


def test_the_output_is_the_same_on_every_run(
    capsys: pytest.CaptureFixture[str], repository: Path, tmp_path: Path
) -> None:
    policies = repository / "policies"
    (policies / "policy-0.yaml").write_text(restart_policy(rate=1))
    file = write_jsonl(tmp_path / "history.jsonl", HISTORY)
    args = ("--policies", str(policies), "--file", str(file), "--against", "HEAD")

    runs = [replay_cli(capsys, *args, *extra) for extra in ((), (), ("--json",), ("--json",))]

    assert runs[0] == runs[1]
    assert runs[2] == runs[3]
    assert runs[0][1] != runs[2][1]


# A diff between two policy sets.


def test_lowering_a_rate_limit_turns_a_run_into_a_block(
    capsys: pytest.CaptureFixture[str], repository: Path, tmp_path: Path
) -> None:
    policies = repository / "policies"
    (policies / "policy-0.yaml").write_text(restart_policy(rate=1))  # was 2 an hour
    file = write_jsonl(tmp_path / "history.jsonl", HISTORY)
    args = ("--policies", str(policies), "--file", str(file), "--against", "HEAD")

    code, out, err = replay_cli(capsys, *args, "--json")

    assert code == 0, err
    diff = json.loads(out)["diff"]
    assert [(c["fingerprint"], c["before"], c["after"]) for c in diff["outcomeChanged"]] == [
        ("shopdown-cart-5", "failed", "blocked (rate_limit)"),  # it did not resolve in 10m
    ]
    assert (diff["newNamespaces"], diff["newTargets"]) == ([], [])

    code, out, err = replay_cli(capsys, *args)
    assert code == 0, err
    assert "shopdown-cart-5: failed -> blocked (rate_limit)" in out


def test_a_policy_for_a_new_namespace_is_reported(
    capsys: pytest.CaptureFixture[str], repository: Path, tmp_path: Path
) -> None:
    policies = repository / "policies"
    (policies / "policy-1.yaml").write_text(STAGING)
    history = [
        *HISTORY,
        *alert("StagingDown", "web", 30, resolved_after=5, severity="critical"),
        *alert("StagingDown", "api", 31, resolved_after=5, severity="critical"),
    ]
    file = write_jsonl(tmp_path / "history.jsonl", history)
    args = ("--policies", str(policies), "--file", str(file), "--against", "HEAD", "--json")

    code, out, err = replay_cli(capsys, *args)

    assert code == 0, err
    diff = json.loads(out)["diff"]
    assert diff["newNamespaces"] == ["staging"]
    assert diff["newTargets"] == ["Application/staging/api", "Application/staging/web"]
    assert {"namespace": "staging", "before": 0, "after": 2} in diff["peakTargetsAtOnce"]
    # Critical alerts no policy matched paged; the policy's P2 runs fix them without a page.
    assert [(p["fingerprint"], p["before"], p["after"]) for p in diff["pagesChanged"]] == [
        ("stagingdown-web-30", 1, 0), ("stagingdown-api-31", 1, 0),
    ]  # fmt: skip
    assert diff["pages"] == {"before": 3, "after": 1}  # (DiskFull pages in both)


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [
        pytest.param("new-namespace", 1, id="a-new-namespace-fails"),
        pytest.param("new-target,new-namespace", 1, id="either-fails"),
        pytest.param("pages-added", 0, id="pages-removed-pass"),
        pytest.param("outcome-changed", 1, id="outcomes-changed-fail"),
        pytest.param("blast-radius-grew", 1, id="a-bigger-blast-radius-fails"),
    ],
)
def test_fail_on_exits_1_when_the_diff_has_what_it_names(
    capsys: pytest.CaptureFixture[str], repository: Path, tmp_path: Path, fail_on: str, code: int
) -> None:
    policies = repository / "policies"
    (policies / "policy-1.yaml").write_text(STAGING)
    file = write_jsonl(
        tmp_path / "history.jsonl", alert("StagingDown", "web", 0, severity="critical")
    )
    args = ("--policies", str(policies), "--file", str(file), "--against", "HEAD")

    exit_code, _, err = replay_cli(capsys, *args, "--fail-on", fail_on)

    assert exit_code == code, err
    if code:
        assert err.startswith("remediator: --fail-on ")


def test_fail_on_a_page_added(
    capsys: pytest.CaptureFixture[str], repository: Path, tmp_path: Path
) -> None:
    policies = repository / "policies"
    # P1 pages while it remediates.
    (policies / "policy-0.yaml").write_text(
        restart_policy(2).replace("severity: P2", "severity: P1")
    )
    file = write_jsonl(tmp_path / "history.jsonl", HISTORY)
    args = ("--policies", str(policies), "--file", str(file), "--against", "HEAD")

    code, out, err = replay_cli(capsys, *args, "--fail-on", "pages-added")

    assert code == 1
    # Cart twice, search and cart again, and checkout's block by the blast radius.
    assert "remediator: --fail-on pages-added: 5" in err
    assert "pages: 1 -> 6" in out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(("--fail-on", "pages-added"), "give --against REV", id="without-against"),
        pytest.param(
            ("--against", "HEAD", "--fail-on", "pages"), "--fail-on: unknown pages", id="unknown"
        ),
        pytest.param(("--against", "no-such-rev"), "git archive in", id="unknown-revision"),
    ],
)
def test_a_bad_option_exits_2_saying_why(
    capsys: pytest.CaptureFixture[str], repository: Path, tmp_path: Path, args: tuple[str, ...],
    said: str,
) -> None:  # fmt: skip
    file = write_jsonl(tmp_path / "history.jsonl", HISTORY)
    policies = str(repository / "policies")

    code, out, err = replay_cli(capsys, "--policies", policies, "--file", str(file), *args)

    assert (code, out) == (2, "")
    assert said in err


# No side effects, and the truth of a real run.


async def store_contents(store: Store) -> tuple[object, ...]:
    since = T0 - timedelta(days=365)
    return (
        await store.recent_alerts(1000),
        await store.all_events(1000),
        await store.list_remediations(1000),
        await store.runs_since(since),
        await store.audit_log(1000),
    )


class ReadOnly:
    """The store for a replay, with every method but the alert log's reads failing the test."""

    READS = frozenset({"alerts_since", "recent_alerts", "alert"})

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name not in self.READS:
            raise AssertionError(f"replay called the store's {name}")
        return getattr(self._store, name)


async def test_a_replay_writes_nothing_to_the_store_it_reads(
    capsys: pytest.CaptureFixture[str], store: Store
) -> None:
    from remediator.cli.replay import read_changes

    for body in payloads(HISTORY):
        await store.record_notification(Notification.model_validate(body), b"{}", T0)
    before = await store_contents(store)

    changes = await read_changes(ReadOnly(store), T0 - timedelta(days=1))  # type: ignore[arg-type]
    policies = LivePolicies.load(SHIPPED_POLICIES, Metrics().policies).current
    report = await replay(changes, policies, Mode.LIVE, "policies")

    assert len(report.alerts) == 6
    assert await store_contents(store) == before


def test_a_replay_loads_no_action_client_channel_or_runner() -> None:
    """What is not loaded cannot be called: the replay, run whole in a process of its own,
    imports no action, channel, runner, HTTP client or cloud SDK."""
    payload = SAMPLES / "application-down.firing.json"
    script = f"""
import asyncio, sys
from pathlib import Path
from remediator.policy.loader import load_policies
from remediator.replay.changes import from_notifications, read_payloads
from remediator.replay.results import Mode
from remediator.replay.simulate import replay
from remediator.replay.render import report_json
changes = from_notifications(read_payloads(Path({str(payload)!r})))
policies = load_policies(Path({str(SHIPPED_POLICIES)!r}))
report = asyncio.run(replay(changes, policies, Mode.LIVE, "p"))
assert report_json(report)["alerts"], report
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("aiohttp", "kubernetes_asyncio",
    "boto3", "aiosmtplib") or m.startswith(("remediator.actions", "remediator.notify",
    "remediator.remediation", "remediator.http", "remediator.runtime")))
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_replaying_a_real_dry_run_agrees_with_its_record(
    store: Store, tmp_path: Path, http_session: aiohttp.ClientSession
) -> None:
    """The history is stored as the intake stores it and run by the real dispatcher in dry-run
    (its guards against dry-run's own state, on a clock at each alert's time); the replay of
    the stored alerts in dry-run mode finds the same outcome and guard for every alert."""
    policies = write_policy_dir(tmp_path / "policies", restart_policy(rate=1))
    live = LivePolicies.load(policies, Metrics().policies)
    clock = Clock(T0.timestamp())
    guards = Guards(
        MemoryGuards(clock), store, Metrics().guards, live=False,
        guardrails=lambda: live.current.guardrails, clock=clock,
    )  # fmt: skip
    runner = Runner(store, guards, live, HttpActions(http_session).actions(), clock=clock)
    dispatcher = Dispatcher(store, runner, clock=clock, worker="test")
    changes = from_notifications(Notification.model_validate(body) for body in payloads(HISTORY))
    for change in changes:  # each state as it happened, handled before the next
        clock.now = change.at.timestamp()
        body = next(
            b for b in payloads(HISTORY)
            if b["alerts"][0]["fingerprint"] == change.alert.fingerprint
            and b["alerts"][0]["status"] == change.alert.status.value
        )  # fmt: skip
        await store.record_notification(Notification.model_validate(body), b"{}", change.at)
        await dispatcher.run_once()
    recorded = {
        r.fingerprint: f"{r.outcome}" + (f" ({r.guard})" if r.guard else "")
        for r in await store.list_remediations(100)
        if r.kind == "firing"
    }

    from remediator.cli.replay import read_changes

    stored = await read_changes(store, T0 - timedelta(days=1))
    report = await replay(stored, live.current, Mode.DRY_RUN, str(policies))

    replayed = {result.fingerprint: result.verdict for result in report.alerts}
    assert replayed == recorded
    assert set(recorded.values()) == {
        "dry_run", "blocked (rate_limit)", "blocked (blast_radius)", "no_match",
    }  # fmt: skip


async def test_replays_the_alerts_stored_in_the_database_the_command_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    opened = await open_store(database_url)
    try:
        for body in payloads(HISTORY):
            await opened.record_notification(Notification.model_validate(body), b"{}", T0)
    finally:
        await opened.close()
    policies = write_policy_dir(tmp_path / "policies", restart_policy(rate=1))
    args = ("--policies", str(policies), "--database-url", database_url, "--json")

    # (The history is of January 2027: ten years back from the machine's clock covers it.)
    code, out, err = await asyncio.to_thread(replay_cli, capsys, *args, "--since", "3650d")

    assert code == 0, err
    assert outcomes(json.loads(out))["shopdown-cart-5"] == "blocked (rate_limit)"
    assert len(json.loads(out)["alerts"]) == 6
