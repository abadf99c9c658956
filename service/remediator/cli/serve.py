"""`remediator serve`: receive Alertmanager webhooks until SIGTERM."""

from __future__ import annotations

import argparse
import sys

from remediator.config import Settings, option_help, option_name
from remediator.runtime.logs import configure_logging


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="receive Alertmanager webhooks")
    for field in Settings.model_fields:
        serve.add_argument(
            option_name(field),
            dest=field,
            metavar="VALUE",
            help=option_help(field),
        )
    serve.set_defaults(run=execute)


def execute(settings: Settings, _: argparse.Namespace) -> int:
    from remediator.runtime.service import ListenError, serve

    configure_logging(settings.log_level)
    try:
        serve(settings)
    except ListenError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2
    return 0
