"""Benchmark of the operator console: each page's server time with 100,000 runs in PostgreSQL.

Run it from the repository root:

    .venv/bin/python bench/console.py                          # 100,000 runs, 200 requests a page
    .venv/bin/python bench/console.py --runs 10000 --requests 50 --json console.json

It makes a fresh schema `bench_<random>` in --database-url (dropped afterwards), lets the
store migrate it, and writes a month of history into it with COPY (bench/console_history.py:
--runs remediations over 30 days, from 50 alertnames, 20 policies and 500 targets, outcomes
mixed, their alerts, events, steps and messages; the newest episodes still firing, some
awaiting approval). Then it starts `python -m remediator serve` (dry-run, on a free loopback
port, with the 20 policies the history was made by) and signs in to the console once, as a
person does: the sign-in page's form with REMEDIATOR_API_TOKEN's token (the identity
`operator`), which sets the session cookie.

Each page is then requested --requests times (after --warmup requests; a page slower than
--page-seconds in all stops there, once 20 are timed), one after another on one keep-alive
connection, each request with its own values drawn from the history (another
run, another alertname, another target...). The time of a request is from sending it to the
whole body read: on loopback, with the connection open, that is the service's time to answer
plus well under a millisecond. "first" is the page's first request, a warm-up one: what it
costs before anything is cached (the Policies page counts the ledger at most once a minute
and period, so its later requests reuse that count). Last, once that count is more than a
minute old, Policies is requested 21 times more: the first finds the count stale (shown as it
is, made again in the background), the others come while it is made. The pages:

- Now `/ui/`, Run `/ui/runs/{id}` (a random run each time), Policies (its default 14 days,
  and 30), Approvals, Control;
- History: unfiltered, and filtered by alertname, target, policy, outcome, time (a random day),
  two filters at once, and a deep page: the page after the 50,000th run (half of --runs when
  fewer), reached once before timing by following each page's "Older" link from the first, as
  a person pages (the walk's time is printed too).

Target (issue #20): p95 under 100 ms for each page. The bench prints a table with PASS/FAIL;
`--json FILE` writes every figure. Client, service and PostgreSQL share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console_history import (  # noqa: E402
    ALERTNAMES,
    DAYS,
    POLICIES,
    TARGETS,
    Tables,
    policy_name,
    seed,
    target_key,
    write_policies,
)
from intake import (  # noqa: E402
    Server,
    free_port,
    is_healthy,
    percentile_ms,
    postgres_schema,
    progress,
    started,
)

TOKEN = "bench-operator"  # REMEDIATOR_API_TOKEN: the identity `operator`
TARGET_P95_MS = 100.0
STALE_AFTER_S = 62  # the console recounts a ledger a minute old (FRESH_SECONDS)
MIN_REQUESTS = 20  # measured before a page's time budget (--page-seconds) may end it
DEEP = 50_000  # the deep page starts after this many runs
OUTCOMES = ("succeeded", "failed", "blocked", "dry_run", "no_match", "rejected", "error")


@dataclass(frozen=True)
class Page:
    name: str
    url: Callable[[random.Random], str]  # a path under the service, drawn for each request


@dataclass
class Timing:
    page: str
    requests: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    first_ms: float  # the first request, a warm-up one: what nothing cached yet costs
    mean_bytes: int
    passed: bool


def history(**filters: str) -> str:
    return f"/ui/history?{urlencode(filters)}" if filters else "/ui/history"


def pages(tables: Tables, deep_page: str) -> list[Page]:
    """The console's pages, each request's values drawn from the seeded history."""
    run_ids = [row[0] for row in tables.remediations]
    policies = [policy_name(n) for n in range(POLICIES)]
    targets = [target_key(t) for t in range(TARGETS)]
    now = datetime.now(UTC)

    def day(r: random.Random) -> dict[str, str]:
        start = (now - timedelta(days=r.uniform(1, DAYS))).replace(microsecond=0)
        return {"since": start.isoformat(), "until": (start + timedelta(days=1)).isoformat()}

    return [
        Page("Now", lambda _: "/ui/"),
        Page("Run", lambda r: f"/ui/runs/{quote(r.choice(run_ids))}"),
        Page("History", lambda _: history()),
        Page("History by alertname", lambda r: history(alertname=r.choice(ALERTNAMES))),
        Page("History by target", lambda r: history(target=r.choice(targets))),
        Page("History by policy", lambda r: history(policy=r.choice(policies))),
        Page("History by outcome", lambda r: history(outcome=r.choice(OUTCOMES))),
        Page("History by time (a day)", lambda r: history(**day(r))),
        Page(
            "History by policy and outcome",
            lambda r: history(policy=r.choice(policies), outcome=r.choice(OUTCOMES)),
        ),
        Page("History, a deep page", lambda _: deep_page),
        Page("Policies", lambda _: "/ui/policies"),
        Page("Policies, 30 days", lambda _: "/ui/policies?days=30"),
        Page("Approvals", lambda _: "/ui/approvals"),
        Page("Control", lambda _: "/ui/control"),
    ]


# ---------------------------------------------------------------------------- the service


def spawn(database_url: str, policies: Path, logs: Path) -> Server:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("REMEDIATOR_")}
    env.update(
        REMEDIATOR_LISTEN=f"127.0.0.1:{port}",
        REMEDIATOR_DATABASE_URL=database_url,
        REMEDIATOR_POLICIES=str(policies),
        REMEDIATOR_API_TOKEN=TOKEN,
        REMEDIATOR_WEBHOOK_TOKEN="bench-webhook",
        REMEDIATOR_RETENTION_DAYS="365",  # the month seeded is never pruned meanwhile
        REMEDIATOR_LOG_LEVEL="warning",
    )
    return Server.spawn("service", ["-m", "remediator", "serve"], env, port, logs)


FORM_FIELD = re.compile(r'<input[^>]*name="(?P<name>[^"]+)"[^>]*value="(?P<value>[^"]*)"')


async def sign_in(session: aiohttp.ClientSession, url: str) -> None:
    """The sign-in page's form, posted as a browser posts it (its hidden fields, the token,
    the page's own Origin): the session cookie lands in the session's jar."""
    async with session.get(f"{url}/ui/login") as answer:
        form = await answer.text()
        assert answer.status == 200, form
    fields = {m["name"]: unescape(m["value"]) for m in FORM_FIELD.finditer(form)}
    fields["token"] = TOKEN
    async with session.post(
        f"{url}/ui/login", data=fields, headers={"Origin": url}, allow_redirects=False
    ) as answer:
        assert answer.status == 303, f"sign-in refused: {answer.status} {await answer.text()}"


NEXT_LINK = re.compile(r'<a[^>]*id="next-page"[^>]*href="(?P<href>[^"]+)"')
ROW = re.compile(r'<tr class="run"')


async def deep_page(session: aiohttp.ClientSession, url: str, depth: int) -> tuple[str, int]:
    """The History page after the `depth`-th run, reached as a person reaches it: from the
    first page, following each page's "Older" link (#next-page). Returns its path and how
    many pages were walked."""
    path, seen, walked = "/ui/history", 0, 0
    while seen < depth:
        async with session.get(url + path) as answer:
            page = await answer.text()
            assert answer.status == 200, page[:300]
        seen += len(ROW.findall(page))
        walked += 1
        following = NEXT_LINK.search(page)
        if following is None:
            raise RuntimeError(f"History ends after {seen} runs, before {depth}")
        path = unescape(following["href"])
        progress(f"History: walking to the page after run {depth:,}: {seen:,}")
    return path, walked


# ---------------------------------------------------------------------------- measuring


async def measure(
    session: aiohttp.ClientSession, url: str, page: Page, args: argparse.Namespace
) -> Timing:
    draw = random.Random(page.name)
    seconds: list[float] = []
    sizes: list[int] = []
    deadline = time.monotonic() + args.page_seconds
    first = 0.0
    for n in range(args.warmup + args.requests):
        if len(seconds) >= MIN_REQUESTS and time.monotonic() > deadline:
            break  # a slow page: enough requests for its percentiles, in bounded time
        path = page.url(draw)
        began = time.perf_counter()
        async with session.get(url + path, allow_redirects=False) as answer:
            body = await answer.read()
        took = time.perf_counter() - began
        first = took if n == 0 else first
        if answer.status != 200:
            raise RuntimeError(f"{page.name}: {path} answered {answer.status}: {body[:300]!r}")
        if n >= args.warmup:
            seconds.append(took)
            sizes.append(len(body))
        progress(f"{page.name}: {n + 1}/{args.warmup + args.requests}")
    p95 = percentile_ms(seconds, 0.95) or 0.0
    return Timing(
        page.name,
        len(seconds),
        percentile_ms(seconds, 0.50) or 0.0,
        p95,
        max(seconds) * 1000,
        first * 1000,
        sum(sizes) // len(sizes),
        p95 < TARGET_P95_MS,
    )


def table(timings: Sequence[Timing]) -> list[str]:
    lines = [
        "| page | requests | p50 ms | p95 ms | max ms | first ms | KiB | p95 < 100 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.page} | {t.requests} | {t.p50_ms:.1f} | {t.p95_ms:.1f} | {t.max_ms:.1f}"
        f" | {t.first_ms:.1f} | {t.mean_bytes / 1024:.1f} | {'PASS' if t.passed else 'FAIL'} |"
        for t in timings
    ]
    return lines


@dataclass(frozen=True)
class Walk:
    """The walk to History's deep page, by its "Older" links."""

    after_runs: int
    pages_walked: int
    seconds: float


async def time_pages(
    service: Server, tables: Tables, args: argparse.Namespace
) -> tuple[list[Timing], Walk, Stale | None]:
    """Sign in, walk to the deep page, then time every page on one keep-alive connection."""
    connector = aiohttp.TCPConnector(limit=1)
    jar = aiohttp.CookieJar(unsafe=True)  # the service is at 127.0.0.1
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        await sign_in(session, service.url)
        depth = min(DEEP, args.runs // 2)
        began = time.perf_counter()
        deep, walked = await deep_page(session, service.url, depth)
        walk = Walk(depth, walked, time.perf_counter() - began)
        print(
            f"walked {walked:,} History pages to the one after run {depth:,} in"
            f" {walk.seconds:.1f} s ({walk.seconds / walked * 1000:.1f} ms a page)"
        )
        timings = [await measure(session, service.url, page, args) for page in pages(tables, deep)]
        stale = await a_minute_later(session, service.url) if args.a_minute_later else None
    progress("")
    return timings, walk, stale


@dataclass(frozen=True)
class Stale:
    """Policies requested again once its count is more than a minute old."""

    first_ms: float  # the request that finds the count stale: shown as it is, recounted after
    p95_ms: float  # the requests after it, made while the count is made again
    max_ms: float
    requests: int


async def a_minute_later(session: aiohttp.ClientSession, url: str) -> Stale:
    """Wait until the Policies page's count is stale, then request the page 20 times: nobody
    waits for the recount (`console/ledger_counts.py`)."""
    for second in range(STALE_AFTER_S):
        progress(f"waiting for the Policies count to be a minute old: {second}/{STALE_AFTER_S} s")
        await asyncio.sleep(1)
    took = []
    for _ in range(21):
        began = time.perf_counter()
        async with session.get(f"{url}/ui/policies", allow_redirects=False) as answer:
            await answer.read()
        took.append(time.perf_counter() - began)
        if answer.status != 200:
            raise RuntimeError(f"Policies answered {answer.status} a minute later")
    after = took[1:]
    return Stale(took[0] * 1000, percentile_ms(after, 0.95) or 0.0, max(after) * 1000, len(after))


async def benchmark(args: argparse.Namespace) -> int:
    print(
        f"remediator console benchmark: {args.runs:,} runs in PostgreSQL ({args.database_url}),"
        f" {args.requests} requests a page after {args.warmup};"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="remediator-bench-console-") as workdir:
        logs = Path(workdir)
        async with postgres_schema(args.database_url) as (_, database_url):
            began = time.perf_counter()
            tables = await seed(database_url, args.runs)
            seeded_s = time.perf_counter() - began
            print(
                f"seeded in {seeded_s:.1f} s: {len(tables.remediations):,} runs,"
                f" {len(tables.alerts):,} alerts, {len(tables.events):,} events,"
                f" {len(tables.steps):,} steps, {len(tables.outbox):,} messages,"
                f" {len(tables.approvals)} pending approvals"
            )
            service = spawn(database_url, write_policies(logs / "policies"), logs)
            async with started(service, is_healthy):
                try:
                    timings, walk, stale = await time_pages(service, tables, args)
                except Exception:
                    print(f"Service log (last lines):\n{service.log_tail(40)}", file=sys.stderr)
                    raise
                log_tail = service.log_tail(5)
    print("\n".join(table(timings)))
    if stale is not None:
        print(
            f"Policies a minute later (its count stale: shown, and made again in the"
            f" background): that request {stale.first_ms:.1f} ms; the {stale.requests} after"
            f" it, p95 {stale.p95_ms:.1f} ms, max {stale.max_ms:.1f} ms"
        )
    failed = [t.page for t in timings if not t.passed]
    print(
        f"Target: p95 under {TARGET_P95_MS:.0f} ms on every page:"
        f" {'met' if not failed else 'NOT met on ' + ', '.join(failed)}"
    )
    if log_tail.strip():
        print(f"Service log (last lines):\n{log_tail}")
    if args.json:
        seeded = {
            "seconds": round(seeded_s, 2),
            "runs": len(tables.remediations),
            "alerts": len(tables.alerts),
            "steps": len(tables.steps),
            "messages": len(tables.outbox),
            "approvals": len(tables.approvals),
        }
        figures: dict[str, Any] = {
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "seeded": seeded,
            "deep_page": asdict(walk),
            "policies_a_minute_later": asdict(stale) if stale is not None else None,
            "pages": [asdict(t) for t in timings],
            "target_p95_ms": TARGET_P95_MS,
            "passed": not failed,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgresql://127.0.0.1:5432/test",
        help="PostgreSQL to create the bench schema in (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=100_000, help="remediations in the history")
    parser.add_argument("--requests", type=int, default=200, help="measured requests a page")
    parser.add_argument("--warmup", type=int, default=10, help="requests before measuring")
    parser.add_argument(
        "--page-seconds",
        type=float,
        default=60.0,
        help=f"stop timing a page after this long, once {MIN_REQUESTS} requests are timed",
    )
    parser.add_argument(
        "--no-minute-later",
        dest="a_minute_later",
        action="store_false",
        help=f"leave out Policies requested again once its count is stale ({STALE_AFTER_S} s on)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(benchmark(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
