"""`remediator policies replay`: stored alerts, or a file of webhook payloads, through a policy
set on a simulated clock, and the diff against the set at a git revision. Read-only: the store
is only read, and nothing acts or sends (see remediator.replay)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import structlog

from remediator.config import Settings, option_help, option_name
from remediator.policy.durations import parse_duration
from remediator.policy.loader import PolicyErrors, load_policies
from remediator.policy.policyset import PolicySet
from remediator.replay.changes import (
    AlertChange,
    PayloadError,
    from_notifications,
    from_records,
    read_payloads,
)
from remediator.replay.diff import FailOn, compare
from remediator.replay.render import diff_json, diff_text, report_json, report_text
from remediator.replay.results import Mode, Report
from remediator.replay.revision import RevisionError, policies_at
from remediator.replay.simulate import replay
from remediator.store import AlertLog, StoreUnavailable, open_store

FAILED_ON = 1  # the diff has what --fail-on names
BAD_INPUT = 2  # the payloads, policies, revision or store cannot be read


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "replay", help="what stored alerts (or a payload file) would do under a policy set"
    )
    command.add_argument(
        "--policies",
        dest="directory",
        type=Path,
        metavar="DIR",
        help="the policies to replay (default: REMEDIATOR_POLICIES, else ./policies)",
    )
    command.add_argument("--against", metavar="REV", help="diff with DIR at this git revision")
    command.add_argument("--file", type=Path, metavar="FILE", help="webhook payloads (JSON/JSONL)")
    command.add_argument(
        option_name("database_url"),
        dest="database_url",
        metavar="URL",
        help="the store whose alerts to replay: " + option_help("database_url"),
    )
    command.add_argument("--since", default="7d", help="stored alerts this recent (7d)")
    command.add_argument(
        "--mode",
        dest="replay_mode",
        choices=[m.value for m in Mode],
        default=Mode.LIVE.value,
        help="whose record to tell: the service's in live or in dry-run mode (default: live)",
    )
    command.add_argument("--json", action="store_true", help="one JSON document")
    command.add_argument(
        "--fail-on",
        default="",
        metavar="KINDS",
        help=f"exit 1 when the diff has any of: {', '.join(kind.value for kind in FailOn)}",
    )
    command.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    # The guards log each block: a replay's output is its report alone.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    return run(settings, args, sys.stdout, sys.stderr)


def run(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        fail_on = _fail_on(args.fail_on, args.against)
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"remediator: {exc}", file=err)
        return BAD_INPUT
    directory: Path = args.directory or settings.policies
    try:
        policies = load_policies(directory)
        before = policies_at(directory, args.against) if args.against else None
        changes = _changes(args.file, settings.database_url, since)
    except PolicyErrors as exc:
        for error in exc.errors:
            print(f"remediator: {error}", file=err)
        return BAD_INPUT
    except (PayloadError, RevisionError) as exc:
        print(f"remediator: {exc}", file=err)
        return BAD_INPUT
    except StoreUnavailable as exc:
        print(f"remediator: store unavailable: {exc}", file=err)
        return BAD_INPUT
    mode = Mode(args.replay_mode)
    after = asyncio.run(replay(changes, policies, mode, str(directory)))
    if before is None:
        _print(report_json(after) if args.json else report_text(after), args.json, out)
        return 0
    return _diff(
        asyncio.run(_against(changes, before, mode, args.against, directory)),
        after,
        fail_on,
        args.json,
        out,
        err,
    )


async def _against(
    changes: list[AlertChange], before: PolicySet, mode: Mode, revision: str, directory: Path
) -> Report:
    return await replay(changes, before, mode, f"{revision}:{directory}")


def _diff(
    before: Report, after: Report, fail_on: set[FailOn], as_json: bool, out: TextIO, err: TextIO
) -> int:
    diff = compare(before, after)
    if as_json:
        document = {"before": report_json(before), "after": report_json(after)}
        _print(document | {"diff": diff_json(diff)}, True, out)
    else:
        _print(diff_text(before, after, diff), False, out)
    failures = diff.failures(fail_on)
    for failure in failures:
        print(f"remediator: --fail-on {failure}", file=err)
    return FAILED_ON if failures else 0


def _fail_on(value: str, against: str | None) -> set[FailOn]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    known = {kind.value: kind for kind in FailOn}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"--fail-on: unknown {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if names and against is None:
        raise ValueError("--fail-on compares two policy sets: give --against REV")
    return {known[name] for name in names}


def _changes(file: Path | None, database_url: str, since: timedelta) -> list[AlertChange]:
    if file is not None:
        return from_notifications(read_payloads(file))
    return asyncio.run(stored_changes(database_url, since))


async def stored_changes(database_url: str, since: timedelta) -> list[AlertChange]:
    """The alert episodes of the store's alert log begun or heard within `since` (a read)."""
    store = await open_store(database_url, pool=(1, 1))
    try:
        return await read_changes(store, datetime.now(UTC) - since)
    finally:
        await store.close()


async def read_changes(alert_log: AlertLog, since: datetime) -> list[AlertChange]:
    return from_records(await alert_log.alerts_since(since))


def _print(document: object, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
        return
    assert isinstance(document, list)
    print("\n".join(document), file=out)
