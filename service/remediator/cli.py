"""The `remediator` command: serve, and read what the store holds."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remediator import __version__
from remediator.config import Settings, SettingsError, env_name, load_settings, option_name
from remediator.policy.loader import PolicyErrors
from remediator.runtime.logs import configure_logging
from remediator.store import AlertRecord, StoreUnavailable, open_store


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        field: value
        for field, value in vars(args).items()
        if field in Settings.model_fields and value is not None
    }
    try:
        settings = load_settings(overrides)
    except SettingsError as exc:
        for line in exc.lines:
            print(f"remediator: {line}", file=sys.stderr)
        return 2
    try:
        return int(args.run(settings, args))
    except BrokenPipeError:  # `remediator ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except StoreUnavailable as exc:
        print(f"remediator: store unavailable: {exc}", file=sys.stderr)
        return 1
    except PolicyErrors as exc:
        for error in exc.errors:
            print(f"remediator: {error}", file=sys.stderr)
        print(f"remediator: {len(exc.errors)} policy errors; not starting", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remediator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="receive Alertmanager webhooks")
    for field, info in Settings.model_fields.items():
        serve.add_argument(
            option_name(field),
            dest=field,
            metavar="VALUE",
            help=f"{info.description} [{env_name(field)}]",
        )
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser(
        "migrate", help="apply the store's schema migrations, then exit (an init container)"
    )
    migrate.add_argument(option_name("database_url"), dest="database_url", metavar="URL")
    migrate.set_defaults(run=_migrate)

    alerts = commands.add_parser("alerts", help="list recent alerts from the store")
    alerts.add_argument(option_name("database_url"), dest="database_url", metavar="URL")
    alerts.add_argument("--limit", type=int, default=50, help="how many, newest first (50)")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.set_defaults(run=_alerts)

    history = commands.add_parser("history", help="remediation runs and their steps")
    history.add_argument(option_name("database_url"), dest="database_url", metavar="URL")
    history.add_argument("--alert", metavar="ALERTNAME", help="only this alert's runs")
    history.add_argument("--run", dest="run_id", metavar="ID", help="one run with every step")
    history.add_argument("--limit", type=int, default=50, help="how many, newest first (50)")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.set_defaults(run=_history)

    policies = commands.add_parser("policies", help="check, test and explain policy files")
    policy_commands = policies.add_subparsers(required=True, metavar="COMMAND")
    for name, help_text in [
        ("check", "validate every policy file; exit 1 on any error"),
        ("test", "run the policy tests in DIR/tests; exit 1 on any failure"),
    ]:
        command = policy_commands.add_parser(name, help=help_text)
        command.add_argument("directory", nargs="?", type=Path, metavar="DIR")
        command.set_defaults(run=_policies, policy_command=name)
    explain = policy_commands.add_parser("explain", help="what each alert of a payload would get")
    explain.add_argument("payload", type=Path, metavar="FILE.json")
    explain.add_argument("--policies", dest="directory", type=Path, metavar="DIR")
    explain.set_defaults(run=_policies, policy_command="explain")

    notify = commands.add_parser("notify", help="escalation channels")
    notify_commands = notify.add_subparsers(required=True, metavar="COMMAND")
    notify_test = notify_commands.add_parser("test", help="send a test message through a channel")
    notify_test.add_argument("--channel", required=True, choices=("pagerduty", "slack", "email"))
    notify_test.add_argument("--policies", dest="directory", type=Path, metavar="DIR")
    notify_test.set_defaults(run=_notify_test)

    for name, help_text in [
        ("pause", "stop all remediation (the kill switch); alerts escalate instead"),
        ("resume", "let remediation run again"),
        ("guards", "open breakers, rate-limit budgets, held leases, pause state"),
    ]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--url", help="the running service (default: from REMEDIATOR_LISTEN, on loopback)"
        )
        command.set_defaults(run=_operator, operator_command=name)
        if name == "pause":
            command.add_argument("--reason", default="paused from the command line")
        if name == "guards":
            command.add_argument("--json", action="store_true", help="the API's JSON")
    return parser


def _notify_test(settings: Settings, args: argparse.Namespace) -> int:
    from remediator.notify_commands import send_test

    return send_test(args.channel, args.directory or settings.policies)


def _operator(settings: Settings, args: argparse.Namespace) -> int:
    from remediator import operator_commands

    wildcard = settings.host in ("0.0.0.0", "::", "")  # noqa: S104 - recognised, not bound
    host = "127.0.0.1" if wildcard else settings.host
    host = f"[{host}]" if ":" in host else host
    # Served over HTTPS, the certificate is checked against the system's trust (or SSL_CERT_FILE)
    scheme = "https" if settings.tls_cert_file is not None else "http"
    url = args.url or f"{scheme}://{host}:{settings.port}"
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        if args.operator_command == "pause":
            return operator_commands.pause(url, token, args.reason)
        if args.operator_command == "resume":
            return operator_commands.resume(url, token)
        return operator_commands.guards(url, token, args.json)
    except operator_commands.OperatorError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1


def _policies(settings: Settings, args: argparse.Namespace) -> int:
    from remediator import policy_commands

    directory: Path = args.directory or settings.policies
    if args.policy_command == "check":
        return policy_commands.check(directory)
    if args.policy_command == "test":
        return policy_commands.run_tests(directory)
    return policy_commands.explain(args.payload, directory)


def _serve(settings: Settings, _: argparse.Namespace) -> int:
    from remediator.runtime.service import serve

    configure_logging(settings.log_level)
    serve(settings)
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    """Opening the store migrates it, under PostgreSQL's advisory lock: replicas and init
    containers starting together apply each migration once, and a second run changes nothing."""
    from remediator.store.migrations import migrations

    async def open_and_close() -> None:
        store = await open_store(settings.database_url)
        await store.close()

    asyncio.run(open_and_close())
    sqlite = settings.database_url.startswith("sqlite:")
    latest = migrations("sqlite" if sqlite else "postgres")[-1]
    print(f"schema up to date: version {latest.version} ({latest.name})")
    return 0


def _alerts(settings: Settings, args: argparse.Namespace) -> int:
    async def read() -> list[AlertRecord]:
        store = await open_store(settings.database_url)
        try:
            return await store.recent_alerts(args.limit)
        finally:
            await store.close()

    records = asyncio.run(read())
    if args.json:
        for record in records:
            print(json.dumps(_alert_json(record)))
    else:
        print(_alert_table(records))
    return 0


def _history(settings: Settings, args: argparse.Namespace) -> int:
    from remediator.http.operator_api import remediation_json, step_json

    async def read() -> list[dict[str, Any]]:
        store = await open_store(settings.database_url)
        try:
            if args.run_id is None:
                found = await store.list_remediations(args.limit, args.alert)
                return [remediation_json(remediation) for remediation in found]
            one = await store.remediation(args.run_id)
            if one is None:
                return []
            steps = await store.steps(one.id)
            return [remediation_json(one) | {"steps": [step_json(step) for step in steps]}]
        finally:
            await store.close()

    runs = asyncio.run(read())
    if args.run_id is not None and not runs:
        print(f"remediator: no run {args.run_id!r}", file=sys.stderr)
        return 1
    if args.json:
        for run in runs:
            print(json.dumps(run))
        return 0
    if args.run_id is not None:
        print(_run_detail(runs[0]))
        return 0
    rows = [("STARTED", "ALERTNAME", "POLICY", "OUTCOME", "TARGET", "REASON", "ID")]
    for run in runs:
        rows.append(
            (
                run["started"][:19].replace("T", " "),
                run["alertname"],
                run["policy"] or "-",
                run["outcome"] + (f" ({run['guard']})" if run["guard"] else ""),
                run["target"] or "-",
                run["reason"],
                run["id"],
            )
        )
    print(_table(rows))
    return 0


def _run_detail(run: dict[str, Any]) -> str:
    lines = [
        f"run {run['id']}: {run['alertname']} -> {run['policy'] or 'no policy'}, {run['outcome']}",
        f"  target: {run['target'] or '-'}  policy revision: {run['policyRevision'] or '-'}",
        f"  started {run['started']}, finished {run['finished'] or '-'}: {run['reason']}",
    ]
    for step in run["steps"]:
        name = f"{step['phase']}[{step['position']}] {step['action']}"
        lines.append(f"  {name}: {step['outcome']} - {step['message']}")
    return "\n".join(lines)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _alert_json(record: AlertRecord) -> dict[str, Any]:
    return {
        "fingerprint": record.fingerprint,
        "alertname": record.alertname,
        "status": record.status.value,
        "labels": record.labels,
        "startsAt": record.starts_at.isoformat(),
        "endsAt": record.ends_at.isoformat() if record.ends_at else None,
        "firstReceived": record.first_received.isoformat(),
        "lastReceived": record.last_received.isoformat(),
        "deliveries": record.deliveries,
    }


def _alert_table(records: Sequence[AlertRecord]) -> str:
    header = ("FINGERPRINT", "ALERTNAME", "STATUS", "STARTS AT", "LAST RECEIVED", "DELIVERIES")
    rows = [header] + [
        (
            record.fingerprint,
            record.alertname,
            record.status.value,
            record.starts_at.strftime("%Y-%m-%d %H:%M:%S"),
            record.last_received.strftime("%Y-%m-%d %H:%M:%S"),
            str(record.deliveries),
        )
        for record in records
    ]
    return _table(rows)
