"""Who may look at the console: a session of its own (a token pasted once, a signed cookie
with an expiry, checked again at every request) or a trusted proxy's header, believed only
from the proxies' addresses; a form's token is bound to the person it was given to."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from remediator.config import Settings
from remediator.console.people import SESSION_COOKIE
from remediator.metrics import Metrics
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import Parts
from remediator.store import Store
from tests.support.approval_requests import ALICE, TOKENS, VERA, sha256, write_users
from tests.support.clocks import Clock
from tests.support.console import Browser

PAT = "pat@example.com"  # in the users file without a token: signs in through the proxy only
HEADER = "X-Forwarded-Email"
SECRET = "0123456789abcdef0123456789abcdef"


def users_file(path: Path) -> Path:
    """Alice (operator) and vera (viewer) with their tokens; pat, an operator, with none."""
    listed = [
        {"name": ALICE, "role": "operator", "token_sha256": sha256(TOKENS[ALICE])},
        {"name": VERA, "role": "viewer", "token_sha256": sha256(TOKENS[VERA])},
        {"name": PAT, "role": "operator"},
    ]
    path.write_text(yaml.safe_dump({"users": listed}))
    return path


Opened = Callable[..., Any]


@pytest.fixture
def console(database_url: str, store: Store, live_policies: LivePolicies, tmp_path: Path) -> Opened:
    """A console over the test's store with these settings (and this clock)."""

    @asynccontextmanager
    async def opened(
        clock: Callable[[], float] = time.time, **settings: Any
    ) -> AsyncIterator[Browser]:
        chosen = Settings(
            database_url=database_url,
            webhook_token="s3cret",
            users_file=users_file(tmp_path / "users.yaml"),
            **settings,
        )
        parts = Parts.of(chosen, store, live_policies, Metrics(), clock=clock)
        async with TestClient(TestServer(parts.application())) as client:
            yield Browser(client)

    return opened


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_trusted_proxys_header_names_the_person_and_the_users_file_their_role(
    console: Opened, store: Store
) -> None:
    async with console(
        console_trusted_header=HEADER, console_trusted_proxies="10.0.0.0/8,127.0.0.1/32"
    ) as browser:
        for name, role in [
            (ALICE, "operator"),
            (PAT, "operator"),
            ("nobody@example.com", "viewer"),
        ]:
            status, page = await browser.page("/ui/", **{HEADER: name})
            assert status == 200, name
            assert f'<span id="who-name">{name}</span>' in page
            assert f'<span id="who-role" class="role">{role}</span>' in page
            assert 'id="logout-form"' not in page  # signed out at the proxy
        assert (await browser.page("/ui/"))[0] == 303  # no header: sign in here

        token = await _form_token(browser, PAT)
        paused = await browser.post(
            "/ui/control/pause",
            {"reason": "freeze", "csrf": token},
            token_from=None,
            **{HEADER: PAT},
        )
        assert paused.status == 303
        pause = await store.pause()
        assert pause is not None
        assert pause.paused_by == PAT
        # A form token is the person's own: alice's form cannot be posted as pat.
        alices = await _form_token(browser, ALICE)
        refused = await browser.post(
            "/ui/control/resume", {"csrf": alices}, token_from=None, **{HEADER: PAT}
        )
        assert refused.status == 403
        viewer = await browser.post(
            "/ui/control/resume", {"csrf": token}, token_from=None, **{HEADER: "nobody@example.com"}
        )
        assert viewer.status == 403
        assert await store.pause() is not None


async def _form_token(browser: Browser, name: str) -> str:
    response = await browser.client.get("/ui/control", headers={HEADER: name})
    text = await response.text()
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_header_is_ignored_from_an_address_that_is_not_a_trusted_proxy(
    console: Opened,
) -> None:
    async with console(
        console_trusted_header=HEADER, console_trusted_proxies="10.0.0.0/8"
    ) as browser:
        status, _ = await browser.page("/ui/", **{HEADER: ALICE})
        assert status == 303  # to sign in: 127.0.0.1 is not 10.0.0.0/8
        await browser.sign_in(TOKENS[VERA])
        status, page = await browser.page("/ui/", **{HEADER: ALICE})
        assert status == 200
        assert f'<span id="who-name">{VERA}</span>' in page  # the session's, not the header's


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_person_without_a_token_cannot_sign_in_here(console: Opened) -> None:
    async with console() as browser:
        for pasted in ("", " ", PAT, sha256(TOKENS[ALICE])):
            assert (await browser.sign_in(pasted)).status == 401, pasted


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_session_ends_at_its_expiry(console: Opened) -> None:
    clock = Clock()
    async with console(clock=clock, console_session_hours=1) as browser:
        signed_in = await browser.sign_in(TOKENS[VERA])
        assert "Max-Age=3600" in signed_in.headers["Set-Cookie"]
        clock.advance(3599)
        assert (await browser.page("/ui/"))[0] == 200
        clock.advance(1)
        assert (await browser.page("/ui/"))[0] == 303


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_person_removed_from_the_users_file_or_given_another_role_is_so_at_once(
    console: Opened, tmp_path: Path
) -> None:
    async with console() as browser:
        await browser.sign_in(TOKENS[VERA])
        assert (await browser.page("/ui/"))[0] == 200
        write_users(
            tmp_path / "users.yaml",
            {VERA: "operator", ALICE: "operator", "bob@example.com": "viewer"},
        )
        page = (await browser.page("/ui/"))[1]
        assert '<span id="who-role" class="role">operator</span>' in page
        write_users(tmp_path / "users.yaml", {ALICE: "operator"})
        assert (await browser.page("/ui/"))[0] == 303


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_altered_cookie_or_another_secrets_is_refused_one_secret_serves_all_replicas(
    console: Opened,
) -> None:
    async with console(console_secret=SECRET) as first, console(console_secret=SECRET) as second:
        await first.sign_in(TOKENS[VERA])
        cookie = _session(first)
        second.client.session.cookie_jar.update_cookies(
            {SESSION_COOKIE: cookie}, URL(second.origin + "/ui/")
        )
        assert (await second.page("/ui/"))[0] == 200  # another replica, the same secret
        body, mac = cookie.split(".")
        forged = body.replace(body[5], "A" if body[5] != "A" else "B", 1) + "." + mac
        second.client.session.cookie_jar.update_cookies(
            {SESSION_COOKIE: forged}, URL(second.origin + "/ui/")
        )
        assert (await second.page("/ui/"))[0] == 303
    async with console() as drawn:  # a secret of its own, drawn at start
        drawn.client.session.cookie_jar.update_cookies(
            {SESSION_COOKIE: cookie}, URL(drawn.origin + "/ui/")
        )
        assert (await drawn.page("/ui/"))[0] == 303


def _session(browser: Browser) -> str:
    cookies = browser.client.session.cookie_jar.filter_cookies(URL(browser.origin + "/ui/"))
    return cookies[SESSION_COOKIE].value


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sign_out_ends_the_session_and_a_link_from_another_site_goes_round_once(
    console: Opened,
) -> None:
    async with console(api_token="ops-token") as browser:
        await browser.sign_in("ops-token")
        page = (await browser.page("/ui/"))[1]
        assert '<span id="who-name">operator</span>' in page
        signed_out = await browser.post("/ui/logout")
        assert (signed_out.status, signed_out.headers["Location"]) == (303, "/ui/login")
        assert (await browser.page("/ui/"))[0] == 303

        status, page = await browser.page("/ui/runs/abc?x=1", **{"Sec-Fetch-Site": "cross-site"})
        assert status == 200
        assert '<meta http-equiv="refresh" content="0;url=/ui/runs/abc?x=1">' in page
        status, _ = await browser.page("/ui/runs/abc?x=1", **{"Sec-Fetch-Site": "same-origin"})
        assert status == 303
