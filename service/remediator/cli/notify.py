"""`remediator notify test --channel X`: send one test message, to check a channel's setup now
rather than during the first incident."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from remediator.config import Settings
from remediator.notify.base import Message, PermanentFailure, TransientFailure
from remediator.notify.channels import open_channels
from remediator.policy.loader import load_policies


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = commands.add_parser("notify", help="escalation channels")
    notify_commands = notify.add_subparsers(required=True, metavar="COMMAND")
    notify_test = notify_commands.add_parser("test", help="send a test message through a channel")
    notify_test.add_argument(
        "--channel",
        required=True,
        choices=("pagerduty", "slack", "email"),
        help="the channel to send through, as escalation.yaml sets it up (required)",
    )
    notify_test.add_argument(
        "--policies",
        dest="directory",
        type=Path,
        metavar="DIR",
        help="the policy directory holding escalation.yaml"
        " (default: REMEDIATOR_POLICIES, else ./policies)",
    )
    notify_test.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    return send_test(args.channel, args.directory or settings.policies, sys.stdout)


def test_message() -> Message:
    return Message(
        id=f"test-{uuid.uuid4().hex[:12]}",
        action="trigger",
        dedup_key=f"remediator/test/{uuid.uuid4().hex[:12]}",
        level="P4",
        summary="Remediator test message: this channel is set up (nothing to do)",
        alertname="RemediatorTest",
        status="firing",
        labels={"alertname": "RemediatorTest"},
        annotations={"summary": "sent by `remediator notify test`"},
        policy=None,
        target=None,
        outcome="test",
        reason="an operator checked the channel's configuration",
    )


def send_test(channel: str, policies: Path, out: TextIO = sys.stdout) -> int:
    matrix = load_policies(policies).matrix

    async def send() -> int:
        async with aiohttp.ClientSession() as session:
            opened = open_channels(matrix, session)
            if channel in opened.problems:
                print(f"remediator: {opened.problems[channel]}", file=sys.stderr)
                return 1
            if channel not in opened.channels:
                print(f"remediator: {channel} is not configured in the matrix", file=sys.stderr)
                return 1
            target = opened.channels[channel]
            try:
                await target.send(test_message())
            except (TransientFailure, PermanentFailure) as exc:
                print(f"remediator: {channel} did not take the message: {exc}", file=sys.stderr)
                return 1
            print(f"sent a test message through {channel}: {_where(target.describe())}", file=out)
            return 0

    return asyncio.run(send())


def _where(described: dict[str, Any]) -> str:
    """Where the channel sent it, in words (its describe(), which /health shows as data)."""
    if "webhook_url_env" in described:
        return f"the webhook on {described['host']} (URL from ${described['webhook_url_env']})"
    if "routing_key_env" in described:
        return f"{described['url']} (routing key from ${described['routing_key_env']})"
    if "smtp_host" in described:
        login = f", login from ${described['login']}" if described.get("login") else ""
        to = ", ".join(described["to"])
        return (
            f"{described['smtp_host']}:{described['smtp_port']} ({described['tls']}{login})"
            f" from {described['from']} to {to}"
        )
    return ", ".join(f"{key} {value}" for key, value in described.items() if key != "channel")
