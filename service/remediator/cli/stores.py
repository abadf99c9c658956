"""The store a reading command (`alerts`, `history`) reads: one that exists already.

Opening SQLite creates and migrates the file, which is right for `serve` and `migrate`; a
command that only reads would leave an empty ./remediator.db behind and show nothing, as if
the service had received nothing, when it was only run from another directory.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path

from remediator.config import Settings
from remediator.store import Store, open_store


class NoStore(Exception):
    """The settings name a SQLite store that does not exist: say where, and how to point
    at the right one."""


def existing_store(settings: Settings) -> Coroutine[None, None, Store]:
    """Open the store the settings name, but never create one: NoStore, at once, if it is
    not there."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise NoStore(
                f"no store at {path} (the service's SQLite database is not there);"
                " give its location with --database-url or REMEDIATOR_DATABASE_URL,"
                " e.g. sqlite:///path/to/remediator.db"
            )
    return open_store(url)
