"""Benchmark of approvals: from an operator's approval to the change it lets through.

Run it from the repository root:

    .venv/bin/python bench/approvals.py                    # PostgreSQL, 1 and 2 replicas
    .venv/bin/python bench/approvals.py --store sqlite     # SQLite, 1 replica
    .venv/bin/python bench/approvals.py --quick            # 20 alerts, under a minute
    .venv/bin/python bench/approvals.py --rate 5 --json approvals.json

For each replica count (`--replicas`, default 1,2; SQLite: 1 only) it starts that many
`python -m remediator serve` processes in live mode (`REMEDIATOR_MODE=live`) on free loopback
ports and an empty store (PostgreSQL: a fresh schema `bench_<random>` in --database-url,
dropped afterwards; SQLite: a new temporary file). Several replicas share the guards through a
redis-server of the bench's own (--redis-url names another), as a deployment's replicas do.
The policy directory the bench writes into a temporary directory holds:

- `bench-approval.yaml` (alertname BenchApproval): one step, `http.request` PUT to a loopback
  sink of the bench, `/fix/<the alert's app label>`, with `approval: {approvers: [operator]}`:
  the change a person approves first. `operator` is the identity of REMEDIATOR_API_TOKEN;
- `guardrails.yaml`: the sink's 127.0.0.1:PORT allowed as a host, no blast radius, a
  concurrency cap far above the alerts;
- `escalation.yaml`: warnings are P3, told on Slack, pointed at the same sink, so that each
  approval request is announced through the outbox as in a deployment.

The sink runs in this process's event loop and records, with time.time(), when each PUT
arrives: that is "the change". The header `X-Bench-Replica` (from each replica's environment,
through the step's `headers_from_env`) says which replica made it.

The run: --alerts alerts, each on its own target (app `<run>-<number>`), posted one per
notification round-robin across the replicas; the bench waits until every one has a pending
approval request (`GET /api/v1/approvals`). Then it approves them with `POST
/api/v1/approvals/{id}` `{"decision": "approve"}`, round-robin across the replicas: one at a
time, each after the change before it arrived (default), or open loop at --rate approvals a
second. With 2 replicas the replica that took an approval and the one whose dispatcher claims
the event queued again are often not the same: the "other" column counts those changes.

Times are wall clock on one machine: "200 -> change" is from the moment the approval's 200 was
read to the change's arrival at the sink; "sent -> change" from the moment the POST was sent
(the 200 and the change race: the replica that took the approval wakes its dispatcher before
answering). Target (issue #19): p95 of 200 -> change under 2 s, with every change made once.
The bench prints a table with PASS/FAIL; `--json FILE` writes every figure. Client, services,
sink and database share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402

from intake import (  # noqa: E402
    HEADERS,
    SAMPLE,
    Server,
    database,
    free_port,
    is_healthy,
    percentile_ms,
    progress,
    run_benchmark,
    wait_until,
)
from storm import Cpu, load_average, pct  # noqa: E402

ALERTNAME = "BenchApproval"
APPROVER = "operator"  # the identity of REMEDIATOR_API_TOKEN (REMEDIATOR_API_IDENTITY's default)
API_TOKEN = "bench-operator"
OPERATOR = {"Authorization": f"Bearer {API_TOKEN}"}
REPLICA_ENV, REPLICA_HEADER = "BENCH_APPROVALS_REPLICA", "X-Bench-Replica"
SLACK_URL_ENV = "BENCH_APPROVALS_SLACK_URL"
TARGET_P95_S = 2.0
POLL_S = 0.05  # how often the pending requests are listed while waiting for them
LOG_LINES = 5  # of a service's log (warnings and errors), printed after its run


# ---------------------------------------------------------------------------- the sink


@dataclass(frozen=True)
class Change:
    at: float  # time.time() when the PUT arrived
    replica: str  # the replica that made it (its X-Bench-Replica header)


class Sink:
    """The application the policy changes (`PUT /fix/{app}`) and the Slack channel: records
    when each change arrives and which replica made it; a change that arrives twice is
    counted in `repeats`."""

    def __init__(self) -> None:
        self.changes: dict[str, Change] = {}
        self.repeats: Counter[str] = Counter()
        self.slack_messages = 0
        self._arrived: dict[str, asyncio.Event] = {}

    def arrival(self, app: str) -> asyncio.Event:
        return self._arrived.setdefault(app, asyncio.Event())

    async def fix(self, request: web.Request) -> web.Response:
        at = time.time()
        app = request.match_info["app"]
        if app in self.changes:
            self.repeats[app] += 1
        else:
            self.changes[app] = Change(at, request.headers.get(REPLICA_HEADER, "?"))
            self.arrival(app).set()
        await request.read()
        return web.json_response({"fixed": app})

    async def slack(self, request: web.Request) -> web.Response:
        await request.read()
        self.slack_messages += 1
        return web.Response(text="ok")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Listen on a free loopback port; yields the sink's URL."""
        app = web.Application()
        app.router.add_put("/fix/{app}", self.fix)
        app.router.add_post("/slack", self.slack)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


# ---------------------------------------------------------------------------- policies


def write_policies(directory: Path, sink: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    host = sink.removeprefix("http://")
    (directory / "guardrails.yaml").write_text(
        f"allowed_namespaces:\n  - bench\nallowed_hosts:\n  - '{host}'\n"
        f"max_concurrent_runs: 100000\nmax_targets: null\napprovers:\n  - {APPROVER}\n"
    )
    (directory / "escalation.yaml").write_text(
        f"""severity_labels:
  critical: P1
  warning: P3
default_level: P3
levels:
  P1:
    channels: [slack]
    respond_within: 15m
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
  slack:
    webhook_url_env: {SLACK_URL_ENV}
"""
    )
    (directory / "bench-approval.yaml").write_text(
        f"""name: bench-approval
match:
  - alertname="{ALERTNAME}"
target:
  kind: Application
  name: "{{{{ labels.app }}}}"
  url: "{sink}/fix/{{{{ labels.app }}}}"
steps:
  - id: fix
    action: http.request
    params:
      method: PUT
      url: "{sink}/fix/{{{{ labels.app }}}}"
      headers_from_env: {{{REPLICA_HEADER}: {REPLICA_ENV}}}
    approval: {{approvers: [{APPROVER}], ttl: 1h}}
rate_limit:
  windows:
    - {{max: 1000000, per: 1h}}
"""
    )


# ---------------------------------------------------------------------------- services


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    policies: Path
    sink: str
    log_tails: dict[str, str] = field(default_factory=dict)  # what the services logged

    def spawn(self, database_url: str, name: str, redis_url: str | None) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
        env.update(
            {
                "REMEDIATOR_MODE": "live",
                "REMEDIATOR_LISTEN": f"127.0.0.1:{port}",
                "REMEDIATOR_DATABASE_URL": database_url,
                "REMEDIATOR_POLICIES": str(self.policies),
                "REMEDIATOR_WEBHOOK_TOKEN": HEADERS["Authorization"].removeprefix("Bearer "),
                "REMEDIATOR_API_TOKEN": API_TOKEN,
                "REMEDIATOR_LOG_LEVEL": "warning",
                REPLICA_ENV: name,
                SLACK_URL_ENV: f"{self.sink}/slack",
            }
        )
        if redis_url is not None:
            env["REMEDIATOR_REDIS_URL"] = redis_url
        env.update(setting.split("=", 1) for setting in self.args.set)
        return Server.spawn(name, ["-m", "remediator", "serve"], env, port, self.workdir)

    @contextlib.asynccontextmanager
    async def run(self, name: str, replicas: int) -> AsyncIterator[list[Server]]:
        """A fresh store and `replicas` services on it, started one after another (the first
        migrates it), sharing their guards through Redis when there are several."""
        async with (
            database(self.args, self.workdir) as database_url,
            self.redis(name, replicas) as redis_url,
        ):
            servers: list[Server] = []
            try:
                for number in range(replicas):
                    servers.append(self.spawn(database_url, f"service-{name}-{number}", redis_url))
                    await wait_until(lambda: is_healthy(servers[-1]), servers[-1])
                yield servers
            finally:
                for server in servers:
                    server.stop()
                    if tail := server.log_tail(LOG_LINES).strip():
                        self.log_tails[server.name] = tail

    @contextlib.asynccontextmanager
    async def redis(self, name: str, replicas: int) -> AsyncIterator[str | None]:
        """None for one replica (its guards in process); else --redis-url, or a redis-server
        of the bench's own on a free port."""
        if replicas == 1 or self.args.redis_url:
            yield self.args.redis_url if replicas > 1 else None
            return
        binary = shutil.which("redis-server")
        if binary is None:
            why = "several replicas share their guards through Redis"
            raise RuntimeError(f"{why}: install redis-server, or give --redis-url")
        server = RedisServer(binary, free_port(), self.workdir / f"redis-{name}.log")
        server.start()
        try:
            yield f"redis://127.0.0.1:{server.port}/0"
        finally:
            server.stop()


# ---------------------------------------------------------------------------- alerts


def notification(app: str) -> bytes:
    """One firing BenchApproval alert on its own target, `app` (also its fingerprint)."""
    template = json.loads(SAMPLE.read_text())["body"]
    starts_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert = {
        "status": "firing",
        "labels": {"alertname": ALERTNAME, "app": app, "severity": "warning"},
        "annotations": {"summary": f"{app} needs a change a person approves"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": app,
    }
    body = {**template, "alerts": [alert], "groupKey": f"{{}}:{{app={app}}}"}
    return json.dumps(body, separators=(",", ":")).encode()


async def post_alerts(
    session: aiohttp.ClientSession, servers: list[Server], apps: list[str]
) -> None:
    """Each app's alert in a notification of its own, round-robin across the replicas."""

    async def post(number: int, app: str) -> None:
        url = servers[number % len(servers)].alerts_url
        async with session.post(url, data=notification(app), headers=HEADERS) as answer:
            if answer.status != 200:
                said = (await answer.text())[:200]
                raise RuntimeError(f"posting {app}'s alert: HTTP {answer.status}: {said}")

    await asyncio.gather(*(post(number, app) for number, app in enumerate(apps)))


async def pending_requests(
    session: aiohttp.ClientSession, server: Server, apps: set[str], timeout: float
) -> tuple[dict[str, str], float]:
    """Poll `GET /api/v1/approvals` until every app's alert has a pending request; the
    request id by app, and the seconds it took."""
    started = time.monotonic()
    found: dict[str, str] = {}
    while True:
        url = f"{server.url}/api/v1/approvals?state=pending&limit=1000"
        async with session.get(url, headers=OPERATOR) as answer:
            if answer.status != 200:
                said = (await answer.text())[:200]
                raise RuntimeError(f"GET /api/v1/approvals: HTTP {answer.status}: {said}")
            listed = (await answer.json())["approvals"]
        found = {r["fingerprint"]: r["id"] for r in listed if r["fingerprint"] in apps}
        if len(found) == len(apps):
            return found, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(
                f"only {len(found)} of {len(apps)} alerts had a pending approval request after"
                f" {timeout:g} s (--ready-timeout)"
            )
        await asyncio.sleep(POLL_S)


# ---------------------------------------------------------------------------- approving


@dataclass
class Approval:
    """One approval as the bench gave it, and the change it let through."""

    app: str
    request_id: str
    via: str  # the replica the approval was posted to
    sent: float = 0.0  # time.time() when the POST was sent
    answered: float | None = None  # when its 200 was read
    problem: str | None = None  # what was wrong instead of a 200
    change: Change | None = None

    @property
    def to_change(self) -> float | None:
        if self.answered is None or self.change is None:
            return None
        return self.change.at - self.answered

    @property
    def sent_to_change(self) -> float | None:
        return None if self.change is None else self.change.at - self.sent


async def approve(session: aiohttp.ClientSession, server: Server, approval: Approval) -> None:
    url = f"{server.url}/api/v1/approvals/{approval.request_id}"
    approval.sent = time.time()
    try:
        async with session.post(url, json={"decision": "approve"}, headers=OPERATOR) as answer:
            text = await answer.text()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        approval.problem = f"{type(exc).__name__}: {exc}"
        return
    if status == 200:
        approval.answered = time.time()
    else:
        approval.problem = f"HTTP {status}: {text[:200]}"


async def one_at_a_time(
    session: aiohttp.ClientSession,
    servers: list[Server],
    approvals: list[Approval],
    sink: Sink,
    timeout: float,
) -> None:
    """Approve each after the change before it arrived (or --change-timeout passed)."""
    by_name = {server.name: server for server in servers}
    for number, approval in enumerate(approvals):
        progress(f"approving {number + 1}/{len(approvals)}")
        await approve(session, by_name[approval.via], approval)
        if approval.problem is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sink.arrival(approval.app).wait(), timeout)


async def paced(
    session: aiohttp.ClientSession, servers: list[Server], approvals: list[Approval], rate: float
) -> None:
    """Open loop: one approval every 1/rate s, whatever the changes before it."""
    by_name = {server.name: server for server in servers}
    tasks = []
    start = time.perf_counter()
    for number, approval in enumerate(approvals):
        delay = start + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        progress(f"approving {number + 1}/{len(approvals)} at {rate:g}/s")
        tasks.append(asyncio.create_task(approve(session, by_name[approval.via], approval)))
    await asyncio.gather(*tasks)


async def every_change(sink: Sink, apps: Sequence[str], timeout: float) -> None:
    """Wait until every app's change arrived, or `timeout` s."""
    waiting = [sink.arrival(app).wait() for app in apps]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waiting), timeout)


# ---------------------------------------------------------------------------- one run


async def measure(bench: Bench, sink: Sink, replicas: int) -> dict[str, Any]:
    """One replica count: alerts posted, every request pending, each approved; the figures."""
    args = bench.args
    name = f"r{replicas}"
    apps = [f"{name}-{number:04d}" for number in range(args.alerts)]
    async with (
        bench.run(name, replicas) as servers,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
    ):
        progress(f"{replicas} replica(s): posting {len(apps)} alerts")
        await post_alerts(session, servers, apps)
        progress(f"{replicas} replica(s): waiting for {len(apps)} pending approval requests")
        ids, ready_s = await pending_requests(session, servers[0], set(apps), args.ready_timeout)
        approvals = [
            Approval(app, ids[app], servers[number % len(servers)].name)
            for number, app in enumerate(apps)
        ]
        cpu = Cpu(servers, args.store == "postgres")
        if args.rate > 0:
            await paced(session, servers, approvals, args.rate)
        else:
            await one_at_a_time(session, servers, approvals, sink, args.change_timeout)
        await every_change(sink, apps, args.change_timeout)
        usage = cpu.percents()
        progress("")
    for approval in approvals:
        approval.change = sink.changes.get(approval.app)
    return figures(approvals, sink, ready_s, usage)


def figures(
    approvals: list[Approval],
    sink: Sink,
    ready_s: float,
    cpu: dict[str, float | None],
) -> dict[str, Any]:
    to_change = [a.to_change for a in approvals if a.to_change is not None]
    sent_to_change = [a.sent_to_change for a in approvals if a.sent_to_change is not None]
    answers = [a.answered - a.sent for a in approvals if a.answered is not None]
    missing = sum(1 for a in approvals if a.answered is not None and a.change is None)
    problems = Counter(a.problem for a in approvals if a.problem is not None)
    repeats = sum(sink.repeats[a.app] for a in approvals)
    early = sum(1 for a in approvals if a.change is not None and a.change.at < a.sent)
    p95 = percentile_ms(to_change + [float("inf")] * missing, 0.95)
    passed = (
        p95 is not None and p95 < TARGET_P95_S * 1000 and not problems and not repeats and not early
    )
    return {
        "alerts": len(approvals),
        "pending_after_s": round(ready_s, 2),
        "approved": len(answers),
        "changed": len(to_change),
        "missing": missing,
        "changed_before_approval": early,
        "changed_twice": repeats,
        "errors": dict(problems.most_common(5)),
        "answer_p50_ms": percentile_ms(answers, 0.50),
        "answer_p95_ms": percentile_ms(answers, 0.95),
        "to_change_p50_ms": percentile_ms(to_change, 0.50),
        "to_change_p95_ms": p95,
        "to_change_max_ms": percentile_ms(to_change + [float("inf")] * missing, 1.0),
        "sent_to_change_p50_ms": percentile_ms(sent_to_change, 0.50),
        "sent_to_change_p95_ms": percentile_ms(sent_to_change, 0.95),
        "changed_by_other_replica": sum(
            1 for a in approvals if a.change is not None and a.change.replica != a.via
        ),
        "changes_by_replica": dict(Counter(a.change.replica for a in approvals if a.change)),
        "approvals": [
            {
                "app": a.app,
                "via": a.via,
                "sent": a.sent,
                "answered": a.answered,
                "changed": None if a.change is None else a.change.at,
                "changed_by": None if a.change is None else a.change.replica,
                "problem": a.problem,
            }
            for a in approvals
        ],
        **cpu,
        "target": {"p95_ms_under": TARGET_P95_S * 1000, "passed": passed},
    }


# ---------------------------------------------------------------------------- report


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:,.0f}"


HEADER = (
    "  store     replicas  approved  changed  missing  other   p50 ms   p95 ms   max ms"
    "   sent->change p95   answer p95   service  postgres  verdict"
)


def row(store: str, replicas: int, f: dict[str, Any]) -> str:
    return (
        f"  {store:<9} {replicas:>8} {f['approved']:>9} {f['changed']:>8} {f['missing']:>8}"
        f" {f['changed_by_other_replica']:>6} {ms(f['to_change_p50_ms']):>8}"
        f" {ms(f['to_change_p95_ms']):>8} {ms(f['to_change_max_ms']):>8}"
        f" {ms(f['sent_to_change_p95_ms']):>15} ms {ms(f['answer_p95_ms']):>9} ms"
        f" {f['service_cpu_percent']:>8.0f}% {pct(f['postgres_cpu_percent']):>8}"
        f"  {'PASS' if f['target']['passed'] else 'FAIL'}"
    )


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> list[str]:
    how = "one at a time" if args.rate <= 0 else f"open loop at {args.rate:g}/s"
    lines = [
        f"Approve -> change: {args.alerts} alerts, each on its own target; each approved"
        f" ({how}) with POST /api/v1/approvals/{{id}}, round-robin across the replicas",
        HEADER,
    ]
    for count, f in results.items():
        lines.append(row(args.store, int(count), f))
    lines.append(
        "  (p50/p95/max: from the approval's 200 to the change at the sink; other: changes made"
        " by a replica other than the one approved on)"
    )
    for count, f in results.items():
        notes = [f"every request pending {f['pending_after_s']:.1f} s after the alerts"]
        if f["errors"]:
            notes.append(f"approvals refused or failed: {f['errors']}")
        if f["changed_twice"]:
            notes.append(f"changes made twice: {f['changed_twice']}")
        if f["changed_before_approval"]:
            notes.append(f"changed before its approval was sent: {f['changed_before_approval']}")
        lines.append(f"  {count} replica(s): " + "; ".join(notes))
    for count, f in results.items():
        passed = "PASS" if f["target"]["passed"] else "FAIL"
        lines.append(
            f"  {passed}  {count} replica(s): p95 approve -> change under {TARGET_P95_S:g} s"
            f" ({ms(f['to_change_p95_ms'])} ms), every change made once, after its approval"
        )
    return lines


def describe(args: argparse.Namespace) -> str:
    store = "sqlite (a temporary file per run)"
    if args.store == "postgres":
        store = f"postgres ({args.database_url}, a fresh schema per run)"
    return (
        f"remediator approvals benchmark: store {store}; replicas"
        f" {','.join(map(str, counts(args)))}\n{os.cpu_count()} CPUs, Python"
        f" {platform.python_version()}, services in live mode; load average {load_average()}"
        " (other work on the machine skews every figure)\n"
    )


def counts(args: argparse.Namespace) -> list[int]:
    """The replica counts to measure: several replicas share a PostgreSQL store only."""
    return args.replicas if args.store == "postgres" else [c for c in args.replicas if c == 1]


# ---------------------------------------------------------------------------- main


async def benchmark(args: argparse.Namespace) -> int:
    print(describe(args))
    sink = Sink()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="remediator-approvals-") as workdir:
        async with sink.serving() as sink_url:
            policies = Path(workdir) / "policies"
            write_policies(policies, sink_url)
            bench = Bench(args, Path(workdir), policies, sink_url)
            for replicas in counts(args):
                results[str(replicas)] = await measure(bench, sink, replicas)
    lines = report(args, results)
    for server, tail in bench.log_tails.items():
        lines.append(f"  {server} logged (last lines):")
        lines += [f"    {line[:300]}" for line in tail.splitlines()]
    lines.append(f"  load average after it: {load_average()}")
    print("\n".join(lines) + "\n", flush=True)
    if args.json:
        write_json(args, results)
    failed = [count for count, f in results.items() if not f["target"]["passed"]]
    print(f"Target failed with {', '.join(failed)} replica(s)" if failed else "Every target met")
    return 0


def write_json(args: argparse.Namespace, results: dict[str, Any]) -> None:
    figures = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "replicas": results,
    }
    Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")


def int_list(text: str) -> list[int]:
    found = [int(part) for part in text.split(",") if part.strip()]
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"replica counts of 1 or more, e.g. 1,2; got {text!r}")
    return found


QUICK = {"alerts": 20}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--store", choices=("postgres", "sqlite"), default="postgres")
    add("--database-url", default="postgresql://127.0.0.1:5432/test", help="PostgreSQL to use")
    add("--replicas", type=int_list, default=[1, 2], help="replica counts (default: 1,2)")
    add("--alerts", type=int, default=50, help="alerts, each approved once (default: 50)")
    add("--rate", type=float, default=0.0, help="approvals/s, open loop (default: one at a time)")
    add("--change-timeout", type=float, default=30.0, help="s to wait for a change")
    add("--ready-timeout", type=float, default=120.0, help="s to wait for the pending requests")
    add("--redis-url", help="Redis of several replicas (default: a redis-server of the bench's)")
    add("--quick", action="store_true", help="shortened counts: " + str(QUICK))
    add(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a REMEDIATOR_* setting of the services under test (repeatable)",
    )
    add("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for name, value in QUICK.items():
            if f"--{name.replace('_', '-')}" not in given:
                setattr(args, name, value)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(benchmark(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
