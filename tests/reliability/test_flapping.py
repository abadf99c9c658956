"""A flapping alert whose fix never works (issue 9): the circuit breaker, end to end.

Three `remediator serve` replicas in live mode share one PostgreSQL schema and a redis-server
of this test's own. The alert fires, its fix (a scale) runs, the application's health check
never passes, so the verification fails; the alert resolves and fires again, episode after
episode. The breaker must open at exactly the policy's N-th verified failure, and no sooner;
every episode after that is blocked and escalated without a Kubernetes call; once the cooldown
has passed, alerts racing on every replica for the half-open breaker let exactly one trial
through, whose failure opens the breaker again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from remediator.store import Remediation
from tests.support.fake_kubernetes import FakeKubernetes
from tests.support.figures import Figures, scale
from tests.support.notify_recorder import Recorder
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess
from tests.support.stack import Posted, Stack, running_stack, settles, target_of

SCENARIO = "Flapping alert whose fix never works"
EXPECTED = "breaker opens after N verified failures; then escalation"
ALERTNAME = "FlappingFix"
DEPLOYMENT = "checkout"
FAILURES = 3  # N: the policy's circuit_breaker.failures
BLOCKED_EPISODES = scale(2, 20)  # episodes while the breaker is open
ROUNDS = scale(1, 5)  # half-open races, each trial failing again
WAVE = scale(3, 6)  # alerts posted at once, spread over the replicas, in each of two waves
# Longer than the blocked episodes take, so that all of them meet the breaker still open.
COOLDOWN_SECONDS = 4 + 3 * BLOCKED_EPISODES // 2
TARGET = target_of(DEPLOYMENT)
TERMINAL = {"failed", "blocked", "succeeded", "interrupted", "stopped", "dry_run"}


def flapping_policy(health_url: str) -> str:
    return f"""\
name: flapping-fix
description: Add a replica; the application's health check must pass, and never does.
match:
  - alertname="{ALERTNAME}"
severity: P1
target:
  kind: Deployment
  namespace: "{{{{ labels.namespace }}}}"
  name: "{{{{ labels.deployment }}}}"
steps:
  - action: kubernetes.scale
    params: {{by: 1, max_replicas: 100}}
verify:
  resolved_within: 2s
  http: "{health_url}"
rate_limit:
  windows:
    - {{max: 1000, per: 1h}}
circuit_breaker:
  failures: {FAILURES}
  window: 1h
  cooldown: {COOLDOWN_SECONDS}s
"""


@dataclass
class Application:
    """The application's health endpoint: always failing, and counting the checks."""

    url: str
    checks: list[datetime] = field(default_factory=list)


@pytest.fixture
async def application() -> AsyncIterator[Application]:
    app = web.Application()
    found = Application("")

    async def health(_: web.Request) -> web.Response:
        found.checks.append(datetime.now(UTC))
        return web.Response(status=503, text="still broken")

    app.router.add_get("/health", health)
    async with TestServer(app) as server:
        found.url = f"http://127.0.0.1:{server.port}/health"
        yield found


@pytest.fixture
async def stack(
    tmp_path: Path,
    postgres_dsn: str,
    redis_server: RedisServer,
    kubernetes: FakeKubernetes,
    pagerduty_api: Recorder,
    slack_api: Recorder,
    application: Application,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    redis_server.start()
    async with running_stack(
        tmp_path,
        replicas=3,
        policies=[flapping_policy(application.url)],
        dsn=postgres_dsn,
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        kubernetes=kubernetes,
        pagerduty=pagerduty_api,
        slack=slack_api,
        monkeypatch=monkeypatch,
        # One event at a time per replica: the replica woken first cannot take a whole wave,
        # and the race is between replicas.
        max_events_in_flight="1",
    ) as running:
        running.alertname = ALERTNAME
        yield running


@dataclass
class Flapping:
    """Episodes of the one alert, each posted to the next replica in turn."""

    stack: Stack
    dsn: str
    turn: int = 0

    def next_replica(self) -> ServiceProcess:
        self.turn += 1
        return self.stack.replicas[self.turn % len(self.stack.replicas)]

    async def remediation(self, posted: Posted) -> Remediation | None:
        found = await self.stack.store.remediations_for(posted.fingerprint, posted.starts_at)
        firing = [r for r in found if r.kind == "firing"]
        return firing[-1] if firing else None

    async def ended(self, posted: Posted) -> bool:
        found = await self.remediation(posted)
        return found is not None and found.outcome in TERMINAL

    async def ended_or_verifying(self, posted: Posted) -> bool:
        found = await self.remediation(posted)
        return found is not None and found.outcome in {*TERMINAL, "verifying"}

    async def episode(
        self, labels: dict[str, str] | None = None
    ) -> tuple[Posted, Remediation | None]:
        """One episode fires; its remediation once it has ended (a failed verification takes
        its 3 s and the next poll of some replica), or None if it never got one."""
        posted = await self.stack.post(self.next_replica(), DEPLOYMENT, labels=labels)
        await settles(lambda: self.ended(posted), timeout=40.0)
        return posted, await self.remediation(posted)

    async def resolve(self, posted: Posted, labels: dict[str, str] | None = None) -> None:
        """The episode clears, as a flapping alert does before it fires again."""
        await self.stack.post(
            self.next_replica(),
            DEPLOYMENT,
            starts_at=posted.starts_at,
            status="resolved",
            labels=labels,
        )

    async def page_resolved(self) -> bool:
        """The incident's latest PagerDuty message is a resolve (queued, if not yet sent)."""
        latest = await self.stack.store.latest_outbox(f"remediator/flapping-fix/{TARGET}")
        return any(e.channel == "pagerduty" and e.action == "resolve" for e in latest)

    async def breaker(self) -> dict[str, object]:
        guards = await self.stack.guards(self.next_replica())
        key = f"flapping-fix:{TARGET}"
        found = [b for b in guards["breakers"] if b["key"] == key]
        return dict(found[0]) if found else {"state": "closed", "recent_failures": 0}

    async def workers_of(self, posted: list[Posted]) -> set[str]:
        """The replicas (host:pid) that claimed these alerts' firing events."""
        connection = await asyncpg.connect(self.dsn)
        try:
            rows = await connection.fetch(
                "SELECT claimed_by FROM alert_events WHERE kind = 'firing'"
                " AND fingerprint = ANY($1::text[])",
                [p.fingerprint for p in posted],
            )
        finally:
            await connection.close()
        return {row["claimed_by"] for row in rows if row["claimed_by"]}


def blocked_triggers(recorder: Recorder, since: int) -> int:
    """PagerDuty triggers about the flapping target whose outcome is `blocked`."""
    count = 0
    for request in recorder.requests[since:]:
        body = request.json or {}
        payload = body.get("payload", {})
        if (
            body.get("event_action") == "trigger"
            and payload.get("component") == TARGET
            and payload.get("custom_details", {}).get("outcome") == "blocked"
        ):
            count += 1
    return count


@dataclass
class Round:
    """One half-open race: who got through, who was held back, on how many replicas."""

    trials: list[Remediation]
    held_by_lease: int  # blocked by another run's hold on the target
    held_by_breaker: int  # either wave: blocked by the breaker the trial holds
    other: list[str]  # anything else: a contender neither the trial nor held back
    workers: int
    reopened: bool  # the trial failed and the breaker opened again
    blocked_after: bool  # the next episode met the reopened breaker

    @property
    def held_back(self) -> int:
        return self.held_by_breaker + self.held_by_lease


async def wave(flapping: Flapping, name: str) -> list[Posted]:
    """WAVE alerts on the target, each a pod's, posted at once to every replica in turn."""
    stack = flapping.stack
    posted = await asyncio.gather(
        *(
            stack.post(
                stack.replicas[i % len(stack.replicas)], DEPLOYMENT, labels={"pod": f"{name}-{i}"}
            )
            for i in range(WAVE)
        )
    )
    await settles(lambda: all_true([flapping.ended_or_verifying(p) for p in posted]))
    return list(posted)


async def half_open_race(flapping: Flapping, number: int, kubernetes: FakeKubernetes) -> Round:
    """Wait out the cooldown; a first wave of alerts races for the one trial (the losers meet
    its target lease, or the breaker it holds); a second wave comes while the trial is being
    verified, when only the half-open breaker (or a contender's instant on the target) holds
    them back."""
    before = await flapping.breaker()
    opened_at = float(str(before["opened_at"]))
    await asyncio.sleep(max(0.0, opened_at + COOLDOWN_SECONDS - time_now() + 0.2))
    first = await wave(flapping, f"round{number}-first")
    second = await wave(flapping, f"round{number}-second")
    posted = first + second
    await settles(lambda: all_true([flapping.ended(p) for p in posted]), timeout=40.0)
    found = [await flapping.remediation(p) for p in posted]
    trials = [r for r in found if r is not None and r.run_id is not None]
    # Half-open while the trial is in flight; open again if its failure was counted before
    # some of the second wave was handled: held back by the breaker either way.
    by_breaker = [r for r in found if r is not None and held(r, "circuit_breaker", "breaker")]
    # A target is held by one run at a time: the trial while it runs its steps, and for an
    # instant each contender while it asks the breaker.
    by_lease = [r for r in found if r is not None and held(r, "target_lock", "another run")]
    other = [
        f"{r.outcome}/{r.guard}: {r.reason}" if r else "none"
        for r in found
        if r not in trials and r not in by_breaker and r not in by_lease
    ]
    after = await flapping.breaker()
    reopened = after["state"] == "open" and float(str(after["opened_at"])) > opened_at
    writes = len(kubernetes.writes)
    _, next_episode = await flapping.episode()
    blocked_after = (
        held(next_episode, "circuit_breaker", "is open") and len(kubernetes.writes) == writes
    )
    workers = len(await flapping.workers_of(posted))
    return Round(trials, len(by_lease), len(by_breaker), other, workers, reopened, blocked_after)


def held(remediation: Remediation | None, guard: str, reason: str) -> bool:
    """Blocked by this guard, for this reason."""
    return (
        remediation is not None
        and (remediation.outcome, remediation.guard) == ("blocked", guard)
        and reason in remediation.reason
    )


async def all_true(checks: list[Awaitable[bool]]) -> bool:
    return all(await asyncio.gather(*checks))


def outcomes(runs: list[Remediation | None]) -> list[str | None]:
    return [run.outcome if run else None for run in runs]


def time_now() -> float:
    return datetime.now(UTC).timestamp()


async def test_the_breaker_opens_at_n_failures_and_lets_one_trial_through(
    stack: Stack,
    postgres_dsn: str,
    kubernetes: FakeKubernetes,
    pagerduty_api: Recorder,
    application: Application,
    figures: Figures,
) -> None:
    flapping = Flapping(stack, postgres_dsn)

    # Closed: each episode runs its fix, which the health check never verifies.
    failing: list[Remediation | None] = []
    states: list[str] = []
    while len(failing) < FAILURES:
        posted, run = await flapping.episode()
        failing.append(run)
        states.append(str((await flapping.breaker())["state"]))
        await flapping.resolve(posted)
        if run is None or run.outcome != "failed":
            break
    opened_at_failure = next((i + 1 for i, s in enumerate(states) if s == "open"), None)

    # Open: every further episode is blocked and escalated, and nothing is changed.
    writes = len(kubernetes.writes)
    pages = len(pagerduty_api.requests)
    blocked: list[Remediation | None] = []
    for _ in range(BLOCKED_EPISODES):
        posted, run = await flapping.episode()
        blocked.append(run)
        await flapping.resolve(posted)  # its page is resolved: the next block pages anew
        await settles(flapping.page_resolved)
    writes_while_open = len(kubernetes.writes) - writes
    still_open = str((await flapping.breaker())["state"]) == "open"

    async def all_paged() -> bool:
        return blocked_triggers(pagerduty_api, pages) >= BLOCKED_EPISODES

    await settles(all_paged)
    escalated = blocked_triggers(pagerduty_api, pages)
    held_open = sum(1 for r in blocked if held(r, "circuit_breaker", "is open"))

    # Half-open: alerts racing on every replica; exactly one trial, whose failure reopens it.
    rounds = [await half_open_race(flapping, number, kubernetes) for number in range(ROUNDS)]
    checked = len(application.checks)

    passed = (
        outcomes(failing) == ["failed"] * FAILURES
        and states == ["closed"] * (FAILURES - 1) + ["open"]
        and held_open == escalated == BLOCKED_EPISODES
        and writes_while_open == 0
        and still_open
        and all(len(r.trials) == 1 and r.held_back == 2 * WAVE - 1 for r in rounds)
        and all(r.trials[0].outcome == "failed" and r.reopened and r.blocked_after for r in rounds)
        and all(r.workers >= 2 for r in rounds)
    )
    trials = [len(r.trials) for r in rounds]
    figures.record(
        SCENARIO,
        expected=f"{EXPECTED} (N={FAILURES}); half-open lets exactly one trial through",
        figure=(
            f"opened at verified failure {opened_at_failure} of N={FAILURES} (states after "
            f"each: {', '.join(states)}); {held_open}/{BLOCKED_EPISODES} later episodes blocked, "
            f"{escalated} escalated, {writes_while_open} Kubernetes writes meanwhile; "
            f"half-open let {trials} trial(s) through of {2 * WAVE} alerts racing on "
            f"{[r.workers for r in rounds]} replicas over {ROUNDS} round(s) (the others held "
            f"by the half-open breaker {[r.held_by_breaker for r in rounds]}, by a run's hold "
            f"on the target {[r.held_by_lease for r in rounds]}); each failed trial reopened "
            f"it: {[r.reopened for r in rounds]}; {checked} health checks made"
        ),
        passed=passed,
    )
    assert outcomes(failing) == ["failed"] * FAILURES, [r and r.reason for r in failing]
    assert states == ["closed"] * (FAILURES - 1) + ["open"], states
    assert writes_while_open == 0, "a Kubernetes change was made while the breaker was open"
    assert held_open == BLOCKED_EPISODES, [r and (r.outcome, r.reason) for r in blocked]
    assert escalated == BLOCKED_EPISODES, "a blocked episode was not escalated"
    assert still_open, f"the cooldown ({COOLDOWN_SECONDS}s) ended before the blocked episodes"
    for number, race in enumerate(rounds):
        assert len(race.trials) == 1, (number, [(r.outcome, r.reason) for r in race.trials])
        assert race.held_back == 2 * WAVE - 1, (number, race.other)
        assert race.trials[0].outcome == "failed", (number, race.trials[0].reason)
        assert race.reopened, f"round {number}: the failed trial did not reopen the breaker"
        assert race.blocked_after, f"round {number}: the reopened breaker let an episode through"
        assert race.workers >= 2, f"round {number}: only {race.workers} replica took part"
