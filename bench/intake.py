"""Benchmark of webhook intake: the real service against a bare aiohttp handler.

Run it from the repository root with `make bench`, which runs `python bench/intake.py`:

    .venv/bin/python bench/intake.py                  # Postgres at 127.0.0.1:5432/test
    .venv/bin/python bench/intake.py --store sqlite   # a temporary SQLite file
    .venv/bin/python bench/intake.py --duration 10 --json bench.json

It starts, as subprocesses on free loopback ports, the ceiling: a bare aiohttp handler that
only parses the JSON body (`bench/intake.py --bare-server PORT`), once; and for each service
run a `python -m remediator serve` of its own on an empty store (Postgres: a fresh schema
`bench_<random>`, after a CHECKPOINT, dropped after the run), so that no run inherits the
events an earlier one queued.
This process is the load generator: one asyncio loop sending pre-built bodies, every request
with new alerts (fingerprint = request number + alert index) so the service writes rows
rather than counting duplicates.

Phases: closed-loop throughput with 1, 10 and 100 alerts per request (`--concurrency`
keep-alive connections, `--duration` seconds after `--warmup`), then open-loop latency at
`--rate` requests/s of 1-alert payloads, latency counted from each request's scheduled time.
It prints a table, how many of each service run's events its dispatcher finished and the
longest commit flush seen meanwhile, the service/bare ratios, the issue's targets with
PASS/FAIL, and each server's peak RSS; `--json FILE` writes every figure.

Client, servers and the database share the machine's cores: read the CPU columns (percent of
one core) before blaming either server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import platform
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "samples" / "high-memory-usage.firing-two-pods.json"
ALERTS_PATH = "/api/v1/alerts"
TOKEN = "bench"  # the throwaway token the bench service is started with
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
PAYLOAD_SIZES = (1, 10, 100)
SLOT = b"@@@@@@@@"  # where each body's request number goes: the first half of a fingerprint
START_TIMEOUT = 30.0
OPEN_LOOP_CONNECTIONS = 256
RATIO_TARGET = 0.30
P99_TARGET_MS = 25.0
CLIENT_BOUND = 90.0  # percent of a core
WAL_POLL_MS = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- the ceiling


def run_bare_server(port: int) -> None:
    """The ceiling: parse the JSON body and answer as the service would, nothing else."""

    async def alerts(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"accepted": len(body["alerts"]), "duplicates": 0})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post(ALERTS_PATH, alerts)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ---------------------------------------------------------------------------- payloads


def body_template(size: int) -> bytes:
    """The captured notification with `size` copies of its first alert, fingerprints open."""
    body = json.loads(SAMPLE.read_text())["body"]
    alerts = [
        {**body["alerts"][0], "fingerprint": f"{SLOT.decode()}{index:08x}"} for index in range(size)
    ]
    return json.dumps({**body, "alerts": alerts}, separators=(",", ":")).encode()


class Payloads:
    """Bodies of `size` alerts; each body's alerts are new (request number + alert index)."""

    def __init__(self, size: int, request_numbers: Iterator[int]) -> None:
        self.size = size
        self._template = body_template(size)
        self._numbers = request_numbers
        self._ready: deque[bytes] = deque()
        self.built_late = 0

    def prebuild(self, count: int) -> None:
        """Build `count` bodies now, so that a measured run only takes them."""
        self._ready = deque(self._make() for _ in range(count))
        self.built_late = 0

    def take(self) -> bytes:
        if self._ready:
            return self._ready.popleft()
        self.built_late += 1
        return self._make()

    def _make(self) -> bytes:
        return self._template.replace(SLOT, b"%08x" % next(self._numbers))


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def spawn(
        cls, name: str, argv: list[str], env: dict[str, str], port: int, logs: Path
    ) -> Server:
        log_path = logs / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *argv], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        return cls(name, process, f"http://127.0.0.1:{port}", log_path)

    @property
    def alerts_url(self) -> str:
        return self.url + ALERTS_PATH

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def peak_rss_kib(self) -> int | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu_seconds() -> float:
    """CPU time of every local process named postgres (the database's share of the machine)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if "(postgres)" in stat.read_text():
                total += process_cpu_seconds(int(stat.parent.name))
    return total


async def wait_until(ready: Callable[[], Awaitable[bool]], server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not await ready():
        server.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} not ready after {START_TIMEOUT}s:\n{server.log_tail()}"
            )
        await asyncio.sleep(0.1)


async def is_healthy(server: Server) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/health") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def accepts_connections(server: Server) -> bool:
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def started(
    server: Server, ready: Callable[[Server], Awaitable[bool]]
) -> AsyncIterator[Server]:
    try:
        await wait_until(lambda: ready(server), server)
        yield server
    finally:
        server.stop()


def spawn_bare(logs: Path) -> Server:
    port = free_port()
    argv = [str(Path(__file__).resolve()), "--bare-server", str(port)]
    return Server.spawn("bare", argv, dict(os.environ), port, logs)


def spawn_service(database_url: str, logs: Path) -> Server:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("REMEDIATOR_")}
    env.update(
        REMEDIATOR_LISTEN=f"127.0.0.1:{port}",
        REMEDIATOR_DATABASE_URL=database_url,
        REMEDIATOR_WEBHOOK_TOKEN=TOKEN,
        REMEDIATOR_LOG_LEVEL="warning",
    )
    return Server.spawn("service", ["-m", "remediator", "serve"], env, port, logs)


# ---------------------------------------------------------------------------- stores


@contextlib.asynccontextmanager
async def postgres_schema(admin_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh schema, dropped afterwards; yields its name and a DSN that selects it."""
    schema = f"bench_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        # Write out what the run before left dirty (and its dropped schema), so that its
        # writeback does not stall this run's commits: fdatasync waits behind it.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
        yield schema, with_query(admin_dsn, search_path=schema)
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()


def with_query(dsn: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(parts._replace(query=query))


@contextlib.asynccontextmanager
async def database(args: argparse.Namespace, workdir: Path) -> AsyncIterator[str]:
    """A new, empty store for the service's REMEDIATOR_DATABASE_URL."""
    if args.store == "sqlite":
        yield f"sqlite:///{workdir / f'bench_{secrets.token_hex(4)}.db'}"
        return
    async with postgres_schema(args.database_url) as (_, dsn):
        yield dsn


async def queue_counts(database_url: str) -> tuple[int, int]:
    """Events queued in a service run's store, and how many its dispatcher finished."""
    query = "SELECT count(*), count(done_at) FROM alert_events"
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as db:
            queued, handled = db.execute(query).fetchone()
            return int(queued), int(handled)
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(query)
        return int(row[0]), int(row[1])
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def longest_wal_flush(database_url: str) -> AsyncIterator[list[float]]:
    """The longest WAL flush (fdatasync) a commit waited on meanwhile, in seconds, seen by
    polling pg_stat_activity. Every commit queues behind a slow one, so one stall of the disk
    is the latency of every acknowledgement waiting at the time."""
    longest = [0.0]
    if database_url.startswith("sqlite:"):
        yield longest
        return
    connection = await asyncpg.connect(database_url)
    first_seen: dict[tuple[int, object], float] = {}  # by backend and transaction

    async def watch() -> None:
        while True:
            rows = await connection.fetch(
                "SELECT pid, xact_start FROM pg_stat_activity WHERE wait_event = 'WALSync'"
                " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
            )
            now = time.perf_counter()
            for pid, xact_start in rows:
                longest[0] = max(longest[0], now - first_seen.setdefault((pid, xact_start), now))
            await asyncio.sleep(WAL_POLL_MS / 1000)

    watcher = asyncio.create_task(watch())
    try:
        yield longest
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await connection.close()


def describe_store(args: argparse.Namespace) -> str:
    if args.store == "sqlite":
        return "sqlite (a temporary file per service run)"
    return f"postgres ({urlsplit(args.database_url).netloc}, a fresh schema per service run)"


# ---------------------------------------------------------------------------- load


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    send_lags: list[float] = field(default_factory=list)

    def add(self, seconds: float, problem: str | None) -> None:
        if problem is None:
            self.latencies.append(seconds)
        else:
            self.errors[problem] += 1


async def post(session: aiohttp.ClientSession, url: str, body: bytes, size: int) -> str | None:
    """None when the answer is 200 and accepts every alert; otherwise what was wrong."""
    try:
        async with session.post(url, data=body, headers=HEADERS) as answer:
            payload = await answer.read()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {payload[:120].decode(errors='replace')}"
    try:
        accepted = json.loads(payload)["accepted"]
    except (ValueError, TypeError, KeyError):
        return f"unexpected answer: {payload[:120].decode(errors='replace')}"
    return None if accepted == size else f"accepted {accepted} of {size} alerts"


async def closed_loop(
    session: aiohttp.ClientSession, url: str, payloads: Payloads, concurrency: int, seconds: float
) -> tuple[Samples, float]:
    """`concurrency` senders, each posting its next body as soon as the last is answered."""
    samples = Samples()
    start = time.perf_counter()
    stop_at = start + seconds

    async def sender() -> None:
        while time.perf_counter() < stop_at:
            body = payloads.take()
            sent = time.perf_counter()
            problem = await post(session, url, body, payloads.size)
            samples.add(time.perf_counter() - sent, problem)

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


async def open_loop(
    session: aiohttp.ClientSession, url: str, payloads: Payloads, rate: float, seconds: float
) -> tuple[Samples, float]:
    """Sends at fixed intervals whatever the answers; latency counts from the scheduled time."""
    samples = Samples()
    interval = 1 / rate
    start = time.perf_counter()

    async def send(due: float, body: bytes) -> None:
        samples.send_lags.append(time.perf_counter() - due)
        problem = await post(session, url, body, payloads.size)
        samples.add(time.perf_counter() - due, problem)

    tasks = []
    for number in range(round(rate * seconds)):
        due = start + number * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(due, payloads.take())))
    await asyncio.gather(*tasks)
    return samples, time.perf_counter() - start


# ---------------------------------------------------------------------------- results


@dataclass
class Result:
    phase: str
    target: str
    alerts_per_request: int
    load: str
    seconds: float
    requests: int
    errors: int
    requests_per_s: float
    alerts_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_percent: float
    client_cpu_percent: float
    postgres_cpu_percent: float | None
    send_lag_p99_ms: float | None
    bodies_built_during_run: int
    error_samples: dict[str, int]
    events_queued: int | None = None  # by the service run, warm-up included
    events_handled: int | None = None  # of those, by its dispatcher before it was stopped
    longest_wal_flush_ms: float | None = None  # seen during the service run


def percentile_ms(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


@dataclass
class CpuClock:
    """CPU time of the server, this process and (when local) Postgres, from its start."""

    server: Server
    with_postgres: bool
    started: float = field(default_factory=time.perf_counter)
    start_server: float = 0.0
    start_client: float = field(default_factory=time.process_time)
    start_postgres: float = 0.0

    def __post_init__(self) -> None:
        self.start_server = self.server.cpu_seconds()
        self.start_postgres = postgres_cpu_seconds() if self.with_postgres else 0.0

    def percents(self) -> tuple[float, float, float | None]:
        wall = time.perf_counter() - self.started
        server = (self.server.cpu_seconds() - self.start_server) / wall * 100
        client = (time.process_time() - self.start_client) / wall * 100
        if not self.with_postgres:
            return server, client, None
        return server, client, (postgres_cpu_seconds() - self.start_postgres) / wall * 100


Run = Callable[[aiohttp.ClientSession, str, Payloads, float], Awaitable[tuple[Samples, float]]]


@dataclass
class Bench:
    args: argparse.Namespace
    request_numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def with_postgres(self) -> bool:
        return bool(self.args.store == "postgres")

    async def throughput(self, server: Server, size: int) -> Result:
        concurrency: int = self.args.concurrency

        async def run(
            session: aiohttp.ClientSession, url: str, payloads: Payloads, seconds: float
        ) -> tuple[Samples, float]:
            return await closed_loop(session, url, payloads, concurrency, seconds)

        load = f"closed loop, {concurrency} connections"
        return await self._measure("throughput", server, size, load, concurrency, run)

    async def latency(self, server: Server) -> Result:
        rate: float = self.args.rate

        async def run(
            session: aiohttp.ClientSession, url: str, payloads: Payloads, seconds: float
        ) -> tuple[Samples, float]:
            return await open_loop(session, url, payloads, rate, seconds)

        load = f"open loop, {rate:g} requests/s"
        return await self._measure("latency", server, 1, load, OPEN_LOOP_CONNECTIONS, run)

    async def _measure(
        self, phase: str, server: Server, size: int, load: str, connections: int, run: Run
    ) -> Result:
        progress(f"{phase}: {size} alert(s) per request -> {server.name}")
        payloads = Payloads(size, self.request_numbers)
        connector = aiohttp.TCPConnector(limit=connections)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            warm, warm_seconds = await run(session, server.alerts_url, payloads, self.args.warmup)
            payloads.prebuild(self._bodies_needed(warm, warm_seconds))
            clock = CpuClock(server, self.with_postgres)
            samples, seconds = await run(session, server.alerts_url, payloads, self.args.duration)
            cpu = clock.percents()
        return summarize(phase, server.name, payloads, load, samples, seconds, cpu)

    def _bodies_needed(self, warm: Samples, warm_seconds: float) -> int:
        """Twice the warm-up's pace over the measured run, plus one per connection."""
        pace = (len(warm.latencies) + warm.errors.total()) / warm_seconds
        duration: float = self.args.duration
        return math.ceil(2 * pace * duration) + OPEN_LOOP_CONNECTIONS


def summarize(
    phase: str,
    target: str,
    payloads: Payloads,
    load: str,
    samples: Samples,
    seconds: float,
    cpu: tuple[float, float, float | None],
) -> Result:
    ok = len(samples.latencies)
    return Result(
        phase=phase,
        target=target,
        alerts_per_request=payloads.size,
        load=load,
        seconds=round(seconds, 3),
        requests=ok,
        errors=samples.errors.total(),
        requests_per_s=ok / seconds,
        alerts_per_s=ok * payloads.size / seconds,
        p50_ms=percentile_ms(samples.latencies, 0.50),
        p99_ms=percentile_ms(samples.latencies, 0.99),
        server_cpu_percent=cpu[0],
        client_cpu_percent=cpu[1],
        postgres_cpu_percent=cpu[2],
        send_lag_p99_ms=percentile_ms(samples.send_lags, 0.99),
        bodies_built_during_run=payloads.built_late,
        error_samples=dict(samples.errors.most_common(3)),
    )


# ---------------------------------------------------------------------------- report


@dataclass
class Target:
    statement: str
    passed: bool
    measured: str


def ratios(results: list[Result]) -> dict[int, float]:
    """Service alerts/s over bare alerts/s, per payload size."""
    by_key = {(r.target, r.alerts_per_request): r for r in results if r.phase == "throughput"}
    return {
        size: by_key["service", size].alerts_per_s / by_key["bare", size].alerts_per_s
        for size in PAYLOAD_SIZES
        if by_key["bare", size].alerts_per_s > 0
    }


def targets(results: list[Result], store: str) -> list[Target]:
    ratio = ratios(results).get(100, 0.0)
    service_100 = next(r for r in results if r.target == "service" and r.alerts_per_request == 100)
    latency = next(r for r in results if r.target == "service" and r.phase == "latency")
    p99 = latency.p99_ms if latency.p99_ms is not None else math.inf
    note = "" if store == "postgres" else "; measured with the sqlite store"
    return [
        Target(
            "with the Postgres store: at least 30% of the bare handler's alerts/s"
            " with 100-alert payloads",
            ratio >= RATIO_TARGET and service_100.errors == 0,
            f"{ratio:.0%}, {service_100.errors} errors{note}",
        ),
        Target(
            "p99 under 25 ms at 500 requests/s of 1-alert payloads",
            p99 < P99_TARGET_MS and latency.errors == 0,
            f"p99 {p99:.1f} ms at {latency.requests_per_s:.0f} requests/s,"
            f" {latency.errors} errors{note}",
        ),
    ]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cpu_columns(result: Result) -> str:
    return (
        f"{result.server_cpu_percent:7.0f}% {result.client_cpu_percent:7.0f}%"
        f" {fmt(result.postgres_cpu_percent, 0):>7}%"
    )


def throughput_table(results: list[Result], concurrency: int) -> list[str]:
    lines = [
        f"Throughput: closed loop, {concurrency} keep-alive connections",
        "alerts/req  target       req/s    alerts/s  p50 ms  p99 ms  errors"
        "  server CPU  client   postgres",
    ]
    for r in results:
        lines.append(
            f"{r.alerts_per_request:>10}  {r.target:<8} {r.requests_per_s:>9.0f}"
            f" {r.alerts_per_s:>11.0f} {fmt(r.p50_ms):>7} {fmt(r.p99_ms):>7} {r.errors:>7}"
            f"    {cpu_columns(r)}"
        )
    found = ratios(results)
    lines += service_run_lines(results)
    lines.append(
        "service/bare alerts/s: "
        + ", ".join(f"{size} alert(s) {found[size]:.0%}" for size in PAYLOAD_SIZES if size in found)
    )
    return lines


def flush(result: Result) -> str:
    """A lower bound: polls are at least WAL_POLL_MS apart (more while the load generator is
    busy), and a flush seen by one poll only is reported as shorter than that."""
    ms = result.longest_wal_flush_ms or 0.0
    return f"{ms:.0f} ms" if ms >= WAL_POLL_MS else f"under {WAL_POLL_MS:.0f} ms"


def service_run_lines(results: list[Result]) -> list[str]:
    """How much of the remediation work the service runs alongside its intake got done, and
    the disk's worst moment meanwhile."""
    return [
        f"  service, {r.alerts_per_request} alert(s): its dispatcher finished"
        f" {r.events_handled:,} of the {r.events_queued:,} events queued"
        + ("" if r.longest_wal_flush_ms is None else f"; longest commit flush {flush(r)}")
        for r in results
        if r.events_queued is not None and r.events_handled is not None
    ]


def latency_table(results: list[Result], rate: float) -> list[str]:
    lines = [
        f"Latency: open loop at {rate:g} requests/s of 1-alert payloads,"
        " from each request's scheduled time",
        "target     achieved/s  p50 ms  p99 ms  errors  send lag p99 ms"
        "  server CPU  client   postgres",
    ]
    for r in results:
        lines.append(
            f"{r.target:<8} {r.requests_per_s:>12.0f} {fmt(r.p50_ms):>7} {fmt(r.p99_ms):>7}"
            f" {r.errors:>7} {fmt(r.send_lag_p99_ms, 2):>15}    {cpu_columns(r)}"
        )
    return lines + service_run_lines(results)


def report_lines(
    results: list[Result], found: list[Target], rss: dict[str, int | None], args: argparse.Namespace
) -> list[str]:
    lines = throughput_table([r for r in results if r.phase == "throughput"], args.concurrency)
    lines += ["", *latency_table([r for r in results if r.phase == "latency"], args.rate), ""]
    lines.append("Targets (from the issue)")
    lines += [f"  {'PASS' if t.passed else 'FAIL'}  {t.statement} ({t.measured})" for t in found]
    lines.append("")
    lines.append(
        "Peak RSS (VmHWM): "
        + ", ".join(f"{name} {fmt(kib / 1024 if kib else None)} MiB" for name, kib in rss.items())
    )
    problems = [r for r in results if r.error_samples]
    lines += [f"Errors against {r.target} ({r.phase}): {r.error_samples}" for r in problems]
    lines += [
        f"Note: the load generator used {r.client_cpu_percent:.0f}% of a core against bare with"
        f" {r.alerts_per_request} alert(s): that ceiling is client-bound, a lower bound"
        for r in results
        if r.target == "bare" and r.phase == "throughput" and r.client_cpu_percent >= CLIENT_BOUND
    ]
    late = [r for r in results if r.bodies_built_during_run]
    lines += [
        f"Note: {r.bodies_built_during_run} bodies built during the {r.phase} run of"
        f" {r.alerts_per_request} alert(s) against {r.target} (pre-built pool ran out)"
        for r in late
    ]
    return lines


def progress(message: str) -> None:
    """One overwritten status line while running, only on a terminal."""
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="" if message else "\r", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- main


@dataclass
class Measured:
    results: list[Result]
    peak_rss_kib: dict[str, int | None]
    service_log: str


async def measure_all(
    bench: Bench,
    bare: Server,
    fresh_service: Callable[[], AbstractAsyncContextManager[tuple[Server, str]]],
) -> Measured:
    """Each service run gets a service process and an empty store of its own. The events an
    earlier run queued would otherwise keep its dispatcher and PostgreSQL busy through every
    run after it, the bare handler's included."""
    results = []
    service_rss: list[int] = []
    service_log = ""

    async def on_service(measure: Callable[[Server], Awaitable[Result]]) -> None:
        nonlocal service_log
        async with fresh_service() as (service, database_url):
            async with longest_wal_flush(database_url) as wal_flush:
                result = await measure(service)
            service_rss.append(service.peak_rss_kib() or 0)
            service_log = service.log_tail(3)
            queued, handled = await queue_counts(database_url)
            results.append(
                replace(
                    result,
                    events_queued=queued,
                    events_handled=handled,
                    longest_wal_flush_ms=wal_flush[0] * 1000 if bench.with_postgres else None,
                )
            )

    for size in PAYLOAD_SIZES:
        results.append(await bench.throughput(bare, size))
        await on_service(functools.partial(bench.throughput, size=size))
    results.append(await bench.latency(bare))
    await on_service(bench.latency)
    progress("")
    rss = {"service": max(service_rss) or None, "bare": bare.peak_rss_kib()}
    return Measured(results, rss, service_log)


async def benchmark(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="remediator-bench-") as workdir:
        logs = Path(workdir)

        @contextlib.asynccontextmanager
        async def fresh_service() -> AsyncIterator[tuple[Server, str]]:
            async with (
                database(args, logs) as database_url,
                started(spawn_service(database_url, logs), is_healthy) as service,
            ):
                yield service, database_url

        print(
            f"remediator intake benchmark: store {describe_store(args)}\n"
            f"{args.duration:g} s per run after {args.warmup:g} s warm-up;"
            f" {os.cpu_count()} CPUs, Python {platform.python_version()}\n"
        )
        async with started(spawn_bare(logs), accepts_connections) as bare:
            measured = await measure_all(Bench(args), bare, fresh_service)
    found = targets(measured.results, args.store)
    print("\n".join(report_lines(measured.results, found, measured.peak_rss_kib, args)))
    if measured.service_log:
        print(f"Service log (last lines):\n{measured.service_log}")
    if args.json:
        write_json(args, measured.results, found, measured.peak_rss_kib)
    return 0


def write_json(
    args: argparse.Namespace, results: list[Result], found: list[Target], rss: dict[str, int | None]
) -> None:
    figures: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "bare_server")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": [asdict(r) for r in results],
        "service_over_bare_alerts_per_s": {str(k): v for k, v in ratios(results).items()},
        "targets": [asdict(t) for t in found],
        "peak_rss_kib": rss,
    }
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--database-url",
        default="postgresql://127.0.0.1:5432/test",
        help="PostgreSQL to create the bench schema in (default: %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each run")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_server is not None:
        run_bare_server(args.bare_server)
        return 0
    return run_benchmark(benchmark(args))


def run_benchmark(benchmark: Coroutine[Any, Any, int]) -> int:
    """Run a benchmark to its exit code; an interrupt or a failure to reach a server is one
    line, not a traceback."""
    try:
        return asyncio.run(benchmark)
    except KeyboardInterrupt:
        progress("")
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
        progress("")
        print(f"bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
