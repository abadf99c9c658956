"""The severity matrix end to end: alerts posted to a real Alertmanager reach exactly the channels
their level names, through real HTTP stand-ins for PagerDuty and Slack and a real SMTP server."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediator.notify.escalator import dedup_key
from remediator.notify.would_send import WOULD_SEND
from remediator.store import open_store
from tests.support.alertmanager import post_to_alertmanager
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import Recorder
from tests.support.policies import SHIPPED_POLICIES
from tests.support.service_process import ServiceProcess, eventually

# No policy matches these: each escalates by its severity label alone.
ALERTS = {
    "P1": {"alertname": "DiskFullP1", "severity": "critical", "instance": "db-1"},
    "P2": {"alertname": "QueueStuckP2", "severity": "high", "instance": "mq-1"},
    "P3": {"alertname": "CertExpiresP3", "severity": "warning", "instance": "web-1"},
    "P4": {"alertname": "BackupSlowP4", "severity": "info", "instance": "bk-1"},
}
MATRIX = {  # policies/escalation.yaml
    "P1": {"pagerduty", "slack"},
    "P2": {"slack", "email"},
    "P3": {"email"},
    "P4": {"email"},
}


@pytest.fixture
def service_settings() -> dict[str, str]:
    """More settings of the service, for a test that needs them."""
    return {}


@pytest.fixture
async def service(
    tmp_path: Path,
    database_url: str,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
    service_settings: dict[str, str],
) -> AsyncIterator[ServiceProcess]:
    policies = stand_in_matrix(tmp_path, pagerduty_api, mailbox, monkeypatch, slack_api)
    started = await ServiceProcess.start(
        tmp_path,
        database_url=database_url,
        webhook_token="s3cret",
        policies=str(policies),
        **service_settings,
    )
    yield started
    assert started.stop() == 0


def stand_in_matrix(
    tmp_path: Path,
    pagerduty_api: Recorder,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
    slack_api: Recorder,
) -> Path:
    """The shipped policies, their channels pointed at the stand-ins."""
    policies = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, policies)
    matrix = policies / "escalation.yaml"
    text = matrix.read_text()
    text = text.replace(
        "    routing_key_env: PAGERDUTY_ROUTING_KEY\n",
        "    routing_key_env: PAGERDUTY_ROUTING_KEY\n"
        f"    events_url: {pagerduty_api.url}/v2/enqueue\n",
    )
    text = text.replace("smtp_host: smtp.example.com", "smtp_host: 127.0.0.1")
    text = text.replace("smtp_port: 587", f"smtp_port: {mailbox[1]}")
    text = text.replace("    username_env: SMTP_USERNAME\n    password_env: SMTP_PASSWORD\n", "")
    # P4's digest would hold its email until 09:00 (tests/test_escalation_ladder.py covers it)
    digest = '    digest: {at: "09:00", timezone: UTC}    # "next business day": one email a day\n'
    assert digest in text
    text = text.replace(digest, "")
    # The resolve is held for a second, not the shipped 5m (tests/test_flapping.py covers it).
    assert "\nresolve_after: 5m\n" in text
    text = text.replace("\nresolve_after: 5m\n", "\nresolve_after: 1s\n")
    matrix.write_text(text)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack_api.url}/services/T0/B0/secret")
    return policies


async def test_each_level_reaches_exactly_its_channels_then_hears_the_resolution(
    alertmanager: str,
    service: ServiceProcess,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    mailbox: tuple[Mailbox, int],
) -> None:
    labels = list(ALERTS.values())
    await post_to_alertmanager(alertmanager, datetime.now(UTC) + timedelta(hours=1), labels)

    def received() -> dict[str, set[str]]:
        by_level: dict[str, set[str]] = {level: set() for level in ALERTS}
        for level, alert in ALERTS.items():
            name = alert["alertname"]
            if any(name in str(r.json) for r in pagerduty_api.requests):
                by_level[level].add("pagerduty")
            if any(name in str(r.json) for r in slack_api.requests):
                by_level[level].add("slack")
            if any(name in str(envelope.content) for envelope, _ in mailbox[0].received):
                by_level[level].add("email")
        return by_level

    async def all_delivered() -> bool:
        return received() == MATRIX

    await eventually(all_delivered, what=f"the matrix's channels, got {received()}", timeout=60)
    [trigger] = [r.json for r in pagerduty_api.requests]
    assert trigger["event_action"] == "trigger"
    assert trigger["routing_key"] == "routing-key-1"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["dedup_key"].startswith("remediator/alert/DiskFullP1/")
    assert "no policy matches" in trigger["payload"]["summary"]

    await post_to_alertmanager(alertmanager, datetime.now(UTC) - timedelta(seconds=1), labels)

    async def resolved() -> bool:
        slack = [r.json["text"].startswith("Resolved: ") for r in slack_api.requests]
        return (
            [r.json["event_action"] for r in pagerduty_api.requests] == ["trigger", "resolve"]
            and sorted(slack) == [False, False, True, True]  # P1 and P2: opened, resolved
            and len(mailbox[0].received) == 3 + 3  # P2, P3 and P4: opened, resolved
        )

    await eventually(resolved, what="every channel to hear the resolution", timeout=60)
    assert pagerduty_api.requests[1].json["dedup_key"] == trigger["dedup_key"]


# A PagerDuty key is set, but in dry-run only Slack (a test channel) is to hear anything: beside
# the team's own Alertmanager receivers, a page from dry-run is a double page.
@pytest.mark.parametrize("service_settings", [{"dry_run_channels": "slack"}])
async def test_dry_run_delivers_only_to_the_channels_named_and_records_the_rest(
    database_url: str,
    alertmanager: str,
    service: ServiceProcess,
    pagerduty_api: Recorder,
    slack_api: Recorder,
) -> None:
    p1 = ALERTS["P1"]  # PagerDuty and Slack by the matrix
    await post_to_alertmanager(alertmanager, datetime.now(UTC) + timedelta(hours=1), [p1])
    store = await open_store(database_url)
    try:

        async def both_done() -> bool:
            runs = [r for r in await store.list_remediations(10) if r.alertname == "DiskFullP1"]
            done = [e for r in runs for e in await store.outbox_for(dedup_key(r)) if e.sent_at]
            return {e.channel for e in done} == {"pagerduty", "slack"}

        await eventually(both_done, what="the P1's messages done on PagerDuty and Slack")
        [run] = [r for r in await store.list_remediations(10) if r.alertname == "DiskFullP1"]
        done = {e.channel: e.last_error for e in await store.outbox_for(dedup_key(run))}
    finally:
        await store.close()
    assert done == {"pagerduty": WOULD_SEND, "slack": None}
    assert pagerduty_api.requests == []  # recorded, not delivered
    assert any(p1["alertname"] in str(r.json) for r in slack_api.requests)
