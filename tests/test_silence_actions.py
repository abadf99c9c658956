"""`alertmanager.silence` and `alertmanager.expire_silence` against the real Alertmanager."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.actions.alertmanager import AlertmanagerActions
from remediator.actions.base import Outcome, StepContext, StepResult, Transient
from remediator.alerts import Notification
from remediator.engine.plan import RenderedTarget
from remediator.guards.guards import Guards
from remediator.guards.memory import MemoryGuards
from remediator.metrics import Metrics
from remediator.policy.parameters import (
    CATALOGUE,
    RENDERED,
    AlertmanagerExpireSilence,
    AlertmanagerSilence,
)
from remediator.remediation.dispatcher import Dispatcher
from remediator.remediation.run import Runner
from remediator.remediation.steps import Retrying
from remediator.runtime.live_policies import LivePolicies
from remediator.store import Store
from tests.support.alertmanager import ready, running_alertmanager
from tests.support.clocks import Clock
from tests.support.policies import SHIPPED_POLICIES, STAND_INS_ALLOWED
from tests.support.service_process import eventually
from tests.support.services import free_port
from tests.support.webhooks import webhook, webhook_alert

# Nothing is routed anywhere: these tests only read and write silences (and one alert).
ALERTMANAGER_CONFIG = """
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""

TARGET = RenderedTarget("Deployment", "api", "prod", None, None)
LABELS = {"alertname": "HighErrorRate", "namespace": "prod", "deployment": "api"}


@pytest.fixture
async def alertmanager(alertmanager_binary: str, tmp_path: Path) -> AsyncIterator[str]:
    """A real Alertmanager on a free port, as the end-to-end tests start it."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG)
    with running_alertmanager(alertmanager_binary, config, tmp_path) as url:
        async with aiohttp.ClientSession() as session:
            await eventually(
                lambda: ready(session, url), what="Alertmanager to be ready", timeout=30
            )
        yield url


@dataclass
class Silences:
    url: str
    session: aiohttp.ClientSession

    async def silence(self, *, dry: bool = False, **params: Any) -> StepResult:
        model = AlertmanagerSilence.model_validate(
            {"url": self.url, "matchers": LABELS, **params}, context=RENDERED
        )
        return await AlertmanagerActions(self.session).silence(model, _context(dry))

    async def expire(self, *, dry: bool = False, **params: Any) -> StepResult:
        model = AlertmanagerExpireSilence.model_validate(
            {"url": self.url, "matchers": LABELS, **params}, context=RENDERED
        )
        return await AlertmanagerActions(self.session).expire_silence(model, _context(dry))

    async def listed(self) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.url}/api/v2/silences") as answer:
            assert answer.status == 200
            silences: list[dict[str, Any]] = await answer.json()
            return silences

    async def active(self) -> list[dict[str, Any]]:
        return [s for s in await self.listed() if s["status"]["state"] == "active"]


def _context(dry: bool) -> StepContext:
    return StepContext(TARGET, dry, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
async def silences(alertmanager: str) -> AsyncIterator[Silences]:
    async with aiohttp.ClientSession() as session:
        yield Silences(alertmanager, session)


def _ends_in(silence: dict[str, Any], expected: timedelta) -> bool:
    left = datetime.fromisoformat(silence["endsAt"]) - datetime.now(UTC)
    return abs(left - expected) < timedelta(minutes=1)


async def test_creates_an_active_silence_and_a_rerun_reuses_it(silences: Silences) -> None:
    created = await silences.silence(
        matchers={**LABELS, "container": ""},  # rendered empty: the alert has no such label
        duration="2h",
        comment="high-error-rate: remediating deployment prod/api",
    )

    assert created.outcome is Outcome.OK, created.message
    silence_id = created.data["silence_id"]
    assert created.message == (
        f'created silence {silence_id} for 2h: {{alertname="HighErrorRate", '
        'deployment="api", namespace="prod"}'
    )
    [silence] = await silences.active()
    assert silence["id"] == silence_id
    assert sorted(silence["matchers"], key=lambda m: m["name"]) == [
        {"name": name, "value": LABELS[name], "isRegex": False, "isEqual": True}
        for name in ("alertname", "deployment", "namespace")
    ]
    assert silence["createdBy"] == "remediator"
    assert silence["comment"] == "high-error-rate: remediating deployment prod/api"
    assert _ends_in(silence, timedelta(hours=2))

    again = await silences.silence(duration="2h")  # the same step re-run after a crash

    assert again.outcome is Outcome.SKIPPED
    assert again.data["silence_id"] == silence_id
    assert again.message.startswith(f"silence {silence_id} by remediator already active until")
    assert [s["id"] for s in await silences.listed()] == [silence_id]


async def test_the_silence_mutes_the_alert(silences: Silences) -> None:
    created = await silences.silence()
    alert = {"labels": {**LABELS, "severity": "high"}, "annotations": {}}
    async with silences.session.post(f"{silences.url}/api/v2/alerts", json=[alert]) as answer:
        assert answer.status == 200

    async def suppressed() -> bool:
        async with silences.session.get(f"{silences.url}/api/v2/alerts") as answer:
            alerts = await answer.json()
        return [a["status"]["silencedBy"] for a in alerts] == [[created.data["silence_id"]]]

    await eventually(suppressed, what="the alert to be silenced", timeout=10)


async def test_a_longer_duration_extends_our_silence_in_place(silences: Silences) -> None:
    first = await silences.silence(duration="1h")
    extended = await silences.silence(duration="3h")

    assert extended.outcome is Outcome.OK
    assert extended.message.startswith(f"extended silence {first.data['silence_id']} to ")
    [silence] = await silences.listed()
    assert silence["id"] == first.data["silence_id"]
    assert silence["status"]["state"] == "active"
    assert _ends_in(silence, timedelta(hours=3))


async def test_expire_removes_our_silence_and_no_one_elses(silences: Silences) -> None:
    theirs = await silences.silence(created_by="alice@example.com", comment="maintenance")
    ours = await silences.silence()
    assert ours.outcome is Outcome.OK  # another author's silence is not ours to reuse
    assert ours.data["silence_id"] != theirs.data["silence_id"]

    expired = await silences.expire()

    assert expired.outcome is Outcome.OK, expired.message
    assert expired.data["silence_ids"] == [ours.data["silence_id"]]
    states = {s["id"]: s["status"]["state"] for s in await silences.listed()}
    assert states == {ours.data["silence_id"]: "expired", theirs.data["silence_id"]: "active"}

    again = await silences.expire()
    assert again.outcome is Outcome.SKIPPED
    assert again.message.startswith("no active silence by remediator: {alertname=")


async def test_dry_run_creates_and_expires_nothing(silences: Silences) -> None:
    would = await silences.silence(dry=True, duration="45m")
    assert would.outcome is Outcome.DRY_RUN
    assert would.message == (
        'would create a silence for 45m by remediator: {alertname="HighErrorRate", '
        'deployment="api", namespace="prod"}'
    )
    assert await silences.listed() == []

    created = await silences.silence()
    would_expire = await silences.expire(dry=True)
    assert would_expire.outcome is Outcome.DRY_RUN
    assert would_expire.message.startswith(f"would expire silence {created.data['silence_id']}")
    assert [s["id"] for s in await silences.active()] == [created.data["silence_id"]]


async def test_an_unreachable_alertmanager_is_transient(silences: Silences) -> None:
    nowhere = Silences(f"http://127.0.0.1:{free_port()}", silences.session)
    with pytest.raises(Transient):
        await nowhere.silence()
    with pytest.raises(Transient):
        await nowhere.expire()


def test_parameters() -> None:
    assert CATALOGUE["alertmanager.silence"].parameters == [
        "url",
        "matchers",
        "created_by",
        "timeout",
        "duration",
        "comment",
    ]
    assert CATALOGUE["alertmanager.expire_silence"].mutating
    from pydantic import ValidationError

    url = "http://alertmanager:9093"
    for wrong in (
        {"url": url, "matchers": {}},
        {"url": url, "matchers": {"bad-name": "x"}},
        {"url": "alertmanager:9093", "matchers": LABELS},
        {"url": url, "matchers": LABELS, "duration": "0s"},
    ):
        with pytest.raises(ValidationError):
            AlertmanagerSilence.model_validate(wrong)


POLICY = """\
name: silence-while-fixing
match:
  - alertname="AppDown"
severity: P2
target:
  kind: Application
  name: "{{ labels.app }}"
steps:
  - id: silence
    action: alertmanager.silence
    params:
      url: "ALERTMANAGER"
      matchers: &silenced
        alertname: "{{ labels.alertname }}"
        app: "{{ labels.app }}"
        instance: "{{ labels.instance | default('') }}"
      duration: 30m
      comment: "silence-while-fixing: remediating {{ labels.app }}"
on_resolved:
  - action: alertmanager.expire_silence
    params:
      url: "ALERTMANAGER"
      matchers: *silenced
verify:
  resolved_within: 10m
rate_limit:
  windows:
    - {max: 5, per: 1h}
circuit_breaker:
  failures: 2
  window: 1h
  cooldown: 30m
"""


async def _post(store: Store, clock: Clock, status: str) -> None:
    labels = {"alertname": "AppDown", "app": "shop"}
    alert = webhook_alert(
        labels, fingerprint="fp-silenced", starts_at="2027-01-15T08:00:00Z", status=status
    )
    body = webhook(alert, group_key='{}:{alertname="AppDown"}')
    received = datetime.fromtimestamp(clock(), UTC)
    await store.record_notification(Notification.model_validate(body), b"{}", received)


async def test_a_run_silences_and_its_on_resolved_run_expires_the_silence(
    silences: Silences, store: Store, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(SHIPPED_POLICIES / "escalation.yaml", policies)
    (policies / "guardrails.yaml").write_text(STAND_INS_ALLOWED)
    (policies / "silence.yaml").write_text(POLICY.replace("ALERTMANAGER", silences.url))
    clock = Clock()
    live = LivePolicies.load(policies, Metrics().policies)
    guards = Guards(
        MemoryGuards(clock),
        store,
        Metrics().guards,
        live=True,
        guardrails=lambda: live.current.guardrails,
        clock=clock,
    )
    actions = AlertmanagerActions(silences.session).actions()
    fast = Retrying(attempts=3, first_wait=0.01, max_wait=0.02)
    runner = Runner(store, guards, live, actions, clock=clock, retrying=fast, check_interval=0)
    dispatcher = Dispatcher(store, runner, clock=clock, worker="test")

    await _post(store, clock, "firing")
    assert await dispatcher.run_once() == 1
    [run] = await store.list_remediations(10)
    assert run.outcome == "verifying", run.reason
    [step] = await store.steps(run.id)
    assert (step.action, step.outcome) == ("alertmanager.silence", "ok")
    [silence] = await silences.active()
    assert silence["id"] == step.data["silence_id"]
    assert {(m["name"], m["value"]) for m in silence["matchers"]} == {
        ("alertname", "AppDown"),
        ("app", "shop"),  # no `instance` label on the alert: no matcher for it
    }
    assert silence["comment"] == "silence-while-fixing: remediating shop"

    clock.advance(120)
    await _post(store, clock, "resolved")
    assert await dispatcher.run_once() == 1
    undo, first = await store.list_remediations(10)
    assert first.outcome == "succeeded"
    assert (undo.kind, undo.outcome) == ("resolved", "succeeded"), undo.reason
    [expire] = await store.steps(undo.id)
    assert (expire.action, expire.outcome) == ("alertmanager.expire_silence", "ok")
    assert expire.data["silence_ids"] == [silence["id"]]
    assert await silences.active() == []
