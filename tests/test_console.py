"""The operator console (/ui/): each page as a signed-in viewer sees it, who may sign in and
how, what every answer carries, and that alert labels are shown as text."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.alerts import Notification
from remediator.config import Settings
from remediator.console.security import CONTENT_SECURITY_POLICY
from remediator.engine.outcome import RunOutcome
from remediator.engine.plan import Escalation
from remediator.engine.summary import PlanSummary
from remediator.guards.guards import Admitted
from remediator.metrics import Metrics
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import GUARDS, Parts
from remediator.store import (
    ApprovalAnswer,
    ApprovalState,
    Demotion,
    OutboxEntry,
    Remediation,
    StepRecord,
    Store,
    Verdict,
    open_store,
)
from tests.support.approval_requests import (
    ALICE,
    BOB,
    MALLORY,
    TOKENS,
    VERA,
    pending_request,
    write_users,
)
from tests.support.builders import memory_plan
from tests.support.clocks import Clock
from tests.support.console import Browser
from tests.support.service_process import eventually
from tests.support.webhooks import webhook, webhook_alert

OPERATOR_TOKEN = "ops-token"  # REMEDIATOR_API_TOKEN: the identity `operator`


@pytest.fixture
async def browser(
    database_url: str, store: Store, live_policies: LivePolicies, tmp_path: Path
) -> AsyncIterator[Browser]:
    settings = Settings(
        database_url=database_url,
        webhook_token="s3cret",
        api_token=OPERATOR_TOKEN,
        users_file=write_users(tmp_path / "users.yaml"),
        mode="live",
    )
    parts = Parts.of(settings, store, live_policies, Metrics())
    async with TestClient(TestServer(parts.application())) as client:
        yield Browser(client)


async def firing(store: Store, fingerprint: str, at: datetime, **labels: str) -> None:
    alert = webhook_alert(
        {"alertname": "ApplicationDown", **labels},
        fingerprint=fingerprint,
        starts_at=at.isoformat(),
        annotations={"summary": labels.get("summary", "down")},
    )
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", at)


async def decided(
    store: Store, fingerprint: str, at: datetime, outcome: RunOutcome, **fields: Any
) -> Remediation:
    remediation = Remediation(
        id=fields.pop("id", f"run-{fingerprint}"),
        event_id=1,
        fingerprint=fingerprint,
        starts_at=at,
        alertname=fields.pop("alertname", "ApplicationDown"),
        kind="firing",
        policy=fields.pop("policy", "application-down"),
        policy_revision=fields.pop("policy_revision", None),
        outcome=outcome,
        guard=fields.pop("guard", None),
        reason=fields.pop("reason", str(outcome)),
        run_id=f"r-{fingerprint}",
        target=fields.pop("target", "Deployment/prod/api"),
        plan=PlanSummary(target="Deployment/prod/api", steps=("kubernetes.rollout_restart",)),
        started_at=at + timedelta(seconds=1),
        **fields,
    )
    await store.save_remediation(remediation)
    return remediation


def cells(page: str, css_class: str) -> list[str]:
    """The text of every `<td class="css_class">` of a page, tags dropped, spaces folded."""
    found = re.findall(rf'<td class="{css_class}">(.*?)</td>', page, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in found]


async def test_a_person_not_signed_in_is_sent_to_sign_in_and_back_to_the_page(
    browser: Browser,
) -> None:
    typed = await browser.client.get("/ui", allow_redirects=False)
    assert (typed.status, typed.headers["Location"]) == (303, "/ui/")
    status, _ = await browser.page("/ui/")
    response = await browser.client.get("/ui/control?x=1", allow_redirects=False)
    assert (status, response.status) == (303, 303)
    assert response.headers["Location"] == "/ui/login?next=%2Fui%2Fcontrol%3Fx%3D1"

    status, page = await browser.page("/ui/login?next=%2Fui%2Fcontrol%3Fx%3D1")
    assert status == 200
    assert 'name="next" value="/ui/control?x=1"' in page
    form_token = await browser.form_token("/ui/login")
    answer = await browser.client.post(
        "/ui/login",
        data={"token": TOKENS[VERA], "csrf": form_token, "next": "/ui/control?x=1"},
        headers={"Origin": browser.origin},
        allow_redirects=False,
    )
    assert answer.status == 303
    assert answer.headers["Location"] == "/ui/control?x=1"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    assert "Max-Age=43200" in cookie
    assert TOKENS[VERA] not in cookie

    status, page = await browser.page("/ui/")
    assert status == 200
    assert '<span id="who-name">vera</span>' in page
    assert '<span id="who-role" class="role">viewer</span>' in page


async def test_sign_in_refuses_an_unknown_token_a_missing_form_token_and_another_site(
    browser: Browser,
) -> None:
    unknown = await browser.sign_in("not-a-token")
    assert unknown.status == 401
    assert "That token is not known here." in await unknown.text()
    assert "Set-Cookie" not in unknown.headers or "remediator_console=" not in unknown.headers.get(
        "Set-Cookie", ""
    )

    form_token = await browser.form_token("/ui/login")
    for data, origin in [
        ({"token": OPERATOR_TOKEN}, browser.origin),  # no form token
        ({"token": OPERATOR_TOKEN, "csrf": "forged"}, browser.origin),
        ({"token": OPERATOR_TOKEN, "csrf": form_token}, "https://evil.example"),
    ]:
        refused = await browser.client.post(
            "/ui/login", data=data, headers={"Origin": origin}, allow_redirects=False
        )
        assert refused.status == 403, data
        assert (await browser.page("/ui/"))[0] == 303


async def test_every_answer_carries_the_strict_headers(browser: Browser) -> None:
    answers = [
        await browser.client.get("/ui/", allow_redirects=False),  # to sign in
        await browser.client.get("/ui/login"),
        await browser.client.get("/ui/static/console.css"),
    ]
    await browser.sign_in(OPERATOR_TOKEN)
    answers += [
        await browser.client.get("/ui/"),
        await browser.client.get("/ui/no-such-page"),
    ]
    for answer in answers:
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
    assert answers[-1].status == 404
    assert 'id="error"' in await answers[-1].text()
    assert "script" not in (await answers[3].text()).lower()


async def test_now_shows_the_alerts_firing_newest_first_with_their_incident_state(
    browser: Browser, store: Store
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    await firing(store, "fp-queued", at + timedelta(minutes=5), instance="db-1")
    await firing(store, "fp-blocked", at + timedelta(minutes=4), instance="api-2")
    await firing(store, "fp-asking", at + timedelta(minutes=3), instance="api-3")
    await firing(store, "fp-failed", at + timedelta(minutes=2), instance="api-4")
    await firing(store, "fp-over", at, instance="api-5")
    await decided(
        store, "fp-blocked", at + timedelta(minutes=4), RunOutcome.BLOCKED, guard="rate_limit"
    )
    await decided(store, "fp-asking", at + timedelta(minutes=3), RunOutcome.RUNNING, id="first")
    await decided(
        store, "fp-asking", at + timedelta(minutes=3), RunOutcome.AWAITING_APPROVAL, id="later"
    )
    await decided(store, "fp-failed", at + timedelta(minutes=2), RunOutcome.FAILED)
    resolved = webhook_alert(
        {"alertname": "ApplicationDown", "instance": "api-5"},
        fingerprint="fp-over",
        starts_at=at.isoformat(),
        status="resolved",
        ends_at=(at + timedelta(minutes=1)).isoformat(),
    )
    await store.record_notification(Notification.model_validate(webhook(resolved)), b"{}", at)
    await browser.sign_in(TOKENS[VERA])

    status, page = await browser.page("/ui/")
    assert status == 200
    assert '<meta http-equiv="refresh" content="10">' in page
    assert [cell.split()[0] for cell in cells(page, "labels")] == [
        "instance=db-1",
        "instance=api-2",
        "instance=api-3",
        "instance=api-4",
    ]
    assert cells(page, "state") == [
        "deciding",
        "blocked by rate_limit",
        "awaiting approval",
        "escalated",
    ]
    assert '<a href="/ui/runs/later">' in page
    assert "/ui/runs/first" not in page


async def test_an_alert_that_starts_ahead_of_the_service_s_clock_reads_in_so_long(
    browser: Browser, store: Store
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await firing(store, "fp-ahead", now + timedelta(minutes=10), instance="clock-ahead")
    await firing(store, "fp-behind", now - timedelta(minutes=10), instance="on-time")
    await browser.sign_in(TOKENS[VERA])

    _, page = await browser.page("/ui/")

    ahead, behind = [cell.split(" UTC ")[1] for cell in cells(page, "began")]
    assert ahead.startswith(("in 9 min", "in 10 min")), ahead
    assert behind.startswith(("9 min", "10 min")), behind
    assert behind.endswith(" ago"), behind


async def test_an_operator_pauses_and_resumes_through_the_forms_recorded_with_their_name(
    browser: Browser, store: Store
) -> None:
    await browser.sign_in(TOKENS[ALICE])
    paused = await browser.post("/ui/control/pause", {"reason": "deploy freeze <b>now</b>"})
    assert (paused.status, paused.headers["Location"]) == (303, "/ui/control")
    pause = await store.pause()
    assert pause is not None
    assert (pause.paused_by, pause.reason) == (ALICE, "deploy freeze <b>now</b>")

    status, page = await browser.page("/ui/control")
    assert status == 200
    assert f'<span id="paused-by">{ALICE}</span>' in page
    assert "deploy freeze &lt;b&gt;now&lt;/b&gt;" in page
    assert 'id="paused-banner"' in page
    assert 'id="resume-form"' in page

    resumed = await browser.post("/ui/control/resume", token_from="/ui/control")
    assert resumed.status == 303
    assert await store.pause() is None
    kinds = [(e.kind, e.detail.get("by")) for e in await store.audit_log(10)]
    assert kinds[:2] == [("resume", ALICE), ("pause", ALICE)]
    page = (await browser.page("/ui/control"))[1]
    assert cells(page, "by")[:2] == [ALICE, ALICE]

    blank = await browser.post("/ui/control/pause", {"reason": "  "})
    assert blank.headers["Location"] == "/ui/control?problem=reason"
    assert await store.pause() is None


async def test_a_viewer_reads_but_cannot_post(browser: Browser, store: Store) -> None:
    await browser.sign_in(TOKENS[VERA])
    page = (await browser.page("/ui/control"))[1]
    assert 'id="pause-form"' not in page
    assert 'id="read-only"' in page
    refused = await browser.post("/ui/control/pause", {"reason": "mine"})
    assert refused.status == 403
    assert "vera is a viewer: this needs the operator role" in await refused.text()
    assert await store.pause() is None


@pytest.mark.parametrize(
    ("form_token", "origin", "referer"),
    [
        pytest.param(None, "own", None, id="no form token"),
        pytest.param("forged", "own", None, id="a wrong form token"),
        pytest.param("another session's", "own", None, id="another session's token"),
        pytest.param("good", "https://evil.example", None, id="from another site"),
        pytest.param("good", None, None, id="neither Origin nor Referer"),
        pytest.param("good", None, "https://evil.example/page", id="a Referer of another site"),
    ],
)
async def test_a_form_without_its_token_or_from_another_site_is_refused(
    browser: Browser, store: Store, form_token: str | None, origin: str | None, referer: str | None
) -> None:
    await browser.sign_in(TOKENS[BOB])
    elsewhere = await browser.form_token("/ui/control")
    await browser.sign_in(TOKENS[ALICE])
    fields = {"reason": "forged"}
    if form_token == "good":
        fields["csrf"] = await browser.form_token("/ui/control")
    elif form_token == "another session's":
        fields["csrf"] = elsewhere
    elif form_token is not None:
        fields["csrf"] = form_token
    headers = {"Referer": referer} if referer else {}
    refused = await browser.post(
        "/ui/control/pause", fields, token_from=None, origin=origin, **headers
    )
    assert refused.status == 403
    assert await store.pause() is None


async def test_a_run_shows_its_steps_changes_approvals_messages_and_policy_revision(
    database_url: str, store: Store, live_policies: LivePolicies, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url,
        webhook_token="s3cret",
        api_token=OPERATOR_TOKEN,
        policy_repository_url="https://git.example/org/repo/blob/{revision}/policies/{file}",
    )
    at = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    request = await pending_request(store, "ab12cd34", requested_at=at)
    await firing(store, "fp-run", at, instance="api-0")
    run = await decided(store, "fp-run", at, RunOutcome.SUCCEEDED, policy_revision="0badc0de+dirty")
    await store.record_step(
        StepRecord(
            run.id,
            "steps",
            0,
            "health",
            "http.check",
            "failed",
            "answered 503",
            {"status": 503},
            2,
            at,
            at + timedelta(seconds=4),
        )
    )
    await store.record_step(
        StepRecord(
            run.id,
            "steps",
            1,
            None,
            "kubernetes.rollout_restart",
            "ok",
            "restarted deployment prod/api",
            {"params": {"namespace": "prod", "name": "api"}, "generation": 7},
            1,
            at + timedelta(seconds=4),
            at + timedelta(seconds=5, milliseconds=500),
        )
    )
    await store.request_approval(replace(request, id="ef56", remediation_id=run.id))
    await store.answer_approval(
        "ef56", ApprovalAnswer("ef56", ALICE, "slack", Verdict.APPROVE, "fine by me", at), 1
    )
    page_entry = OutboxEntry(
        id="m-1",
        channel="slack",
        action="trigger",
        dedup_key="k",
        remediation_id=run.id,
        message={"summary": "ApplicationDown on Deployment/prod/api"},
        created_at=at,
        next_attempt_at=at,
    )
    await store.enqueue([page_entry, replace(page_entry, id="m-2", channel="pagerduty")])
    await store.outbox_done("m-1", sent_at=at + timedelta(seconds=1))
    parts = Parts.of(settings, store, live_policies, Metrics())
    async with TestClient(TestServer(parts.application())) as client:
        browser = Browser(client)
        await browser.sign_in(OPERATOR_TOKEN)
        status, page = await browser.page(f"/ui/runs/{run.id}")
        missing, _ = await browser.page("/ui/runs/no-such-run")

    assert (status, missing) == (200, 404)
    assert (
        '<a id="policy-link" href="https://git.example/org/repo/blob/0badc0de/policies/'
        'application-down.yaml">0badc0de+dirty</a>'
    ) in page
    assert 'id="step-steps-0"' in page
    assert cells(page, "name")[:2] == ["alertname", "instance"]
    [read, change] = re.findall(r'<li class="step (\w+)"', page)
    assert (read, change) == ("read", "change")
    assert "4.0 s" in page  # the check's duration
    assert "2 attempts" in page
    assert "1.5 s" in page
    assert "&#34;namespace&#34;: &#34;prod&#34;" in page  # the change's parameters
    assert "&#34;generation&#34;: 7" in page  # what it returned
    assert "&#34;status&#34;: 503" in page  # what the check read
    assert cells(page, "who") == [ALICE]
    assert cells(page, "via") == ["slack"]
    assert cells(page, "note") == ["fine by me"]
    assert cells(page, "channel") == ["slack", "pagerduty"]
    assert [cell.split()[0] for cell in cells(page, "delivery")] == ["sent", "queued"]


async def test_history_filters_by_each_field_and_pages_on_newest_first(
    browser: Browser, store: Store
) -> None:
    at = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    for n in range(56):
        await decided(
            store,
            f"fp-{n}",
            at + timedelta(minutes=n),
            RunOutcome.BLOCKED if n % 7 == 0 else RunOutcome.SUCCEEDED,
            id=f"run-{n:02}",
            policy="high-cpu-usage" if n % 2 else "application-down",
            guard="rate_limit" if n % 7 == 0 else None,
        )
    await decided(
        store,
        "fp-x",
        at,
        RunOutcome.FAILED,
        id="run-x",
        alertname="DiskFull",
        target="Node/-/node-3",
    )
    await browser.sign_in(TOKENS[VERA])

    def listed(page: str) -> list[str]:
        return re.findall(r'<a href="/ui/runs/(run-[\w-]+)">', page)

    status, first = await browser.page("/ui/history")
    assert status == 200
    assert listed(first) == [f"run-{n:02}" for n in range(55, 5, -1)]
    [older] = re.findall(r'<a id="next-page" href="([^"]+)">', first)
    status, second = await browser.page(older.replace("&amp;", "&"))
    assert status == 200
    assert listed(second) == [f"run-{n:02}" for n in range(5, -1, -1)] + ["run-x"]
    assert 'id="next-page"' not in second
    assert '<a id="first-page" href="/ui/history">' in second

    searches = {
        "alertname=DiskFull": ["run-x"],
        "target=Node/-/node-3": ["run-x"],
        "outcome=blocked&policy=application-down": ["run-42", "run-28", "run-14", "run-00"],
        "since=2027-01-15T08:50&until=2027-01-15T08:53": ["run-52", "run-51", "run-50"],
        "since=2027-01-15T08:53:00%2B00:00": ["run-55", "run-54", "run-53"],
        "alertname=Nothing": [],
    }
    for search, expected in searches.items():
        status, page = await browser.page(f"/ui/history?{search}")
        assert (status, listed(page)) == (200, expected), search
    filtered = (await browser.page("/ui/history?policy=high-cpu-usage"))[1]
    [older] = re.findall(r'<a id="next-page" href="([^"]+)">', filtered) or [""]
    assert older == ""  # 28 runs: one page
    assert 'value="high-cpu-usage"' in filtered

    for bad in ("outcome=fine", "since=yesterday", "cursor=bm9wZQ", "alertname=%00"):
        status, page = await browser.page(f"/ui/history?{bad}")
        assert status == 400, bad
        assert 'id="history-problem"' in page


async def test_approve_and_reject_go_through_the_desk_as_the_console_with_the_persons_name(
    browser: Browser, store: Store
) -> None:
    first = await pending_request(store, "a1b2c3d4")
    second = await pending_request(store, "e5f6a7b8")
    third = await pending_request(store, "c0ffee00")
    await browser.sign_in(TOKENS[VERA])
    page = (await browser.page("/ui/approvals"))[1]
    assert page.count('class="request"') == 3
    assert "would restart deployment prod/api" in page  # what it shows: the change
    assert "answered 503" in page  # the diagnostics
    assert 'class="answer-form"' not in page  # a viewer reads
    assert (await browser.post(f"/ui/approvals/{first.id}", {"decision": "approve"})).status == 403

    await browser.sign_in(TOKENS[ALICE])
    approved = await browser.post(
        f"/ui/approvals/{first.id}",
        {"decision": "approve", "note": "go"},
        token_from="/ui/approvals",
    )
    assert approved.status == 303
    assert approved.headers["Location"] == f"/ui/approvals?answered={first.id}&result=approved"
    rejected = await browser.post(f"/ui/approvals/{second.id}", {"decision": "reject"})
    assert rejected.headers["Location"].endswith("result=rejected")
    again = await browser.post(f"/ui/approvals/{first.id}", {"decision": "approve"})
    assert again.headers["Location"].endswith("result=closed")
    await browser.sign_in(TOKENS[MALLORY])  # an operator, not an approver of these
    refused = await browser.post(f"/ui/approvals/{third.id}", {"decision": "approve"})
    assert refused.headers["Location"].endswith("result=not-approver")
    unknown = await browser.post("/ui/approvals/nope", {"decision": "approve"})
    assert unknown.headers["Location"].endswith("result=unknown")
    odd = await browser.post(f"/ui/approvals/{third.id}", {"decision": "cancel"})
    assert odd.headers["Location"].endswith("result=bad")

    answered = {a.id: a for a in [await store.approval(r.id) for r in (first, second, third)] if a}
    assert answered[first.id].state == ApprovalState.APPROVED
    assert [(a.who, a.via, a.verdict, a.note) for a in answered[first.id].answers] == [
        (ALICE, "console", Verdict.APPROVE, "go"),
        (ALICE, "console", Verdict.REFUSED, answered[first.id].answers[1].note),
    ]
    assert answered[second.id].state == ApprovalState.REJECTED
    assert answered[third.id].state == ApprovalState.PENDING
    assert [(a.who, a.via, a.verdict) for a in answered[third.id].answers] == [
        (MALLORY, "console", Verdict.REFUSED)
    ]
    status, page = await browser.page(f"/ui/approvals?answered={third.id}&result=not-approver")
    assert status == 200
    assert "you are not an approver of this request" in page
    assert page.count('class="request"') == 1
    assert page.count('class="decided-request"') == 2


async def resolved(store: Store, fingerprint: str, began: datetime, after: timedelta) -> None:
    alert = webhook_alert(
        {"alertname": "ApplicationDown"},
        fingerprint=fingerprint,
        starts_at=began.isoformat(),
        status="resolved",
        ends_at=(began + after).isoformat(),
    )
    await store.record_notification(Notification.model_validate(webhook(alert)), b"{}", began)


def section(page: str, policy: str) -> str:
    start = page.index(f'<section class="policy" id="policy-{policy}">')
    return page[start : page.index("</section>", start)]


async def test_policies_show_the_ledger_plots_breakers_budgets_and_demotions(
    browser: Browser, store: Store, live_policies: LivePolicies
) -> None:
    day = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    for n, (outcome, began, lasted) in enumerate(
        [
            (RunOutcome.SUCCEEDED, day - timedelta(days=3), timedelta(minutes=2)),
            (RunOutcome.SUCCEEDED, day - timedelta(days=3, hours=-2), timedelta(minutes=4)),
            (RunOutcome.FAILED, day - timedelta(days=2), timedelta(minutes=30)),
        ]
    ):
        await firing(store, f"fp-mem-{n}", began)
        await resolved(store, f"fp-mem-{n}", began, lasted)
        run = await decided(
            store,
            f"fp-mem-{n}",
            began,
            outcome,
            policy="high-memory-usage",
            target=f"Deployment/prod/api-{n}",
            finished_at=began + timedelta(minutes=1),
        )
        if outcome is RunOutcome.FAILED:
            page_entry = OutboxEntry(
                id=f"page-{n}",
                channel="slack",
                action="trigger",
                dedup_key=f"k{n}",
                remediation_id=run.id,
                message={},
                created_at=began,
                next_attempt_at=began,
            )
            await store.enqueue([page_entry])
    await store.demote(Demotion("application-down", "rev-1", "1 of 8 runs effective", day))
    guards = browser.client.app[GUARDS]
    plan = memory_plan(live_policies.current)
    for _ in range(2):
        admitted = await guards.admit(plan)
        assert isinstance(admitted, Admitted)
        await guards.finish(plan, admitted, succeeded=False)
        await guards.count_recurrence(plan, admitted.run_id)
    live_policies.last_error = "1 error, first: high-cpu-usage.yaml:12: steps: unknown action"

    await browser.sign_in(TOKENS[VERA])
    status, page = await browser.page("/ui/policies")
    assert status == 200
    assert "high-cpu-usage.yaml:12: steps: unknown action" in page
    memory = section(page, "high-memory-usage")
    assert cells(memory, "num runs") == ["3"]
    assert cells(memory, "num share") == ["67%"]
    assert memory.count('<svg class="plot"') == 3
    assert memory.count('<rect class="bar"') == 2
    assert "<td>2 min / 4 min</td>" in memory  # remediated: p50 / p90
    assert "<td>30 min / 30 min</td>" in memory  # escalated
    assert f"{plan.breaker_key} open" in memory
    assert "0 of 2 per 1 h" in memory  # its rate limit's budget left
    demoted = section(page, "application-down")
    assert "demoted: asks first" in demoted
    assert "1 of 8 runs effective" in demoted
    assert "promote-form" not in demoted  # a viewer reads
    assert "no-runs" in section(page, "high-cpu-usage")
    refused = await browser.post("/ui/policies/application-down/promote", token_from="/ui/policies")
    assert refused.status == 403

    await browser.sign_in(TOKENS[ALICE])
    assert 'id="promote-application-down"' in (await browser.page("/ui/policies"))[1]
    promoted = await browser.post(
        "/ui/policies/application-down/promote", token_from="/ui/policies"
    )
    assert promoted.headers["Location"] == ("/ui/policies?policy=application-down&result=promoted")
    demotion = await store.demotion("application-down")
    assert demotion is not None
    assert demotion.promoted_by == ALICE
    [audited, *_] = await store.audit_log(1)
    assert (audited.kind, audited.subject, audited.detail) == (
        "promotion",
        "application-down",
        {"by": ALICE},
    )
    page = (await browser.page("/ui/policies?policy=application-down&result=promoted"))[1]
    assert "demoted: asks first" not in section(page, "application-down")
    again = await browser.post("/ui/policies/application-down/promote", token_from="/ui/policies")
    assert again.headers["Location"].endswith("result=not-demoted")
    unknown = await browser.post("/ui/policies/nope/promote", token_from="/ui/policies")
    assert unknown.headers["Location"].endswith("result=unknown")


SCRIPT = "<script>alert(1)</script>"
QUOTES = "\"'><img src=x onerror=alert(1)>"
TEMPLATE = "{{ 7*7 }}{% if true %}pwned{% endif %}"


async def test_hostile_labels_annotations_and_data_render_as_text_on_every_page(
    browser: Browser, store: Store
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    await pending_request(store, "feedf00d", requested_at=at - timedelta(minutes=1))
    await firing(
        store,
        "fp-hostile",
        at,
        alertname=SCRIPT,
        instance=QUOTES,
        namespace=TEMPLATE,
        summary=SCRIPT + QUOTES + TEMPLATE,
    )
    run = await decided(
        store,
        "fp-hostile",
        at,
        RunOutcome.BLOCKED,
        alertname=SCRIPT,
        guard=QUOTES,
        reason=f"refused: {SCRIPT} {TEMPLATE}",
        target=f"Deployment/{QUOTES}/{TEMPLATE}",
        policy=TEMPLATE,
        policy_revision=QUOTES,
    )
    await store.record_step(
        StepRecord(
            run.id,
            "steps",
            0,
            SCRIPT,
            QUOTES,
            "failed",
            SCRIPT,
            {"body": SCRIPT, "params": {"name": QUOTES, TEMPLATE: TEMPLATE}},
            1,
            at,
            at,
        )
    )
    request = await store.approval("feedf00d")
    assert request is not None
    await store.request_approval(
        replace(
            request,
            id="hostile-ask",
            remediation_id=run.id,
            target=SCRIPT,
            step=QUOTES,
            params={"x": TEMPLATE},
            shown={"change": SCRIPT, "diagnostics": {QUOTES: SCRIPT}},
        )
    )
    await store.record_answer(
        ApprovalAnswer("hostile-ask", SCRIPT, "api", Verdict.REFUSED, QUOTES, at)
    )
    await browser.sign_in(TOKENS[ALICE])
    await browser.post("/ui/control/pause", {"reason": SCRIPT + QUOTES + TEMPLATE})

    pages = [
        "/ui/",
        f"/ui/runs/{run.id}",
        "/ui/history",
        f"/ui/history?alertname={quote(SCRIPT)}&target={quote(QUOTES)}&policy={quote(TEMPLATE)}",
        "/ui/approvals",
        f"/ui/approvals?answered={quote(SCRIPT)}&result=closed",
        "/ui/control",
        "/ui/policies",
        f"/ui/runs/{quote(SCRIPT, safe='')}",
    ]
    for path in pages:
        status, page = await browser.page(path)
        assert status in (200, 404), path
        assert "<script" not in page.lower(), path
        assert "<img" not in page, path
        assert "onerror=alert(1)>" not in page, path
    for path in pages[:7]:
        page = (await browser.page(path))[1]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    for path in (pages[0], pages[1], pages[3]):
        page = (await browser.page(path))[1]
        assert "{{ 7*7 }}{% if true %}pwned{% endif %}" in page, path
        assert "&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;" in page, path
    browser.sign_out()
    spaced, quoted = quote("/ui/" + QUOTES), quote('/ui/?q="><b>')
    status, page = await browser.page(f"/ui/login?next={spaced}")
    assert status == 200
    assert 'name="next" value="/ui/"' in page  # spaces: not a page of the console's
    status, page = await browser.page(f"/ui/login?next={quoted}")
    assert 'name="next" value="/ui/?q=&#34;&gt;&lt;b&gt;"' in page


class CountingStore:
    """The real store, counting the calls each page makes to it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return found(*args, **kwargs)

        return counted


async def fill(store: Store, count: int, at: datetime) -> Remediation:
    """`count` alerts firing, each decided, with `count` steps, messages and approval
    requests on the last run."""
    for n in range(count):
        await firing(store, f"fp-{count}-{n}", at + timedelta(seconds=n), instance=f"i-{n}")
        run = await decided(store, f"fp-{count}-{n}", at + timedelta(seconds=n), RunOutcome.FAILED)
    for n in range(count):
        await store.record_step(
            StepRecord(run.id, "steps", n, None, "http.check", "ok", "200", {}, 1, at, at)
        )
        await store.enqueue(
            [OutboxEntry(f"m-{count}-{n}", "slack", "trigger", "k", run.id, {}, at, at)]
        )
    return run


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_each_page_reads_the_store_a_fixed_number_of_times_however_many_rows(
    database_url: str, live_policies: LivePolicies, tmp_path: Path
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    counts = []
    for rows in (1, 25):
        opened = await open_store(f"sqlite:///{tmp_path / f'{rows}.db'}")
        for n in range(rows):
            await pending_request(opened, f"ask-{n}", requested_at=at)
        run = await fill(opened, rows, at)
        counting = CountingStore(opened)
        settings = Settings(
            database_url=database_url, webhook_token="s3cret", api_token=OPERATOR_TOKEN
        )
        parts = Parts.of(settings, counting, live_policies, Metrics())  # type: ignore[arg-type]
        async with TestClient(TestServer(parts.application())) as client:
            browser = Browser(client)
            await browser.sign_in(OPERATOR_TOKEN)
            calls = {}
            for path in (
                "/ui/",
                f"/ui/runs/{run.id}",
                "/ui/history",
                "/ui/policies",
                "/ui/approvals",
                "/ui/control",
            ):
                counting.calls.clear()
                status, page = await browser.page(path)
                assert status == 200, path
                calls[path.split("/")[2] or "now"] = len(counting.calls)
                if path == "/ui/":
                    assert page.count('<tr class="alert">') == rows + rows  # the asks' too
            counts.append(calls)
        await opened.close()
    few, many = counts
    assert few == many
    assert many == {
        "now": 2,  # the pause, the alerts with their latest runs
        "runs": 6,  # the pause, the run, its steps, approvals, messages, alert
        "history": 2,
        "policies": 4,  # the pause, the ledger, demotions, the guards' runs of the week
        "approvals": 3,
        "control": 2,
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_policies_ledger_is_counted_at_most_once_a_minute_and_nobody_waits_for_it(
    database_url: str, store: Store, live_policies: LivePolicies
) -> None:
    clock = Clock(datetime.now(UTC).timestamp())
    counting = CountingStore(store)
    settings = Settings(database_url=database_url, webhook_token="s3cret", api_token="ops-token")
    parts = Parts.of(settings, counting, live_policies, Metrics(), clock=clock)  # type: ignore[arg-type]
    async with TestClient(TestServer(parts.application())) as client:
        browser = Browser(client)
        await browser.sign_in("ops-token")
        for _ in range(3):
            assert (await browser.page("/ui/policies"))[0] == 200
        assert counting.calls.count("ledger_since") == 1
        await browser.page("/ui/policies?days=30")  # another period: counted on its own
        assert counting.calls.count("ledger_since") == 2
        first = counted_at((await browser.page("/ui/policies"))[1])
        clock.advance(59)
        await browser.page("/ui/policies")
        assert counting.calls.count("ledger_since") == 2
        clock.advance(1)
        # A minute old: shown as it is, and counted again meanwhile, not while the page waits.
        assert counted_at((await browser.page("/ui/policies"))[1]) == first

        async def counted_again() -> bool:
            return counting.calls.count("ledger_since") == 3

        await eventually(counted_again, what="the ledger to be counted again", timeout=10)
        assert counted_at((await browser.page("/ui/policies"))[1]) != first
        assert counting.calls.count("ledger_since") == 3


def counted_at(page: str) -> str:
    found = re.search(r'<span id="counted-at">(.*?)</span>', page)
    assert found is not None
    return found.group(1)


async def test_a_run_decided_without_a_plan_shows_its_escalation(
    browser: Browser, store: Store
) -> None:
    at = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    await firing(store, "fp-lone", at)
    run = Remediation(
        id="no-match",
        event_id=1,
        fingerprint="fp-lone",
        starts_at=at,
        alertname="Unknown",
        kind="firing",
        policy=None,
        policy_revision=None,
        outcome=RunOutcome.NO_MATCH,
        guard=None,
        reason="no policy matched",
        run_id=None,
        target=None,
        plan=PlanSummary.escalation_only(
            Escalation("P2", ("slack", "email"), page_while_remediating=False)
        ),
        started_at=at,
    )
    await store.save_remediation(run)
    await browser.sign_in(TOKENS[VERA])
    status, page = await browser.page("/ui/runs/no-match")
    assert status == 200
    assert '<dd id="run-plan">P2; escalates to slack, email</dd>' in page
    assert '<dd id="run-policy">no policy matched</dd>' in page
    assert 'id="no-steps"' in page
