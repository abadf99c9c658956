"""A real browser for the console's tests: Debian's headless Chromium, driven by Playwright.

Playwright launches the machine's own Chromium (`/usr/bin/chromium`, from `apt-get install
chromium`; REMEDIATOR_TEST_CHROMIUM names another): its own browser download is never used.
Without Chromium or Playwright the browser tests skip, saying how to get them; with CI=true
they fail (tests/support/services.py `missing_service`).

A `WatchedPage` keeps everything the page said besides what it shows: console messages,
uncaught errors (a script that threw), failed requests and dialogs (an `alert()` a hostile
label ran). A Content-Security-Policy violation is a console error in Chromium, so a page
whose own script or style the policy refuses shows up here too.

bench/console_screenshots.py uses the same browser for the README's pictures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.support.services import missing_service

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Page,
        Response,
    )

WAIT_MS = 10_000  # for an element or a navigation: a page that takes longer has failed


def chromium_executable() -> str:
    """The machine's Chromium; a missing one skips (fails in CI)."""
    named = os.environ.get("REMEDIATOR_TEST_CHROMIUM")
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing_service("Chromium", "install Debian's with `apt-get install chromium`")
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for a module's tests."""
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing_service("Playwright", "install the dev extra: `pip install -e '.[dev]'`")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(browser: Browser) -> BrowserContext:
    """A fresh profile (no cookies) with a laptop's window: what a person opens."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    return context


@dataclass
class WatchedPage:
    """A tab and what it said: console messages, uncaught errors, failed requests, dialogs."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, context: BrowserContext) -> WatchedPage:
        watched = cls(await context.new_page())
        watched.page.on("console", watched._console)
        watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
        watched.page.on(
            "requestfailed",
            lambda request: watched.failed.append(f"{request.url}: {request.failure}"),
        )

        async def dismiss(dialog: Dialog) -> None:
            watched.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        watched.page.on("dialog", dismiss)
        return watched

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text} ({message.location})")

    @property
    def problems(self) -> list[str]:
        """Everything a person would not want a page to say: empty for a clean page."""
        return [
            *self.console,
            *(f"uncaught: {e}" for e in self.errors),
            *(f"request failed: {f}" for f in self.failed),
            *(f"dialog: {d}" for d in self.dialogs),
        ]

    async def goto(self, url: str) -> Response:
        """Open `url` and wait until the page has loaded; it must answer 2xx."""
        response = await self.page.goto(url, wait_until="load")
        assert response is not None, f"no response for {url}"
        assert response.ok, f"{url} answered {response.status}: {await response.text()}"
        return response

    async def close(self) -> None:
        await self.page.close()
