"""The operator console as a person uses it: a real headless Chromium against the service.

One service process for the module (`remediator serve`, live mode, PostgreSQL), holding the
history a real Alertmanager run made: the real `prometheus-alertmanager` binary posts three
alerts to it. Two are AppDown on a loopback stand-in, whose policy checks the application's
health and then asks approval (`approval: {approvers: [operator]}`) before its fix, a PUT to
the stand-in; one of them carries hostile labels (`<img src=x onerror=...>`, `<script>`). The
third matches no policy and is escalated. One browser signs in with REMEDIATOR_API_TOKEN's
token (the identity `operator`) and the tests share it: each page opens without a console
error (a CSP violation is one), the hostile labels show as text and run nothing, Control
pauses and resumes, and an approval given on the Approvals page lets the run go on: the
stand-in receives the fix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from remediator.engine.outcome import RunOutcome
from remediator.store import ApprovalState, Remediation, Store, open_store
from tests.support.alertmanager import (
    ALERTMANAGER_CONFIG,
    find_alertmanager,
    post_to_alertmanager,
    running_alertmanager,
)
from tests.support.approvals import approved_first
from tests.support.browser import WatchedPage, headless_chromium, new_context
from tests.support.service_process import OPERATOR_TOKEN, ServiceProcess, eventually
from tests.support.services import postgres_schema
from tests.support.world import Application, write_policies

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = "<script>alert('pwned-html')</script>"
WEBHOOK_TOKEN = "s3cret"  # what ALERTMANAGER_CONFIG sends


@dataclass(frozen=True)
class History:
    """What the Alertmanager run left in the store: the runs the tests look at."""

    shop: Remediation  # AppDown on app=shop, awaiting approval of its fix
    hostile: Remediation  # AppDown with hostile labels, awaiting approval too
    unmatched: Remediation  # no policy: escalated


@dataclass(frozen=True)
class Console:
    service: ServiceProcess
    store: Store
    application: Application  # the stand-in the policy checks and fixes
    history: History
    browser: Browser
    signed_in: BrowserContext  # the operator's session

    def url(self, path: str) -> str:
        return f"{self.service.url}{path}"


def alerts(instance: str) -> list[dict[str, str]]:
    return [
        {"alertname": "AppDown", "app": "shop", "instance": instance, "severity": "critical"},
        {
            "alertname": "AppDown",
            "app": HOSTILE_IMG,
            "instance": instance,
            "service": HOSTILE_SCRIPT,
            "severity": "critical",
        },
        {"alertname": "DiskFillingUp", "instance": "db-0:9100", "severity": "warning"},
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    tmp_path = tmp_path_factory.mktemp("console")
    application = Application()  # unhealthy: its health check fails, so the fix is wanted
    policies = write_policies(tmp_path / "policies", approved_first("{approvers: [operator]}"))
    async with (
        TestServer(application.routes()) as stand_in,
        postgres_schema() as database_url,
        headless_chromium() as browser,
    ):
        service = await ServiceProcess.start(
            tmp_path,
            database_url=database_url,
            webhook_token=WEBHOOK_TOKEN,
            mode="live",
            policies=str(policies),
        )
        store = await open_store(database_url)
        config = tmp_path / "alertmanager.yml"
        config.write_text(ALERTMANAGER_CONFIG.format(url=service.url))
        try:
            with running_alertmanager(find_alertmanager(), config, tmp_path) as alertmanager:
                history = await alertmanager_run(alertmanager, store, f"127.0.0.1:{stand_in.port}")
                context = await new_context(browser)
                await sign_in(context, service.url)
                yield Console(service, store, application, history, browser, context)
                await context.close()
        finally:
            await store.close()
            assert service.stop() == 0, service.log_path.read_text()


async def alertmanager_run(alertmanager: str, store: Store, instance: str) -> History:
    """The real Alertmanager posts the alerts; wait until the service has decided each."""
    now = datetime.now(UTC)
    await post_to_alertmanager(
        alertmanager, now + timedelta(hours=1), alerts(instance), starts_at=now
    )

    async def decided() -> bool:
        runs = await store.list_remediations(10)
        waiting = [r for r in runs if r.outcome is RunOutcome.AWAITING_APPROVAL]
        return len(waiting) == 2 and any(r.alertname == "DiskFillingUp" for r in runs)

    await eventually(decided, what="the service to decide the three alerts", timeout=60)
    runs = {r.target or r.alertname: r for r in await store.list_remediations(10)}
    shop = next(r for key, r in runs.items() if key.endswith("/shop"))
    hostile = next(r for key, r in runs.items() if HOSTILE_IMG in key)
    return History(shop, hostile, runs["DiskFillingUp"])


async def sign_in(context: BrowserContext, url: str, following: str = "/ui/") -> None:
    """The sign-in page, as a person fills it in: the token, then Sign in. The context keeps
    the session cookie."""
    watched = await WatchedPage.open(context)
    await watched.goto(f"{url}/ui/login?next={following}")
    await watched.page.fill("#token", OPERATOR_TOKEN)
    await watched.page.click("#login")
    await watched.page.wait_for_url(f"{url}{following}")
    assert watched.problems == []
    await watched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tab(console: Console) -> AsyncIterator[WatchedPage]:
    """A new tab of the operator's session, closed after the test."""
    watched = await WatchedPage.open(console.signed_in)
    yield watched
    await watched.close()


PAGES = [
    pytest.param("/ui/", "#firing", id="now"),
    pytest.param("/ui/history", "#runs", id="history"),
    pytest.param("/ui/policies", "#policy-probe-and-fix", id="policies"),
    pytest.param("/ui/approvals", "section.request", id="approvals"),
    pytest.param("/ui/control", "#pause-state", id="control"),
]


@pytest.mark.parametrize(("path", "landmark"), PAGES)
async def test_each_page_opens_with_no_console_error(
    console: Console, tab: WatchedPage, path: str, landmark: str
) -> None:
    await tab.goto(console.url(path))
    await tab.page.wait_for_selector(landmark)
    assert await tab.page.inner_text("#who-name") == "operator"
    assert tab.problems == []


@pytest.mark.parametrize(
    ("which", "shown"),
    [
        pytest.param("shop", "http.check", id="awaiting-approval"),
        pytest.param("unmatched", "no policy matched", id="escalated-without-policy"),
    ],
)
async def test_a_run_page_opens_with_no_console_error(
    console: Console, tab: WatchedPage, which: str, shown: str
) -> None:
    run = getattr(console.history, which)
    await tab.goto(console.url(f"/ui/runs/{run.id}"))
    assert shown in await tab.page.inner_text("#main")
    assert tab.problems == []


async def test_a_page_asks_a_person_to_sign_in_first_and_returns_there(console: Console) -> None:
    context = await new_context(console.browser)
    try:
        watched = await WatchedPage.open(context)
        await watched.goto(console.url("/ui/history"))
        assert watched.page.url.startswith(console.url("/ui/login"))
        await watched.page.fill("#token", "not-a-token")
        await watched.page.click("#login")
        await watched.page.wait_for_selector("#login-problem")
        await watched.page.fill("#token", OPERATOR_TOKEN)
        await watched.page.click("#login")
        await watched.page.wait_for_url(console.url("/ui/history"))
        # The refused sign-in answered 401: Chromium logs that one resource failed to load.
        assert [p for p in watched.problems if "401" not in p] == []
    finally:
        await context.close()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/ui/", id="now"),
        pytest.param("/ui/history", id="history"),
        pytest.param("/ui/approvals", id="approvals"),
        pytest.param("/ui/runs/{hostile}", id="run"),
    ],
)
async def test_hostile_labels_render_as_text(console: Console, tab: WatchedPage, path: str) -> None:
    await tab.goto(console.url(path.format(hostile=console.history.hostile.id)))
    body = await tab.page.inner_text("body")
    assert HOSTILE_IMG in body
    assert await tab.page.locator('img[src="x"]').count() == 0
    scripts = await tab.page.locator("script").all_inner_texts()
    assert not [s for s in scripts if "pwned" in s]
    if path in ("/ui/", "/ui/runs/{hostile}"):  # the pages that show every label
        assert HOSTILE_SCRIPT in body
    assert tab.dialogs == []
    assert tab.problems == []


async def test_pause_then_resume_from_the_control_page(console: Console, tab: WatchedPage) -> None:
    await tab.goto(console.url("/ui/control"))
    await tab.page.fill("#reason", "browser test: deploy freeze")
    await tab.page.click("#pause")
    await tab.page.wait_for_selector("#resume")
    assert await tab.page.inner_text("#paused-by") == "operator"
    assert await tab.page.inner_text("#paused-reason") == "browser test: deploy freeze"
    assert "browser test: deploy freeze" in await tab.page.inner_text("#paused-banner")
    paused = await console.store.pause()
    assert paused is not None
    assert (paused.paused_by, paused.reason) == ("operator", "browser test: deploy freeze")

    await tab.page.click("#resume")
    await tab.page.wait_for_selector("#pause")
    assert await tab.page.locator("#paused-banner").count() == 0
    assert await console.store.pause() is None
    switches = await tab.page.locator("#switches tr.switch").all_inner_texts()
    assert [s.split("\t")[1:3] for s in switches[:2]] == [
        ["resume", "operator"],
        ["pause", "operator"],
    ]
    assert tab.problems == []


async def test_an_approval_from_the_approvals_page_lets_the_run_make_its_change(
    console: Console, tab: WatchedPage
) -> None:
    run = console.history.shop
    [request] = [
        r
        for r in await console.store.approvals(ApprovalState.PENDING, 10)
        if r.remediation_id == run.id
    ]
    assert "fix" not in [hook for hook, _ in console.application.calls]
    await tab.goto(console.url("/ui/approvals"))
    await tab.page.fill(f"#note-{request.id}", "browser test: go ahead")
    await tab.page.click(f"#approve-{request.id}")
    await tab.page.wait_for_selector("#answer-result")
    assert await tab.page.locator(f"#approval-{request.id}").count() == 0  # no longer waiting

    async def fixed() -> bool:
        return "fix" in [hook for hook, _ in console.application.calls]

    await eventually(fixed, what="the approved fix to reach the stand-in")
    assert console.application.calls[-1] == ("fix", {"mode": "safe"})

    async def going_on() -> bool:
        found = await console.store.remediation(run.id)
        return found is not None and found.outcome is RunOutcome.VERIFYING

    await eventually(going_on, what="the approved run to verify its fix")
    await tab.goto(console.url(f"/ui/runs/{run.id}"))
    steps = await tab.page.inner_text("#steps")
    assert re.search(r"http\.request", steps)
    assert tab.problems == []
