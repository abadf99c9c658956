"""`remediator alerts`: recent alerts from the store."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from remediator.cli.stores import existing_store
from remediator.cli.table import table
from remediator.config import Settings, option_name
from remediator.store import AlertRecord


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = commands.add_parser("alerts", help="list recent alerts from the store")
    alerts.add_argument(option_name("database_url"), dest="database_url", metavar="URL")
    alerts.add_argument("--limit", type=int, default=50, help="how many, newest first (50)")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    opening = existing_store(settings)

    async def read() -> list[AlertRecord]:
        store = await opening
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
    return table(rows)
