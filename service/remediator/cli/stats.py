"""`remediator policies stats`: the ledger of what works, per policy and per action, from the
store (see remediator.engine.ledger). Read-only."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from remediator.cli.table import table
from remediator.config import Settings, option_name
from remediator.engine.ledger import (
    ALL_ACTIONS,
    DEFAULT_WINDOW,
    Durations,
    LedgerEntry,
    PolicyStats,
    ledger,
)
from remediator.policy.durations import format_duration, parse_duration
from remediator.policy.loader import PolicyErrors, load_policies
from remediator.store import StoreUnavailable, open_store

BAD_INPUT = 2

COLUMNS = (
    "POLICY",
    "ACTION",
    "RUNS",
    "VERIFIED",
    "EFFECTIVE",
    "RECURRED",
    "FAILED",
    "BLOCKED",
    "ALERTS",
    "PAGES AVOIDED",
    "REMEDIATED p50/p90",
    "ESCALATED p50/p90",
)


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "stats", help="per policy and action: runs, effective fixes, failures, pages avoided"
    )
    command.add_argument("--since", default="30d", help="runs started this recent (default 30d)")
    command.add_argument(
        "--policies",
        dest="directory",
        type=Path,
        metavar="DIR",
        help="policy files, for each policy's recurs_within (default: REMEDIATOR_POLICIES)",
    )
    command.add_argument(
        option_name("database_url"),
        dest="database_url",
        metavar="URL",
        help="the store to read (default: REMEDIATOR_DATABASE_URL)",
    )
    command.add_argument("--json", action="store_true", help="one JSON document")
    command.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    return run(settings, args, sys.stdout, sys.stderr, datetime.now(UTC))


def run(
    settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO, now: datetime
) -> int:
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"remediator: --since: {exc}", file=err)
        return BAD_INPUT
    directory: Path = args.directory or settings.policies
    try:
        policies = load_policies(directory)
        entries = asyncio.run(_read(settings.database_url, now - since))
    except PolicyErrors as exc:
        for error in exc.errors:
            print(f"remediator: {error}", file=err)
        return BAD_INPUT
    except StoreUnavailable as exc:
        print(f"remediator: store unavailable: {exc}", file=err)
        return BAD_INPUT
    windows = {p.name: p.recurs_within or DEFAULT_WINDOW for p in policies.policies}
    stats = ledger(entries, windows, now)
    if args.json:
        document = {
            "since": (now - since).isoformat(),
            "default_window": format_duration(DEFAULT_WINDOW),
            "policies": [stats_json(row) for row in stats],
        }
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
    elif not stats:
        print(f"no policy runs since {format_duration(since)} ago", file=out)
    else:
        print(stats_table(stats), file=out)
    return 0


async def _read(database_url: str, since: datetime) -> list[LedgerEntry]:
    store = await open_store(database_url, pool=(1, 1))
    try:
        return await store.ledger_since(since)
    finally:
        await store.close()


def stats_table(stats: list[PolicyStats]) -> str:
    rows = [COLUMNS]
    for row in stats:
        avoided = row.pages_avoided
        rows.append(
            (
                row.policy if row.action == ALL_ACTIONS else "",
                "(all)" if row.action == ALL_ACTIONS else row.action,
                str(row.runs),
                str(row.verified),
                str(row.effective),
                str(row.recurred),
                str(row.failed),
                str(row.blocked),
                str(row.alerts),
                "-" if avoided is None else f"{avoided:.0%} ({row.unpaged}/{row.alerts})",
                _durations(row.remediated),
                _durations(row.escalated),
            )
        )
    return table(rows)


def stats_json(row: PolicyStats) -> dict[str, Any]:
    return dataclasses.asdict(row) | {"pages_avoided": row.pages_avoided}


def _durations(durations: Durations) -> str:
    if durations.p50 is None or durations.p90 is None:
        return "-"
    p50, p90 = (
        format_duration(timedelta(seconds=round(s))) for s in (durations.p50, durations.p90)
    )
    return f"{p50}/{p90} (n={durations.count})"
