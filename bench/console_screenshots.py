"""Screenshots of the console's main pages, for the README: docs/console/*.png.

Run it from the repository root (PostgreSQL and Debian's chromium needed):

    .venv/bin/python bench/console_screenshots.py                 # into docs/console
    .venv/bin/python bench/console_screenshots.py --runs 5000 --out /tmp/shots

The pages show a month of history, as the console benchmark seeds it (bench/console_history.py:
--runs runs over 30 days, 20 policies, the newest alerts still firing, some awaiting
approval) in a fresh schema of --database-url, dropped afterwards. The service runs in
dry-run on a free loopback port; headless Chromium (tests/support/browser.py: the machine's
own, driven by Playwright) signs in with the operator's token and saves each page's first
screen, 1280 pixels wide (the Run page whole: its steps are below). A page that logs a
console error stops the script.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.browser import WatchedPage, headless_chromium, new_context  # noqa: E402

from console import TOKEN, spawn  # noqa: E402
from console_history import seed, write_policies  # noqa: E402
from intake import is_healthy, postgres_schema, started  # noqa: E402

# name, path ({run}: a failed run's id), what the page must show before it is taken
PAGES = (
    ("now", "/ui/", "#firing"),
    ("history", "/ui/history", "#runs"),
    ("run", "/ui/runs/{run}", "#steps"),
    ("policies", "/ui/policies?days=30", "section.policy"),
    ("approvals", "/ui/approvals", "section.request"),
    ("control", "/ui/control", "#pause-state"),
)


async def take(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="remediator-screenshots-") as workdir:
        logs = Path(workdir)
        async with postgres_schema(args.database_url) as (_, database_url):
            tables = await seed(database_url, args.runs)
            failed = next(row[0] for row in reversed(tables.remediations) if row[8] == "failed")
            service = spawn(database_url, write_policies(logs / "policies"), logs)
            async with started(service, is_healthy), headless_chromium() as browser:
                context = await new_context(browser)
                page = await WatchedPage.open(context)
                await page.goto(f"{service.url}/ui/login")
                await page.page.fill("#token", TOKEN)
                await page.page.click("#login")
                await page.page.wait_for_url(f"{service.url}/ui/")
                for name, path, shown in PAGES:
                    await page.goto(service.url + path.format(run=failed))
                    await page.page.wait_for_selector(shown)
                    whole = name == "run"  # its steps are below the first screen
                    await page.page.screenshot(path=str(out / f"{name}.png"), full_page=whole)
                    print(f"{out / name}.png")
                if page.problems:
                    raise RuntimeError(f"the pages said: {page.problems}")
                await context.close()
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=20_000, help="runs in the month shown")
    parser.add_argument("--out", default=str(ROOT / "docs" / "console"))
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(take(parse_args(None))))
