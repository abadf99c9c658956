"""`remediator migrate`: apply the store's schema migrations, then exit (an init container)."""

from __future__ import annotations

import argparse
import asyncio

from remediator.config import Settings, option_help, option_name
from remediator.store import open_store


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser(
        "migrate", help="apply the store's schema migrations, then exit (an init container)"
    )
    migrate.add_argument(
        option_name("database_url"),
        dest="database_url",
        metavar="URL",
        help="the store to create or migrate: " + option_help("database_url"),
    )
    migrate.set_defaults(run=execute)


def execute(settings: Settings, _: argparse.Namespace) -> int:
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
