"""Hostile regexes (issue 16, item 2): a policy matcher a backtracking engine takes exponential
time on, `deployment=~"([a-z0-9]+-?)+"`, against labels of 28 to 100,000 characters.

With Python's `re`, a 28-character label blocked an unrelated webhook for 31.8 s, doubling with
each character. The service (`remediator serve`, its own process, on SQLite) is sent alerts
with such labels while another alert, which no policy matches, is posted again and again; each
of those must be answered, and every hostile alert decided. Each label is also matched alone,
in a process of its own with a timeout, for the longest match time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from remediator.store import Store, open_store
from tests.support.figures import Figures, scale
from tests.support.own_process import json_printed_within
from tests.support.policies import SHIPPED_POLICIES, shipped_matrix
from tests.support.service_process import ServiceProcess
from tests.support.stack import fingerprint_of, settles
from tests.support.webhooks import webhook, webhook_alert

SCENARIO = 'Hostile regexes: `deployment=~"([a-z0-9]+-?)+"` against labels of 28 .. 100,000 chars'
EXPECTED = "linear-time matches; an unrelated webhook answered meanwhile; every alert decided"
TOKEN = "s3cret"
LENGTHS = (28, 100, 1_000, 10_000, 100_000)
ALERTS_PER_LENGTH = scale(4, 40)
ANSWER_TIMEOUT = 10.0  # an unrelated webhook not answered by then was held up by a match
DECIDED_WITHIN = 30.0  # generous bounds: a backtracking engine would take years
MATCHED_WITHIN = 30.0
POLICY = """\
name: restart-stuck
match:
  - alertname="DeploymentStuck"
  - deployment=~"([a-z0-9]+-?)+"
severity: P4
target:
  kind: Deployment
  namespace: shop
  name: "{{ labels.deployment }}"
steps: []
rate_limit:
  windows:
    - {max: 1000, per: 1h}
"""
# The longest time RE2 takes on each label, in a process of its own (a backtracking engine
# would never answer: it is killed at MATCHED_WITHIN instead).
MATCH_TIMES = """
import json, sys, time
from remediator.policy.matchers import parse_matcher

matcher = parse_matcher('deployment=~"([a-z0-9]+-?)+"')
longest, answers = 0.0, []
for length in map(int, sys.argv[1:]):
    for value in ("a" * (length - 1) + "!", "a" * length, "ab-" * (length // 3) + "-"):
        started = time.perf_counter()
        answers.append(matcher.matches({"deployment": value}))
        longest = max(longest, time.perf_counter() - started)
print(json.dumps({"longest": longest, "answers": answers}))
"""


def hostile_labels(length: int, number: int) -> dict[str, str]:
    """A label the pattern fails on at its last character (the worst case when backtracking),
    or one it matches (then refused as no Kubernetes name), in turns."""
    body = "a" * (length - 1)
    last = "!" if number % 2 == 0 else "b"
    return {
        "alertname": "DeploymentStuck",
        "deployment": body + last,
        "namespace": "shop",
        "n": str(number),
    }


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "escalation.yaml").write_text(shipped_matrix())
    (directory / "guardrails.yaml").write_text((SHIPPED_POLICIES / "guardrails.yaml").read_text())
    (directory / "restart-stuck.yaml").write_text(POLICY)
    return directory


@pytest.fixture
async def service(tmp_path: Path, policies: Path) -> AsyncIterator[tuple[ServiceProcess, Store]]:
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    process = await ServiceProcess.start(
        tmp_path, database_url=database_url, webhook_token=TOKEN, policies=str(policies)
    )
    store = await open_store(database_url)
    try:
        yield process, store
    finally:
        await store.close()
        process.kill()


async def post(session: aiohttp.ClientSession, url: str, labels: dict[str, str]) -> int:
    alert = webhook_alert(
        labels, fingerprint=fingerprint_of(labels), starts_at="2026-06-01T10:00:00Z"
    )
    async with session.post(
        f"{url}/api/v1/alerts",
        json=webhook(alert),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=ANSWER_TIMEOUT),
    ) as answer:
        return answer.status


async def unrelated_answers(
    session: aiohttp.ClientSession, url: str, done: asyncio.Event
) -> list[float]:
    """Post an alert no policy matches until `done`; how long each answer took (inf: none)."""
    seconds: list[float] = []
    number = 0
    while not done.is_set() or not seconds:
        started = time.monotonic()
        labels = {"alertname": "DiskFillingUp", "instance": f"db-{number}", "severity": "info"}
        try:
            status = await post(session, url, labels)
        except TimeoutError:
            status = 0
        seconds.append(time.monotonic() - started if status == 200 else float("inf"))
        number += 1
    return seconds


async def decided(store: Store, count: int) -> bool:
    hostile = [
        r
        for r in await store.list_remediations(10 * count)
        if r.alertname == "DeploymentStuck" and r.outcome != "running"
    ]
    return len(hostile) >= count


async def test_a_catastrophic_matcher_holds_up_nothing(
    service: tuple[ServiceProcess, Store], figures: Figures
) -> None:
    process, store = service
    count = len(LENGTHS) * ALERTS_PER_LENGTH
    done = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        unrelated = asyncio.create_task(unrelated_answers(session, process.url, done))
        statuses = await asyncio.gather(
            *(
                post(session, process.url, hostile_labels(length, number))
                for length in LENGTHS
                for number in range(ALERTS_PER_LENGTH)
            ),
            return_exceptions=True,
        )
        all_decided = await settles(lambda: decided(store, count), timeout=DECIDED_WITHIN)
        done.set()
        answers = await unrelated
    matched = json_printed_within(MATCH_TIMES, *map(str, LENGTHS), timeout=MATCHED_WITHIN)
    longest = (
        f"none in {MATCHED_WITHIN:.0f} s"
        if matched is None
        else f"{matched['longest'] * 1000:.2f} ms"
    )
    slowest = max(answers)
    answered = sum(seconds < ANSWER_TIMEOUT for seconds in answers)
    accepted = sum(status == 200 for status in statuses)
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=(
            f"longest match {longest} (labels up to 100,000 chars); "
            f"{answered} of {len(answers)} unrelated webhooks answered meanwhile, slowest"
            f" {slowest:.3f} s; "
            f"{accepted} of {count} hostile alerts accepted, "
            f"{'all' if all_decided else 'not all'} decided"
        ),
        passed=matched is not None
        and slowest < ANSWER_TIMEOUT
        and accepted == count
        and all_decided,
    )
    assert matched is not None, f"matching the labels alone took over {MATCHED_WITHIN:.0f} s"
    assert matched["answers"] == [False, True, False] * len(LENGTHS)
    assert accepted == count, statuses
    assert slowest < ANSWER_TIMEOUT, answers
    assert all_decided
