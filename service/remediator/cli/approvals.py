"""`remediator approvals list | show | approve | reject | cancel`: the approval requests of a
running service, from a shell.

They call the operator API as `pause` does (--url, --token-file or REMEDIATOR_API_TOKEN), and
say they are the command line (X-Remediator-Client: cli), so the audit records an answer as
given through it. The answer is the token's identity's: a personal token from the service's
REMEDIATOR_USERS_FILE makes it yours.

Exit codes: 0 done; 1 refused (not an approver, not pending any more, an approval already
given, no such request); 2 a usage error, or the service unreachable or refusing the token.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from remediator.cli.operator import (
    OPERATOR_DESCRIPTION,
    OperatorError,
    add_service_options,
    call,
    service_url,
    token_of,
)
from remediator.cli.table import table
from remediator.config import Settings
from remediator.http.operator_api import CLIENT_HEADER, MAX_NOTE

SHORT = 8  # characters of an id shown in the list, as `show` and `approve` take any start
REFUSED = {403, 404, 409}  # the service's answer to this request: exit 1, not 2
ANSWERS = {
    "approve": "approve the change (for its approvers): the run goes on at the approvals needed",
    "reject": "reject the change (for its approvers): the run makes no more changes",
    "cancel": "cancel the request (any operator): the run makes no more changes",
}


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "approvals",
        help="approval requests of risky steps: list, show, approve, reject, cancel",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = group.add_subparsers(required=True, metavar="ACTION")
    listing = _command(actions, "list", "the pending requests, newest first")
    listing.add_argument(
        "--all", action="store_true", help="requests in any state, not only the pending"
    )
    listing.add_argument("--limit", type=int, default=50, help="how many, newest first (50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    showing = _command(actions, "show", "one request: its change, what it shows, every answer")
    _id_argument(showing)
    showing.add_argument("--json", action="store_true", help="the API's JSON")
    for decision, help_text in ANSWERS.items():
        answering = _command(actions, decision, help_text)
        _id_argument(answering)
        answering.add_argument(
            "--note",
            default="",
            type=_note,
            help=f"why, kept with the answer (at most {MAX_NOTE} characters; default: none)",
        )


def _command(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse.ArgumentParser:
    command = actions.add_parser(name, help=help_text, description=OPERATOR_DESCRIPTION)
    add_service_options(command)
    command.set_defaults(run=execute, approvals_command=name)
    return command


def _id_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "id", metavar="ID", help="the request's id, or a start of it naming one (4 or more)"
    )


def _note(value: str) -> str:
    """--note, refused here as the API would refuse it: too long."""
    if len(value) > MAX_NOTE:
        raise argparse.ArgumentTypeError(f"at most {MAX_NOTE} characters, got {len(value)}")
    return value


def execute(settings: Settings, args: argparse.Namespace) -> int:
    try:
        service = Service(service_url(settings, args.url), token_of(settings, args.token_file))
        command = args.approvals_command
        if command == "list":
            return service.listing(args.all, args.limit, args.json, sys.stdout)
        if command == "show":
            return service.show(args.id, args.json, sys.stdout)
        return service.answer(args.id, command, args.note, sys.stdout)
    except OperatorError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1 if exc.status in REFUSED else 2
    except NotCounted as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1


class NotCounted(Exception):
    """The service took the answer but did not count it: an approver approving twice."""


class Service:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self._token = token

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {CLIENT_HEADER: "cli"}
        return call(self.url, self._token, method, path, body, headers)

    def listing(self, every: bool, limit: int, as_json: bool, out: TextIO) -> int:
        query = urllib.parse.urlencode({"state": "all" if every else "pending", "limit": limit})
        found = self._call("GET", f"/api/v1/approvals?{query}")["approvals"]
        if as_json:
            for request in found:
                print(json.dumps(request), file=out)
            return 0
        if not found:
            print("no approval requests" + ("" if every else " pending"), file=out)
            return 0
        print(_listed(found, every, datetime.now(UTC)), file=out)
        return 0

    def show(self, approval_id: str, as_json: bool, out: TextIO) -> int:
        found = self._call("GET", _path(approval_id))
        print(json.dumps(found, indent=2) if as_json else _detail(found), file=out)
        return 0

    def answer(self, approval_id: str, decision: str, note: str, out: TextIO) -> int:
        answered = self._call("POST", _path(approval_id), {"decision": decision, "note": note})
        if not answered["counted"]:
            raise NotCounted(
                f"{decision} of {answered['id'][:SHORT]} not counted: {answered['why']}"
            )
        print(_answered(decision, answered), file=out)
        return 0


def _path(approval_id: str) -> str:
    return f"/api/v1/approvals/{urllib.parse.quote(approval_id, safe='')}"


def _listed(found: list[dict[str, Any]], every: bool, now: datetime) -> str:
    head = ("ID", "AGE", "ALERT", "POLICY", "STEP", "TARGET", "APPROVALS", "EXPIRES IN")
    rows = [(*head, "STATE") if every else head]
    for request in found:
        row = (
            request["id"][:SHORT],
            _span(now - _time(request["requested"])),
            request["alertname"],
            request["policy"],
            _step(request),
            request["target"],
            f"{len(request['approvedBy'])}/{request['minApprovals']}",
            _expires_in(request, now),
        )
        rows.append((*row, request["state"]) if every else row)
    return table(rows)


def _step(request: dict[str, Any]) -> str:
    step, action = request["step"], request["action"]
    return action if step == action else f"{step} ({action})"


def _expires_in(request: dict[str, Any], now: datetime) -> str:
    if request["state"] != "pending":
        return "-"
    left = _time(request["expires"]) - now
    return _span(left) if left.total_seconds() > 0 else "expired"


def _detail(r: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    given = ", ".join(r["approvedBy"]) or "none yet"
    lines = [
        f"approval {r['id']}: {r['state']}, {len(r['approvedBy'])} of {r['minApprovals']}"
        f" approvals ({given})",
        f"  alert: {r['alertname']} (fingerprint {r['fingerprint']}), run {r['run']}",
        f"  policy: {r['policy']}, step {r['position']}: {_step(r)}",
        f"  target: {r['target']}",
    ]
    if r["params"]:
        lines.append("  params: " + ", ".join(f"{k}: {v}" for k, v in r["params"].items()))
    lines += [
        f"  approvers: {', '.join(r['approvers'])}; on timeout: {r['onTimeout']}",
        f"  requested {r['requested']}, expires {r['expires']}"
        + (f" (in {_expires_in(r, now)})" if r["state"] == "pending" else "")
        + (f", decided {r['decided']}" if r["decided"] else ""),
    ]
    if r["shown"]:
        lines.append("  shows:")
        lines += [f"    {key}: {_shown(value)}" for key, value in r["shown"].items()]
    lines.append("  answers:" if r["answers"] else "  answers: none yet")
    lines += [f"    {answer_line(answer)}" for answer in r["answers"]]
    return "\n".join(lines)


def answer_line(answer: dict[str, Any]) -> str:
    """One answer as `history --run` and `approvals show` print it: when, who, through what."""
    note = f": {answer['note']}" if answer["note"] else ""
    return f"{answer['at']}  {answer['who']} via {answer['via']}: {answer['verdict']}{note}"


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _answered(decision: str, r: dict[str, Any]) -> str:
    short = r["id"][:SHORT]
    if decision != "approve":
        done = "rejected" if decision == "reject" else "cancelled"
        return f"{done} {short}: the run makes no more changes"
    count = f"{len(r['approvedBy'])} of {r['minApprovals']} approvals"
    if r["state"] == "approved":
        return f"approved {short}: {count}; the run goes on"
    more = r["minApprovals"] - len(r["approvedBy"])
    return f"approved {short}: {count}; {more} more needed before {r['expires']}"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _span(delta: timedelta) -> str:
    """A duration as a person reads it at a glance: 45s, 12m, 3h05m, 2d04h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
