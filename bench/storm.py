"""Benchmark of alert storms end to end: webhook in, decision recorded, page queued.

Run it from the repository root:

    .venv/bin/python bench/storm.py                           # every scenario, Postgres
    .venv/bin/python bench/storm.py --scenario a,b --store sqlite
    .venv/bin/python bench/storm.py --quick                   # shortened counts, a few minutes
    .venv/bin/python bench/storm.py --scenario d --duration 20 --json storm.json

Each scenario run starts its own `python -m remediator serve` (dry-run, the default; webhook
authentication unset) on a free loopback port and an empty store (Postgres: a fresh schema
`bench_<random>` in --database-url, dropped afterwards; SQLite: a new temporary file), with a
policy directory this bench writes into a temporary directory:

- `escalation.yaml`: `severity=critical` is P1, paged at once to PagerDuty and Slack, both
  pointed at a loopback sink of the bench (`bench/storm.py --loopback-server PORT`, a
  subprocess) that takes every message, so the outbox sender works as in a deployment;
- `storm-slow.yaml` (alertname StormSlowCheck): one `http.check` against a loopback server
  that accepts TCP and never answers, so the step waits out its timeout (--hang-timeout);
- `storm-fast.yaml` (alertname StormFastCheck): one `http.check` against the sink, which
  answers 200 at once;
- alertname StormNoPolicy matches no policy: the matrix alone pages it.

Every alert is new (its own fingerprint and Deployment), critical, and in namespace `bench`.
"A storm" below is half StormFastCheck, half StormNoPolicy, in payloads of 1 to 10 alerts
posted over --connections keep-alive connections as fast as they are answered.

Times are wall-clock UTC on both sides (one machine, one clock): each alert's 200 answer as the
client read it, against the store's rows for its event: "decided" is the `started_at` of its
first `remediations` row, "paged" the `created_at` of its first `outbox` row, "done" its
`alert_events.done_at`.

Scenarios (`--scenario a,b,c,d,e`):

  a  head of line: --slow StormSlowCheck alerts, then --others storm alerts at --others-rate
     per second while the slow checks hang. p50/p99 of the others' 200 -> decided and
     200 -> paged. Target: p99 to paged under 250 ms.
  b  burst: --burst storm alerts. Time from the first 200 until every alert is decided, and
     events/s. Target (PostgreSQL): all decided within 2 s.
  c  memory: the service's peak RSS (VmHWM, and VmRSS polled) through a --memory-alerts storm,
     until its events are done or --drain-timeout. Target: under 200 MiB.
  d  sustained: 1-alert notifications at --rate per second for --duration s (open loop).
     Decided/s and the age of the oldest pending event (`done_at IS NULL`) over time.
  e  replicas: --replicas service processes (default 1 and 3) on one Postgres schema, a burst
     of --replica-alerts posted round-robin across them; events/s for each count, and how the
     events were shared (`alert_events.claimed_by`). Postgres only.

Targets come from the issue ("Several incidents at once"); d and e have none and are reported.
The bench prints a table per scenario with PASS/FAIL; `--json FILE` writes every figure.
Client, service, sink and database share the machine's cores: the CPU columns (percent of
one core over the scenario) say which was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from intake import (
    SAMPLE,
    Server,
    accepts_connections,
    database,
    fmt,
    free_port,
    is_healthy,
    percentile_ms,
    postgres_cpu_seconds,
    progress,
    run_benchmark,
    wait_until,
)

SCENARIOS = ("a", "b", "c", "d", "e")
SLOW, FAST, NO_POLICY = "StormSlowCheck", "StormFastCheck", "StormNoPolicy"
NAMESPACE = "bench"
PAGE_P99_TARGET_MS = 250.0
BURST_TARGET_S = 2.0
RSS_TARGET_MIB = 200.0
POLL_S = 0.05  # how often the store (and RSS) is looked at while waiting
SAMPLE_EVERY_S = 1.0  # scenario d's time series
OPEN_LOOP_CONNECTIONS = 256
LOG_LINES = 5  # of a service's log (warnings and errors), printed after its scenario
PAGERDUTY_KEY_ENV, SLACK_URL_ENV = "BENCH_STORM_PAGERDUTY_KEY", "BENCH_STORM_SLACK_URL"


# ---------------------------------------------------------------------------- loopback servers


def run_loopback_server(port: int) -> None:
    """The fast check's target (GET /ok: 200) and the channels' sink (PagerDuty: 202,
    Slack: 200), in a process of its own so that its work is not the load generator's."""

    async def check(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pagerduty(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "success", "message": "Event processed"}, status=202)

    async def slack(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", check)
    app.router.add_post("/pagerduty", pagerduty)
    app.router.add_post("/slack", slack)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never answers; yields the port."""
    writers: set[asyncio.StreamWriter] = set()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in list(writers):
            writer.close()
        server.close()
        await server.wait_closed()


def write_policies(directory: Path, hang_port: int, sink: str, hang_timeout: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # Dry-run is guarded as live mode would be: the storm measures the dispatcher, not the cap.
    (directory / "guardrails.yaml").write_text(
        f"allowed_namespaces:\n  - {NAMESPACE}\nmax_concurrent_runs: 100000\n"
    )
    (directory / "escalation.yaml").write_text(
        f"""severity_labels:
  critical: P1
  warning: P3
default_level: P3
levels:
  P1:
    channels: [pagerduty, slack]
    respond_within: 15m
    page_while_remediating: true
  P2:
    channels: [slack]
    respond_within: 1h
  P3:
    channels: [slack]
    respond_within: 4h
  P4:
    channels: [slack]
    respond_within: 1d
channels:
  pagerduty:
    routing_key_env: {PAGERDUTY_KEY_ENV}
    events_url: {sink}/pagerduty
  slack:
    webhook_url_env: {SLACK_URL_ENV}
"""
    )
    timeout_ms = max(1, round(hang_timeout * 1000))
    for name, alertname, url, timeout in (
        ("storm-slow", SLOW, f"http://127.0.0.1:{hang_port}/health", f"{timeout_ms}ms"),
        ("storm-fast", FAST, f"{sink}/ok", "5s"),
    ):
        (directory / f"{name}.yaml").write_text(
            f"""name: {name}
match:
  - alertname="{alertname}"
target:
  kind: Deployment
  namespace: "{{{{ labels.namespace }}}}"
  name: "{{{{ labels.deployment }}}}"
steps:
  - id: health
    action: http.check
    params:
      url: "{url}"
      timeout: {timeout}
rate_limit:
  windows:
    - {{max: 1000000, per: 1h}}
"""
        )


# ---------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Body:
    data: bytes
    fingerprints: tuple[str, ...]


def new_alert(alertname: str, fingerprint: str, starts_at: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": alertname,
            "namespace": NAMESPACE,
            "deployment": fingerprint,
            "instance": "127.0.0.1:8080",
            "severity": "critical",
        },
        "annotations": {"summary": f"{alertname} on {fingerprint}", "description": "storm"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


def storm_alerts(tag: str, count: int, alertnames: Sequence[str] = (FAST, NO_POLICY)) -> list[Any]:
    """`count` new alerts, the alertnames taken in turn; fingerprints `<tag>-<number>`."""
    starts_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        new_alert(alertnames[number % len(alertnames)], f"{tag}-{number:06d}", starts_at)
        for number in range(count)
    ]


def bodies(alerts: Sequence[dict[str, Any]], sizes: tuple[int, int], seed: int = 1) -> list[Body]:
    """The alerts in notifications of sizes[0] to sizes[1] alerts each."""
    template = json.loads(SAMPLE.read_text())["body"]
    chosen = random.Random(seed)
    out, start = [], 0
    while start < len(alerts):
        chunk = alerts[start : start + chosen.randint(*sizes)]
        start += len(chunk)
        group = {**template, "alerts": chunk, "groupKey": f"{{}}:{{fp={chunk[0]['fingerprint']}}}"}
        data = json.dumps(group, separators=(",", ":")).encode()
        out.append(Body(data, tuple(alert["fingerprint"] for alert in chunk)))
    return out


# ---------------------------------------------------------------------------- sending


@dataclass
class Sent:
    """When each alert's 200 came back (wall clock), and what went wrong otherwise."""

    answered: dict[str, float] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # per request, seconds

    def record(self, body: Body, began: float, problem: str | None) -> None:
        now = time.time()
        if problem is not None:
            self.errors[problem] += 1
            return
        self.latencies.append(now - began)
        self.answered.update(dict.fromkeys(body.fingerprints, now))

    @property
    def first(self) -> float:
        return min(self.answered.values(), default=time.time())

    @property
    def last(self) -> float:
        return max(self.answered.values(), default=time.time())


async def post(session: aiohttp.ClientSession, url: str, body: Body) -> str | None:
    """None when the answer is 200; otherwise what was wrong."""
    try:
        async with session.post(
            url, data=body.data, headers={"Content-Type": "application/json"}
        ) as answer:
            text = await answer.read()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if status == 200 else f"HTTP {status}: {text[:120].decode(errors='replace')}"


def client(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def send_all(urls: Sequence[str], sending: Sequence[Body], connections: int) -> Sent:
    """Closed loop: `connections` senders, each posting the next body once answered; the
    bodies go round-robin to `urls`."""
    sent = Sent()
    queue = list(enumerate(sending))[::-1]

    async def sender(session: aiohttp.ClientSession) -> None:
        while queue:
            number, body = queue.pop()
            began = time.time()
            sent.record(body, began, await post(session, urls[number % len(urls)], body))

    async with client(connections) as session:
        await asyncio.gather(*(sender(session) for _ in range(connections)))
    return sent


async def send_paced(url: str, sending: Sequence[Body], rate: float) -> tuple[Sent, list[float]]:
    """Open loop: one body every 1/rate s whatever the answers; also each send's lag behind
    its schedule (the load generator falling behind)."""
    sent, lags = Sent(), []
    async with client(OPEN_LOOP_CONNECTIONS) as session:

        async def send(due: float, body: Body) -> None:
            lags.append(time.perf_counter() - due)
            sent.record(body, time.time(), await post(session, url, body))

        tasks = []
        start = time.perf_counter()
        for number, body in enumerate(sending):
            due = start + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(due, body)))
        await asyncio.gather(*tasks)
    return sent, lags


# ---------------------------------------------------------------------------- the store


def epoch(value: object) -> float:
    """A stored instant as seconds since the epoch (asyncpg datetime, or SQLite ISO text)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.timestamp()


DECIDED = "SELECT fingerprint, min(started_at) FROM remediations GROUP BY fingerprint"
PAGED = (
    "SELECT r.fingerprint, min(o.created_at) FROM outbox o JOIN remediations r"
    " ON r.id = o.remediation_id WHERE o.channel <> 'ladder' GROUP BY r.fingerprint"
)
DONE = "SELECT fingerprint, done_at FROM alert_events WHERE done_at IS NOT NULL"
COUNTS = (
    "SELECT (SELECT count(*) FROM alert_events), (SELECT count(done_at) FROM alert_events),"
    " (SELECT count(DISTINCT event_id) FROM remediations),"
    " (SELECT min(enqueued_at) FROM alert_events WHERE done_at IS NULL)"
)
SHARES = "SELECT claimed_by, count(*) FROM alert_events GROUP BY claimed_by"


@dataclass(frozen=True)
class Counts:
    events: int
    done: int
    decided: int
    oldest_pending: float | None  # epoch seconds


class Probe:
    """Reads a service run's store while it works (a connection of the bench's own)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._postgres: asyncpg.Connection[Any] | None = None
        self._sqlite: sqlite3.Connection | None = None

    @property
    def postgres(self) -> bool:
        return not self.database_url.startswith("sqlite:///")

    async def open(self) -> None:
        if self.database_url.startswith("sqlite:///"):
            path = self.database_url.removeprefix("sqlite:///")
            self._sqlite = sqlite3.connect(path, timeout=30, check_same_thread=False)
        else:
            self._postgres = await asyncpg.connect(self.database_url)

    async def close(self) -> None:
        if self._postgres is not None:
            await self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.close()

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self._postgres is not None:
            return [tuple(row) for row in await self._postgres.fetch(query)]
        assert self._sqlite is not None
        db = self._sqlite
        return await asyncio.to_thread(lambda: list(db.execute(query).fetchall()))

    async def times(self, query: str) -> dict[str, float]:
        return {key: epoch(value) for key, value in await self.rows(query) if value is not None}

    async def counts(self) -> Counts:
        events, done, decided, oldest = (await self.rows(COUNTS))[0]
        return Counts(events, done, decided, None if oldest is None else epoch(oldest))

    async def wait(self, reached: Callable[[Counts], bool], deadline: float) -> Counts:
        """Poll until `reached` or the deadline (time.monotonic()); the last counts seen."""
        while True:
            counts = await self.counts()
            if reached(counts) or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(POLL_S)


# ---------------------------------------------------------------------------- services


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    policies: Path
    sink: str
    log_tails: dict[str, str] = field(default_factory=dict)  # what the services logged

    def spawn(self, database_url: str, name: str) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
        env.update(
            {
                "REMEDIATOR_LISTEN": f"127.0.0.1:{port}",
                "REMEDIATOR_DATABASE_URL": database_url,
                "REMEDIATOR_POLICIES": str(self.policies),
                "REMEDIATOR_LOG_LEVEL": "warning",
                PAGERDUTY_KEY_ENV: "bench-routing-key",
                SLACK_URL_ENV: f"{self.sink}/slack",
            }
        )
        env.update(setting.split("=", 1) for setting in self.args.set)
        return Server.spawn(name, ["-m", "remediator", "serve"], env, port, self.workdir)

    @contextlib.asynccontextmanager
    async def run(self, name: str, replicas: int = 1) -> AsyncIterator[tuple[list[Server], Probe]]:
        """A fresh store, `replicas` services on it (started one after another: the first
        migrates it), and a probe of the store."""
        async with database(self.args, self.workdir) as database_url:
            servers: list[Server] = []
            probe = Probe(database_url)
            try:
                for number in range(replicas):
                    servers.append(self.spawn(database_url, f"service-{name}-{number}"))
                    await wait_until(lambda: is_healthy(servers[-1]), servers[-1])
                await probe.open()
                yield servers, probe
            finally:
                await probe.close()
                for server in servers:
                    server.stop()
                    if tail := server.log_tail(LOG_LINES).strip():
                        self.log_tails[server.name] = tail


@dataclass
class Cpu:
    """CPU time of the services and (local) Postgres from its start, as percents of a core."""

    servers: list[Server]
    with_postgres: bool
    started: float = field(default_factory=time.perf_counter)
    server_start: float = 0.0
    postgres_start: float = 0.0

    def __post_init__(self) -> None:
        self.server_start = sum(s.cpu_seconds() for s in self.servers)
        self.postgres_start = postgres_cpu_seconds() if self.with_postgres else 0.0

    def percents(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.started
        server = sum(s.cpu_seconds() for s in self.servers) - self.server_start
        postgres = (postgres_cpu_seconds() - self.postgres_start) / wall * 100
        return {
            "service_cpu_percent": round(server / wall * 100, 1),
            "postgres_cpu_percent": round(postgres, 1) if self.with_postgres else None,
        }


def vm_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------- figures


def delays_ms(start: dict[str, float], end: dict[str, float]) -> dict[str, Any]:
    """p50/p99/max from start[fp] to end[fp], over the fingerprints in `start`; those with
    no end yet are counted as missing (and make the p99 infinite once over 1%)."""
    values = [end[fp] - start[fp] for fp in start if fp in end]
    missing = len(start) - len(values)
    padded = values + [float("inf")] * missing
    return {
        "count": len(values),
        "missing": missing,
        "p50_ms": percentile_ms(padded, 0.50),
        "p99_ms": percentile_ms(padded, 0.99),
        "max_ms": percentile_ms(padded, 1.0),
    }


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:,.1f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def store_note(args: argparse.Namespace) -> str:
    return "" if args.store == "postgres" else " (measured with the sqlite store)"


def error_lines(sent: Sent) -> list[str]:
    if not sent.errors:
        return []
    return [f"  errors posting: {sum(sent.errors.values())}: {dict(sent.errors.most_common(3))}"]


# ---------------------------------------------------------------------------- scenario a


async def head_of_line(bench: Bench) -> tuple[dict[str, Any], list[str]]:
    args = bench.args
    slow = storm_alerts("a-slow", args.slow, (SLOW,))
    others = storm_alerts("a-other", args.others)
    total = len(slow) + len(others)
    async with bench.run("a") as ([service], probe):
        cpu = Cpu([service], probe.postgres)
        progress(f"a: {len(slow)} hanging checks, then {len(others)} alerts")
        slow_sent = await send_all([service.alerts_url], bodies(slow, (1, 1)), len(slow))
        await asyncio.sleep(args.head_start)
        other_sent, _ = await send_paced(
            service.alerts_url, bodies(others, (1, 1)), args.others_rate
        )
        worst = args.slow * (args.hang_timeout + 1) + 60 + args.others / 10
        counts = await probe.wait(lambda c: c.done >= total, time.monotonic() + worst)
        decided, paged = await probe.times(DECIDED), await probe.times(PAGED)
        done = await probe.times(DONE)
        figures = {
            "slow_alerts": len(slow),
            "other_alerts": len(others),
            "hang_timeout_s": args.hang_timeout,
            "others_rate_per_s": args.others_rate,
            "events_done": counts.done,
            "others_to_decided": delays_ms(other_sent.answered, decided),
            "others_to_paged": delays_ms(other_sent.answered, paged),
            "others_to_done": delays_ms(other_sent.answered, done),
            "slow_to_done": delays_ms(slow_sent.answered, done),
            "errors": sum(slow_sent.errors.values()) + sum(other_sent.errors.values()),
            **cpu.percents(),
        }
    p99 = figures["others_to_paged"]["p99_ms"]
    passed = p99 is not None and p99 < PAGE_P99_TARGET_MS and figures["errors"] == 0
    figures["target"] = {"p99_to_paged_ms_under": PAGE_P99_TARGET_MS, "passed": passed}
    lines = [
        f"a. Head of line: {len(slow)} alerts whose check hangs ({args.hang_timeout:g} s timeout),"
        f" then {len(others)} others at {args.others_rate:g}/s",
        "  from each 200 answer to      count  missing     p50 ms     p99 ms     max ms",
    ]
    for label, key in (
        ("others: decision recorded", "others_to_decided"),
        ("others: page queued", "others_to_paged"),
        ("others: event done", "others_to_done"),
        ("hanging: event done", "slow_to_done"),
    ):
        d = figures[key]
        lines.append(
            f"  {label:<27} {d['count']:>6} {d['missing']:>8} {ms(d['p50_ms']):>10}"
            f" {ms(d['p99_ms']):>10} {ms(d['max_ms']):>10}"
        )
    lines += error_lines(other_sent) + error_lines(slow_sent)
    lines.append(
        f"  service CPU {figures['service_cpu_percent']:.0f}%, postgres"
        f" {pct(figures['postgres_cpu_percent'])} of a core over the scenario"
    )
    lines.append(
        f"  {verdict(passed)}  p99 from 200 to page queued under {PAGE_P99_TARGET_MS:g} ms"
        f" ({ms(p99)} ms){store_note(args)}"
    )
    return figures, lines


# ---------------------------------------------------------------------------- scenarios b, e


async def burst_into(
    servers: list[Server], probe: Probe, alerts: list[Any], bench: Bench
) -> dict[str, Any]:
    """Post the storm round-robin across `servers`, wait until every event is done; the
    figures from the first 200 answer."""
    args = bench.args
    cpu = Cpu(servers, probe.postgres)
    urls = [server.alerts_url for server in servers]
    sent = await send_all(urls, bodies(alerts, (1, 10)), args.connections)
    deadline = time.monotonic() + args.drain_timeout
    counts = await probe.wait(lambda c: c.done >= len(alerts), deadline)
    decided, done = await probe.times(DECIDED), await probe.times(DONE)
    first = sent.first
    all_decided = max(decided.values()) - first if len(decided) >= len(alerts) else None
    all_done = max(done.values()) - first if len(done) >= len(alerts) else None
    return {
        "alerts": len(alerts),
        "requests": len(sent.latencies),
        "errors": sum(sent.errors.values()),
        "intake_s": round(sent.last - first, 3),
        "all_decided_s": None if all_decided is None else round(all_decided, 3),
        "all_done_s": None if all_done is None else round(all_done, 3),
        "decided_per_s": None if not all_decided else round(len(alerts) / all_decided, 1),
        "events_done": counts.done,
        "to_decided": delays_ms(sent.answered, decided),
        **cpu.percents(),
    }


def burst_row(label: str, f: dict[str, Any]) -> str:
    return (
        f"  {label:<10} {f['alerts']:>6} {f['intake_s']:>8.2f} {fmt(f['all_decided_s'], 2):>11}"
        f" {fmt(f['all_done_s'], 2):>8} {fmt(f['decided_per_s'], 0):>10}"
        f" {ms(f['to_decided']['p50_ms']):>9} {ms(f['to_decided']['p99_ms']):>9}"
        f" {f['service_cpu_percent']:>7.0f}% {pct(f['postgres_cpu_percent']):>8} {f['errors']:>6}"
    )


BURST_HEADER = (
    "  {:<10} alerts intake s  decided s   done s  decided/s   p50 ms    p99 ms  service"
    "  postgres errors"
)


async def burst(bench: Bench) -> tuple[dict[str, Any], list[str]]:
    args = bench.args
    progress(f"b: burst of {args.burst} alerts")
    async with bench.run("b") as (servers, probe):
        figures = await burst_into(servers, probe, storm_alerts("b", args.burst), bench)
    took = figures["all_decided_s"]
    passed = took is not None and took < BURST_TARGET_S and figures["errors"] == 0
    figures["target"] = {"all_decided_s_under": BURST_TARGET_S, "passed": passed}
    lines = [
        f"b. Burst: {args.burst} new alerts (half one fast check, half no policy) in payloads of"
        f" 1-10 over {args.connections} connections; seconds from the first 200",
        BURST_HEADER.format(""),
        burst_row("1 service", figures),
        "  (p50/p99: each alert's 200 to its decision)",
        f"  {verdict(passed)}  all decided within {BURST_TARGET_S:g} s of the first 200"
        f" ({fmt(took, 2)} s){store_note(args)}",
    ]
    return figures, lines


async def replicas(bench: Bench) -> tuple[dict[str, Any], list[str]]:
    args = bench.args
    if args.store != "postgres":
        return {"skipped": "replicas need the postgres store"}, [
            "e. Replicas: skipped (several replicas share a PostgreSQL store only)"
        ]
    figures: dict[str, Any] = {}
    lines = [
        f"e. Replicas: a burst of {args.replica_alerts} alerts posted round-robin across the"
        " replicas, on one PostgreSQL schema",
        BURST_HEADER.format("replicas"),
    ]
    shares = []
    for count in args.replicas:
        progress(f"e: {count} replica(s)")
        async with bench.run(f"e{count}", count) as (servers, probe):
            alerts = storm_alerts(f"e{count}", args.replica_alerts)
            found = await burst_into(servers, probe, alerts, bench)
            found["events_by_worker"] = dict(await probe.rows(SHARES))
        figures[str(count)] = found
        lines.append(burst_row(f"{count}", found))
        shares.append(
            f"{count}: " + ", ".join(map(str, sorted(found["events_by_worker"].values())))
        )
    lines.append("  events claimed per replica: " + "; ".join(shares))
    lines.append("  (no target: reported)")
    return figures, lines


# ---------------------------------------------------------------------------- scenario c


async def memory(bench: Bench) -> tuple[dict[str, Any], list[str]]:
    args = bench.args
    alerts = storm_alerts("c", args.memory_alerts)
    progress(f"c: storm of {len(alerts)} alerts, watching RSS")
    async with bench.run("c") as ([service], probe):
        pid = service.process.pid
        before = vm_kib(pid, "VmRSS")
        peak_polled = [before]
        watching = True

        async def watch() -> None:
            while watching:
                peak_polled[0] = max(peak_polled[0], vm_kib(pid, "VmRSS"))
                await asyncio.sleep(POLL_S)

        watcher = asyncio.create_task(watch())
        cpu = Cpu([service], probe.postgres)
        started = time.monotonic()
        sent = await send_all([service.alerts_url], bodies(alerts, (1, 10)), args.connections)
        intake_s = time.monotonic() - started
        deadline = time.monotonic() + args.drain_timeout
        counts = await probe.wait(lambda c: c.done >= len(alerts), deadline)
        drained_s = time.monotonic() - started
        watching = False
        await watcher
        hwm = vm_kib(pid, "VmHWM")
        after = vm_kib(pid, "VmRSS")
        figures: dict[str, Any] = {
            "alerts": len(alerts),
            "errors": sum(sent.errors.values()),
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "peak_rss_polled_mib": round(peak_polled[0] / 1024, 1),
            "vm_hwm_mib": round(hwm / 1024, 1),
            "intake_s": round(intake_s, 2),
            "events_done": counts.done,
            "watched_s": round(drained_s, 1),
            **cpu.percents(),
        }
    peak = max(figures["vm_hwm_mib"], figures["peak_rss_polled_mib"])
    passed = peak < RSS_TARGET_MIB and figures["errors"] == 0
    figures["target"] = {"peak_rss_mib_under": RSS_TARGET_MIB, "passed": passed}
    unfinished = counts.done < len(alerts)
    lines = [
        f"c. Memory: a storm of {len(alerts):,} alerts (payloads of 1-10, {args.connections}"
        " connections), RSS watched until its events were done",
        "  RSS before  peak (VmHWM)  polled peak  after   intake s  watched s  events done",
        f"  {figures['rss_before_mib']:>7.1f} MiB {figures['vm_hwm_mib']:>9.1f} MiB"
        f" {figures['peak_rss_polled_mib']:>8.1f} MiB {figures['rss_after_mib']:>6.1f}"
        f" {figures['intake_s']:>10.2f} {figures['watched_s']:>10.1f}"
        f" {counts.done:>8,}/{len(alerts):,}",
        *error_lines(sent),
        f"  service CPU {figures['service_cpu_percent']:.0f}%, postgres"
        f" {pct(figures['postgres_cpu_percent'])} of a core",
    ]
    if unfinished:
        lines.append(
            f"  note: --drain-timeout {args.drain_timeout:g} s passed with events pending:"
            " the peak covers the intake and part of the work"
        )
    lines.append(
        f"  {verdict(passed)}  peak RSS under {RSS_TARGET_MIB:g} MiB ({peak:.1f} MiB)"
        + store_note(args)
    )
    return figures, lines


# ---------------------------------------------------------------------------- scenario d


@dataclass
class Sample:
    at_s: float
    events: int
    decided: int
    done: int
    pending: int
    oldest_pending_s: float


async def take_sample(probe: Probe, started: float) -> Sample:
    """How far the dispatcher is behind, now."""
    counts = await probe.counts()
    now = time.time()
    age = 0.0 if counts.oldest_pending is None else now - counts.oldest_pending
    pending = counts.events - counts.done
    return Sample(
        round(now - started, 2), counts.events, counts.decided, counts.done, pending, round(age, 2)
    )


async def sample_queue(probe: Probe, started: float, samples: list[Sample]) -> None:
    while True:
        samples.append(await take_sample(probe, started))
        await asyncio.sleep(SAMPLE_EVERY_S)


async def sustained(bench: Bench) -> tuple[dict[str, Any], list[str]]:
    args = bench.args
    count = round(args.rate * args.duration)
    alerts = storm_alerts("d", count)
    progress(f"d: {args.rate:g} alerts/s for {args.duration:g} s")
    async with bench.run("d") as ([service], probe):
        samples: list[Sample] = []
        cpu = Cpu([service], probe.postgres)
        started = time.time()
        sampler = asyncio.create_task(sample_queue(probe, started, samples))
        sent, lags = await send_paced(service.alerts_url, bodies(alerts, (1, 1)), args.rate)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        samples.append(await take_sample(probe, started))
        figures = sustained_figures(args, sent, lags, samples, cpu.percents())
    return figures, sustained_lines(args, figures, samples, sent)


def sustained_figures(
    args: argparse.Namespace,
    sent: Sent,
    lags: list[float],
    samples: list[Sample],
    cpu: dict[str, float | None],
) -> dict[str, Any]:
    end = samples[-1]
    wall = end.at_s or 1.0
    tail = [s for s in samples if s.at_s >= wall - 10]
    tail_rate = (tail[-1].decided - tail[0].decided) / max(tail[-1].at_s - tail[0].at_s, 1e-9)
    return {
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "alerts": len(sent.answered),
        "errors": sum(sent.errors.values()),
        "intake_p50_ms": percentile_ms(sent.latencies, 0.50),
        "intake_p99_ms": percentile_ms(sent.latencies, 0.99),
        "send_lag_p99_ms": percentile_ms(lags, 0.99),
        "sent_per_s": round(len(sent.answered) / wall, 1),
        "decided_per_s": round(end.decided / wall, 1),
        "decided_per_s_last_10s": round(tail_rate, 1),
        "decided_at_end": end.decided,
        "pending_at_end": end.pending,
        "oldest_pending_at_end_s": end.oldest_pending_s,
        "oldest_pending_max_s": max(s.oldest_pending_s for s in samples),
        "samples": [asdict(s) for s in samples],
        **cpu,
    }


def sustained_lines(
    args: argparse.Namespace, f: dict[str, Any], samples: list[Sample], sent: Sent
) -> list[str]:
    lines = [
        f"d. Sustained: 1-alert notifications at {args.rate:g}/s for {args.duration:g} s (open"
        " loop, half one fast check, half no policy)",
        "       t s   stored  decided   done   pending   oldest pending s",
    ]
    step = max(1, len(samples) // 12)
    shown = samples[::step] if samples[-1] in samples[::step] else [*samples[::step], samples[-1]]
    lines += [
        f"  {s.at_s:>8.1f} {s.events:>8} {s.decided:>8} {s.done:>6} {s.pending:>9}"
        f" {s.oldest_pending_s:>18.2f}"
        for s in shown
    ]
    lines += [
        f"  sent {f['sent_per_s']:,.0f}/s, decided {f['decided_per_s']:,.1f}/s over the run"
        f" ({f['decided_per_s_last_10s']:,.1f}/s in its last 10 s); at the end"
        f" {f['pending_at_end']:,} pending, the oldest {f['oldest_pending_at_end_s']:.1f} s old"
        f" (max {f['oldest_pending_max_s']:.1f} s)",
        f"  intake p50 {ms(f['intake_p50_ms'])} ms, p99 {ms(f['intake_p99_ms'])} ms; send lag"
        f" p99 {ms(f['send_lag_p99_ms'])} ms; service CPU {f['service_cpu_percent']:.0f}%,"
        f" postgres {pct(f['postgres_cpu_percent'])}",
        *error_lines(sent),
        "  (no target: reported)",
    ]
    return lines


# ---------------------------------------------------------------------------- main

Scenario = Callable[[Bench], Awaitable[tuple[dict[str, Any], list[str]]]]
RUNS: dict[str, Scenario] = {
    "a": head_of_line,
    "b": burst,
    "c": memory,
    "d": sustained,
    "e": replicas,
}


def describe(args: argparse.Namespace) -> str:
    store = "sqlite (a temporary file per scenario run)"
    if args.store == "postgres":
        store = f"postgres ({args.database_url}, a fresh schema per scenario run)"
    return (
        f"remediator storm benchmark: store {store}; scenarios {','.join(args.scenario)}\n"
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, service in dry-run;"
        f" load average {load_average()} (other work on the machine skews every figure)\n"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


async def benchmark(args: argparse.Namespace) -> int:
    print(describe(args))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="remediator-storm-") as workdir:
        logs = Path(workdir)
        port = free_port()
        argv = [str(Path(__file__).resolve()), "--loopback-server", str(port)]
        loopback = Server.spawn("loopback", argv, dict(os.environ), port, logs)
        async with silent_server() as hang_port:
            await wait_until(lambda: accepts_connections(loopback), loopback)
            try:
                policies = logs / "policies"
                write_policies(policies, hang_port, loopback.url, args.hang_timeout)
                bench = Bench(args, logs, policies, loopback.url)
                for name in args.scenario:
                    figures, lines = await RUNS[name](bench)
                    progress("")
                    for server, tail in bench.log_tails.items():
                        lines.append(f"  {server} logged (last lines):")
                        lines += [f"    {line[:300]}" for line in tail.splitlines()]
                    bench.log_tails.clear()
                    lines.append(f"  load average after it: {load_average()}")
                    print("\n".join(lines) + "\n", flush=True)
                    results[name] = {**figures, "load_average_after": os.getloadavg()}
            finally:
                loopback.stop()
    if args.json:
        write_json(args, results)
    failed = [name for name, f in results.items() if not f.get("target", {}).get("passed", True)]
    print(f"Targets failed: {', '.join(failed)}" if failed else "Every target met")
    return 0


def write_json(args: argparse.Namespace, results: dict[str, Any]) -> None:
    figures = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "loopback_server")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenarios": results,
    }
    Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")


def scenario_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SCENARIOS)}; got {text!r}")
    return names


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


QUICK = {
    "slow": 5,
    "others": 100,
    "hang_timeout": 1.0,
    "burst": 500,
    "memory_alerts": 2000,
    "duration": 10.0,
    "replica_alerts": 500,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--scenario", type=scenario_list, default=list(SCENARIOS), help="e.g. a,b (default: all)")
    add("--store", choices=("postgres", "sqlite"), default="postgres")
    add("--database-url", default="postgresql://127.0.0.1:5432/test", help="PostgreSQL to use")
    add("--quick", action="store_true", help="shortened counts: " + str(QUICK))
    add("--connections", type=int, default=8, help="keep-alive connections of a burst")
    add("--drain-timeout", type=float, default=300.0, help="s to wait for a storm's events")
    add("--slow", type=int, default=20, help="a: alerts whose check hangs")
    add("--hang-timeout", type=float, default=2.0, help="a: the hanging check's timeout, s")
    add("--head-start", type=float, default=0.2, help="a: s between the slow and the others")
    add("--others", type=int, default=200, help="a: alerts arriving meanwhile")
    add("--others-rate", type=float, default=100.0, help="a: their rate, alerts/s")
    add("--burst", type=int, default=1000, help="b: alerts in the burst")
    add("--memory-alerts", type=int, default=10000, help="c: alerts in the storm")
    add("--rate", type=float, default=500.0, help="d: notifications/s")
    add("--duration", type=float, default=60.0, help="d: seconds")
    add("--replicas", type=int_list, default=[1, 3], help="e: replica counts (default: 1,3)")
    add("--replica-alerts", type=int, default=1000, help="e: alerts in each burst")
    add(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a REMEDIATOR_* setting of the service under test (repeatable)",
    )
    add("--json", metavar="FILE", help="also write every figure as JSON")
    add("--loopback-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for name, value in QUICK.items():
            if f"--{name.replace('_', '-')}" not in given:
                setattr(args, name, value)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loopback_server is not None:
        run_loopback_server(args.loopback_server)
        return 0
    return run_benchmark(benchmark(args))


if __name__ == "__main__":
    sys.exit(main())
