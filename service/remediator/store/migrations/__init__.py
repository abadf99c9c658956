"""Versioned schema migrations, one SQL file each: `NNNN_name.sql` per dialect."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    """The dialect's migrations in version order."""
    found = []
    for entry in files(__package__).joinpath(dialect).iterdir():
        if entry.name.endswith(".sql"):
            number, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)
