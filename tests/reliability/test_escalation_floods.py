"""Escalation floods (issue 16, item 6): 10,000 critical alerts in one webhook request, then a
real incident; PagerDuty, Slack and the SMTP server are recording stand-ins.

What it proves: each channel sends at most its budget in any window, across the replicas
(PostgreSQL: two `remediator serve` processes; SQLite: one); every other message of the
flood is folded into a summary that was sent, names the counts per alertname and lists every
folded message in the API, so that every alert of the flood is accounted for on every channel
(sent, or folded into a sent summary) and none is both; and the page of the real incident,
posted right after the flood, goes out at once rather than behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.figures import Figures, scale
from tests.support.mailbox import Mailbox
from tests.support.notify_recorder import PD_ACCEPTED, Answer, Recorder
from tests.support.policies import SHIPPED_POLICIES, shipped_matrix
from tests.support.service_process import ServiceProcess, eventually
from tests.support.webhooks import webhook, webhook_alert

SCENARIO = "Escalation flood: 10,000 critical alerts in one request, then a real incident"
EXPECTED = (
    "each channel within its budget per window; the rest folded into sent summaries that"
    " list them; every alert accounted for; the real page at once"
)
TOKEN, API_TOKEN = "s3cret", "ops-token"
ALERTS = scale(1_000, 10_000)
WINDOW = scale(5, 60)  # seconds: each budget's window (the shipped budgets are per minute)
BUDGETS = {"pagerduty": scale(20, 60), "slack": scale(10, 30)}
FLOOD_NAMES = ("ServiceUnreachable",) * 9 + ("CertificateExpiry",)  # nine in ten, one in ten
REAL = "DatabaseDown"
# Seconds from the real incident's webhook to its PagerDuty event: not behind the flood's
# messages in the outbox, nor behind the flood's events in the dispatcher's queue (fair between
# notifications: the real alert is the first of its own).
PAGE_WITHIN = 5.0
SETTLE = scale(120, 600)  # seconds for the flood to be sent or folded, and summarised
JITTER = 1.0  # a send's latency: a window of sends is checked over WINDOW less this


@dataclass
class Flood:
    services: list[ServiceProcess]
    database_url: str
    pagerduty: Recorder
    slack: Recorder
    mailbox: Mailbox

    async def post(self, alerts: Sequence[dict[str, Any]], replica: int = 0) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.services[replica].url}/api/v1/alerts",
                data=io.BytesIO(json.dumps(webhook(*alerts)).encode()),  # 2.3 MB for 10,000
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            ) as answer,
        ):
            assert answer.status == 200, await answer.text()

    async def api(self, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.services[0].url}{path}",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as answer,
        ):
            assert answer.status == 200, await answer.text()
            return await answer.json()

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.database_url.startswith("sqlite:///"):
            with contextlib.closing(sqlite3.connect(self.database_url[10:])) as db:
                return [tuple(row) for row in db.execute(sql).fetchall()]
        connection = await asyncpg.connect(self.database_url)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()


def alert(alertname: str, n: int) -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": "critical", "instance": f"node-{n}:9100"}
    fingerprint = hashlib.sha256(f"{alertname}{n}".encode()).hexdigest()[:16]
    return webhook_alert(labels, fingerprint=fingerprint, starts_at="2026-03-01T10:00:00Z")


def key_of(alert: dict[str, Any]) -> str:
    return f"remediator/alert/{alert['labels']['alertname']}/{alert['fingerprint']}"


def matrix_for(*, pagerduty_url: str, smtp_port: int) -> str:
    text = shipped_matrix()
    replacements = {
        "    routing_key_env: PAGERDUTY_ROUTING_KEY\n    budget: 60/1m\n": (
            "    routing_key_env: PAGERDUTY_ROUTING_KEY\n"
            f"    events_url: {pagerduty_url}/v2/enqueue\n"
            f"    budget: {BUDGETS['pagerduty']}/{WINDOW}s\n"
        ),
        "    budget: 30/1m\n": f"    budget: {BUDGETS['slack']}/{WINDOW}s\n",
        "smtp_host: smtp.example.com": "smtp_host: 127.0.0.1",
        "smtp_port: 587": f"smtp_port: {smtp_port}",
        "    username_env: SMTP_USERNAME\n    password_env: SMTP_PASSWORD\n": "",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture
async def flood(
    database_url: str,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Flood]:
    replicas = 1 if database_url.startswith("sqlite:") else 2  # SQLite: one process
    async with contextlib.AsyncExitStack() as stack:
        pagerduty, slack = Recorder(Answer(202, PD_ACCEPTED)), Recorder(Answer(200, "ok"))
        for recorder in (pagerduty, slack):
            await recorder.start()
            stack.push_async_callback(recorder.close)
        policies = tmp_path / "policies"
        shutil.copytree(SHIPPED_POLICIES, policies)
        matrix = matrix_for(pagerduty_url=pagerduty.url, smtp_port=mailbox[1])
        (policies / "escalation.yaml").write_text(matrix)
        monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "routing-key-1")
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{slack.url}/services/T0/B0/secret")
        services = []
        for _ in range(replicas):
            service = await ServiceProcess.start(
                tmp_path,
                database_url=database_url,
                webhook_token=TOKEN,
                api_token=API_TOKEN,
                policies=str(policies),
            )
            stack.callback(service.stop)
            services.append(service)
        yield Flood(services, database_url, pagerduty, slack, mailbox[0])


def most_in_a_window(times: list[datetime]) -> int:
    """The most sends within any window (less a send's latency)."""
    ordered, most, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while (at - ordered[first]).total_seconds() >= WINDOW - JITTER:
            first += 1
        most = max(most, last - first + 1)
    return most


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


async def settled(flood: Flood) -> bool:
    """Every event handled, every message sent or folded, every fold summarised."""
    [(pending,)] = await flood.rows("SELECT count(*) FROM alert_events WHERE done_at IS NULL")
    [(unsent,)] = await flood.rows(
        "SELECT count(*) FROM outbox WHERE channel IN ('pagerduty', 'slack')"
        " AND sent_at IS NULL AND failed_at IS NULL"
    )
    [(unfolded,)] = await flood.rows(
        "SELECT count(*) FROM outbox WHERE folded_at IS NOT NULL AND folded_into IS NULL"
    )
    return pending == unsent == unfolded == 0


async def test_a_flood_is_folded_within_each_budget_and_the_real_page_goes_at_once(
    flood: Flood, figures: Figures
) -> None:
    alerts = [alert(FLOOD_NAMES[n % len(FLOOD_NAMES)], n) for n in range(ALERTS)]
    await flood.post(alerts)
    real = alert(REAL, 0)
    posted = time.monotonic()
    await flood.post([real], replica=len(flood.services) - 1)

    async def paged() -> bool:
        return any(r.json.get("dedup_key") == key_of(real) for r in flood.pagerduty.requests)

    await eventually(paged, what="the real incident's page", timeout=SETTLE)
    to_page = time.monotonic() - posted
    await eventually(lambda: settled(flood), what="the flood sent or folded", timeout=SETTLE)
    [(enqueued, decided)] = await flood.rows(
        f"SELECT enqueued_at, done_at FROM alert_events WHERE fingerprint = '{real['fingerprint']}'"
    )
    [(queued, sent_at)] = await flood.rows(
        "SELECT created_at, sent_at FROM outbox"
        f" WHERE dedup_key = '{key_of(real)}' AND channel = 'pagerduty'"
    )
    in_events = (_time(decided) - _time(enqueued)).total_seconds()
    in_outbox = (_time(sent_at) - _time(queued)).total_seconds()

    entries = await flood.rows(
        "SELECT id, channel, dedup_key, sent_at, folded_into FROM outbox"
        " WHERE channel IN ('pagerduty', 'slack')"
    )
    summaries = {row[0]: row for row in entries if row[0].startswith("fold-")}
    sent_summaries = {i for i, row in summaries.items() if row[3] is not None}
    flood_keys = {key_of(a) for a in alerts}
    report, accounted, both, most = {}, True, 0, {}
    for channel in BUDGETS:
        mine = [row for row in entries if row[1] == channel and row[0] not in summaries]
        sent = {row[2] for row in mine if row[3] is not None}
        folded = {row[2] for row in mine if row[4] in sent_summaries}
        both += len(sent & folded)
        accounted &= (sent | folded) >= flood_keys
        times = [_time(row[3]) for row in entries if row[1] == channel and row[3] is not None]
        most[channel] = most_in_a_window(times)
        channel_summaries = [i for i in sent_summaries if summaries[i][1] == channel]
        report[channel] = (len(times), len(folded & flood_keys), len(channel_summaries))
    folds = (await flood.api("/api/v1/folds?limit=1000"))["folds"]
    listed = sum(fold["messages"] for fold in folds if fold["summary"] is not None)
    [(folded_total,)] = await flood.rows("SELECT count(*) FROM outbox WHERE folded_at IS NOT NULL")
    texts = [str(r.json.get("payload", {}).get("summary", "")) for r in flood.pagerduty.requests]
    named = [t for t in texts if re.search(r"and [\d,]+ more folded past the PagerDuty budget", t)]
    # Over the budget, from the P1 reserve: the first page of each alertname past it.
    reserve = len(set(FLOOD_NAMES)) + 1
    within = all(most[c] <= BUDGETS[c] + reserve for c in BUDGETS)
    passed = (
        to_page < PAGE_WITHIN
        and within
        and accounted
        and both == 0
        and listed == folded_total
        and bool(named)
    )
    store = "PostgreSQL, 2 replicas" if len(flood.services) > 1 else "SQLite, 1 process"
    per_channel = "; ".join(
        f"{c}: {report[c][0]} sent ({report[c][2]} of them summaries), {report[c][1]} folded,"
        f" at most {most[c]} in {WINDOW}s for a budget of {BUDGETS[c]}"
        for c in BUDGETS
    )
    figures.record(
        f"{SCENARIO} ({store})",
        expected=EXPECTED,
        figure=(
            f"{ALERTS} alerts posted in one request: {per_channel} (P1 reserve: the first page"
            f" past the budget of each of {reserve} alertnames); {listed} of {folded_total}"
            f" folded messages listed by /api/v1/folds; every alert accounted for on each"
            f" channel: {accounted}, {both} both sent and folded; a summary reads"
            f" {named[0][:90] if named else None!r}; the real page {in_outbox:.1f} s after it"
            f" was queued, {to_page:.1f} s after its webhook ({in_events:.1f} s of it in the"
            " dispatcher's queue, fair between notifications, beside the flood's events)"
        ),
        passed=passed,
    )
    assert to_page < PAGE_WITHIN, (in_outbox, to_page)
    assert within, most
    assert accounted
    assert both == 0
    assert listed == folded_total
    assert named, Counter(texts).most_common(3)
