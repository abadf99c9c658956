"""`remediator policies promote NAME`: end a policy's demotion, through the running service's
operator API (as `pause` does: --url, --token-file or REMEDIATOR_API_TOKEN). Its changes no
longer ask first, and its ledger counts afresh from now; the audit records who.

Exit codes: 0 promoted; 1 it was not demoted, or no such policy is in force; 2 the service
unreachable or refusing the token.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse

from remediator.cli.operator import (
    OPERATOR_DESCRIPTION,
    OperatorError,
    add_service_options,
    call,
    service_url,
    token_of,
)
from remediator.config import Settings


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    promote = commands.add_parser(
        "promote",
        help="end a policy's demotion: its changes no longer ask a person first",
        description=OPERATOR_DESCRIPTION,
    )
    promote.add_argument("name", metavar="NAME", help="the policy's name, as in its file")
    add_service_options(promote)
    promote.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    url = service_url(settings, args.url)
    path = f"/api/v1/policies/{urllib.parse.quote(args.name, safe='')}/promote"
    try:
        answer = call(url, token_of(settings, args.token_file), "POST", path, {})
    except OperatorError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1 if exc.status == 404 else 2
    if not answer["promoted"]:
        print(f"{args.name} was not demoted: nothing to do", file=sys.stderr)
        return 1
    print(f"promoted {args.name} (by {answer['by']}): its changes no longer ask first")
    return 0
