"""`remediator history`: remediation runs and their steps, from the store; one run with its
approval requests and every answer to them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from remediator.cli.approvals import answer_line
from remediator.cli.stores import existing_store
from remediator.cli.table import table
from remediator.config import Settings, option_help, option_name
from remediator.store import Remediation, Store


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser("history", help="remediation runs and their steps")
    history.add_argument(
        option_name("database_url"),
        dest="database_url",
        metavar="URL",
        help="the service's store: " + option_help("database_url"),
    )
    history.add_argument("--alert", metavar="ALERTNAME", help="only this alert's runs")
    history.add_argument(
        "--run",
        dest="run_id",
        metavar="ID",
        help="one run with every step and its full reason; ID or any unique start of it",
    )
    history.add_argument("--limit", type=int, default=50, help="how many, newest first (50)")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    history.set_defaults(run=execute)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    from remediator.http.operator_api import approval_audit_json, remediation_json, step_json

    opening = existing_store(settings)

    async def read() -> list[dict[str, Any]]:
        store = await opening
        try:
            if args.run_id is None:
                found = await store.list_remediations(args.limit, args.alert)
                return [remediation_json(remediation) for remediation in found]
            found = await _one_run(store, args.run_id)
            if len(found) != 1:
                return [remediation_json(remediation) for remediation in found]
            one = found[0]
            steps = [step_json(step) for step in await store.steps(one.id)]
            approvals = [approval_audit_json(a) for a in await store.approvals_of_run(one.id)]
            return [remediation_json(one) | {"steps": steps, "approvals": approvals}]
        finally:
            await store.close()

    runs = asyncio.run(read())
    if args.run_id is not None and len(runs) != 1:
        print(f"remediator: {_not_one(args.run_id, runs)}", file=sys.stderr)
        return 1
    if args.json:
        for run in runs:
            print(json.dumps(run))
        return 0
    if args.run_id is not None:
        print(_run_detail(runs[0]))
        return 0
    rows = [("STARTED", "ALERTNAME", "POLICY", "OUTCOME", "TARGET", "REASON", "ID")]
    for run in runs:
        rows.append(
            (
                run["started"][:19].replace("T", " "),
                run["alertname"],
                run["policy"] or "-",
                run["outcome"] + (f" ({run['guard']})" if run["guard"] else ""),
                run["target"] or "-",
                run["reason"],
                run["id"],
            )
        )
    print(table(rows, cut=5))  # the reason, cut to the terminal's width; in full under --run
    return 0


async def _one_run(store: Store, run_id: str) -> list[Remediation]:
    """The run with this id, or the runs whose id starts with it (two at most: enough to
    say it is ambiguous)."""
    exact = await store.remediation(run_id)
    return [exact] if exact is not None else await store.remediations_by_prefix(run_id, 2)


def _not_one(run_id: str, runs: list[dict[str, Any]]) -> str:
    if not runs:
        return f"no run {run_id!r}"
    ids = ", ".join(run["id"] for run in runs)
    return f"{run_id!r} is the start of more than one run's id ({ids}, ...): give more of it"


def _run_detail(run: dict[str, Any]) -> str:
    lines = [
        f"run {run['id']}: {run['alertname']} -> {run['policy'] or 'no policy'}, {run['outcome']}",
        f"  target: {run['target'] or '-'}  policy revision: {run['policyRevision'] or '-'}",
        f"  started {run['started']}, finished {run['finished'] or '-'}: {run['reason']}",
    ]
    for step in run["steps"]:
        name = f"{step['phase']}[{step['position']}] {step['action']}"
        lines.append(f"  {name}: {step['outcome']} - {step['message']}")
        asked = step["data"].get("params")
        if asked:  # a change: what it was asked to do, as rendered
            lines.append("      " + ", ".join(f"{key}: {value}" for key, value in asked.items()))
    for approval in run["approvals"]:
        lines.append(_approval_line(approval))
        lines += [f"      {answer_line(answer)}" for answer in approval["answers"]]
    return "\n".join(lines)


def _approval_line(approval: dict[str, Any]) -> str:
    """An approval request of the run: which change, and how it stands."""
    given = f"{len(approval['approvedBy'])} of {approval['minApprovals']} approvals"
    return (
        f"  approval {approval['id']} for steps[{approval['position']}] {approval['action']}"
        f" on {approval['target']}: {approval['state']}, {given}"
        f" (approvers: {', '.join(approval['approvers'])})"
    )
