"""`remediator alerts`: recent alerts from the store."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import datetime

from remediator.cli.stores import existing_store
from remediator.cli.table import table
from remediator.config import Settings, option_help, option_name
from remediator.store import AlertRecord, Store


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = commands.add_parser("alerts", help="list recent alerts from the store")
    alerts.add_argument(
        option_name("database_url"),
        dest="database_url",
        metavar="URL",
        help="the service's store: " + option_help("database_url"),
    )
    alerts.add_argument("--limit", type=int, default=50, help="how many, newest first (50)")
    alerts.add_argument(
        "--json", action="store_true", help="one JSON object per line, every label and annotation"
    )
    alerts.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    from remediator.http.operator_api import alert_json

    opening = existing_store(settings)

    async def read() -> list[tuple[AlertRecord, str | None]]:
        store = await opening
        try:
            return [
                (record, await _target(store, record))
                for record in await store.recent_alerts(args.limit)
            ]
        finally:
            await store.close()

    records = asyncio.run(read())
    if args.json:
        for record, target in records:
            print(json.dumps(dict(alert_json(record)) | {"target": target}))
    else:
        print(_alert_table(records))
    return 0


# The labels that say which thing an alert is about, in the order they are shown.
KEY_LABELS = ("namespace", "deployment", "statefulset", "pod", "instance", "node", "service", "job")


async def _target(store: Store, record: AlertRecord) -> str | None:
    """What the episode's latest remediation acted on, or would have."""
    runs = await store.remediations_for(record.fingerprint, record.starts_at)
    return next((run.target for run in reversed(runs) if run.target), None)


def key_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{name}={labels[name]}" for name in KEY_LABELS if name in labels) or "-"


def _alert_table(records: Sequence[tuple[AlertRecord, str | None]]) -> str:
    header = (
        "ALERTNAME",
        "STATUS",
        "LABELS",
        "TARGET",
        "STARTS AT",
        "ENDS AT",
        "SUMMARY",
        "FINGERPRINT",
    )
    rows = [header] + [
        (
            record.alertname,
            record.status.value,
            key_labels(record.labels),
            target or "-",
            _when(record.starts_at),
            _when(record.ends_at) if record.ends_at else "-",
            record.annotations.get("summary", "-").replace("\n", " "),
            record.fingerprint,
        )
        for record, target in records
    ]
    return table(rows, cut=6)  # the summary, cut to the terminal's width; in full under --json


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")
