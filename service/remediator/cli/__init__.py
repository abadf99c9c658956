"""The `remediator` command: serve, and read what the store holds.

Each command group is a module of its own here and adds its own subcommands to the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from remediator import __version__
from remediator.cli import (
    alerts,
    approvals,
    history,
    migrate,
    notify,
    operator,
    policies,
    serve,
)
from remediator.cli.stores import NoStore
from remediator.config import Settings, SettingsError, load_settings
from remediator.policy.loader import PolicyErrors
from remediator.store import StoreUnavailable

DESCRIPTION = "The `remediator` command: serve, and read what the store holds."
GROUPS = (serve, migrate, alerts, history, policies, notify, operator, approvals)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    except NoStore as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"remediator: store unavailable: {exc}", file=sys.stderr)
        return 1
    except PolicyErrors as exc:
        for error in exc.errors:
            print(f"remediator: {error}", file=sys.stderr)
        print(f"remediator: {len(exc.errors)} policy errors; not starting", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remediator", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(commands)
    return parser
