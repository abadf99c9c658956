"""`remediator policies check | test | explain | replay`: the tools of policy authors."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from remediator.alerts import Notification
from remediator.cli import promote, replay, stats
from remediator.config import Settings
from remediator.engine.decide import decide
from remediator.engine.plan import Decision, NoMatch, Plan, PlannedStep, Refused
from remediator.engine.policy_cases import Outcome, run_policy_tests
from remediator.policy.durations import format_duration
from remediator.policy.explain import candidates
from remediator.policy.loader import PolicyErrors, check_policies, load_policies, policy_files
from remediator.policy.policyset import PolicySet

POLICIES_HELP = "the policy directory (default: REMEDIATOR_POLICIES, else ./policies)"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policies = commands.add_parser(
        "policies", help="check, test, explain, replay and count policies; promote one"
    )
    policy_commands = policies.add_subparsers(required=True, metavar="COMMAND")
    for name, help_text in [
        ("check", "validate every policy file; exit 1 on any error"),
        ("test", "run the policy tests in DIR/tests; exit 1 on any failure"),
    ]:
        command = policy_commands.add_parser(name, help=help_text)
        command.add_argument("directory", nargs="?", type=Path, metavar="DIR", help=POLICIES_HELP)
        command.set_defaults(run=execute, policy_command=name)
    explain = policy_commands.add_parser("explain", help="what each alert of a payload would get")
    explain.add_argument(
        "payload", type=Path, metavar="FILE.json", help="an Alertmanager webhook body"
    )
    explain.add_argument(
        "--policies", dest="directory", type=Path, metavar="DIR", help=POLICIES_HELP
    )
    explain.set_defaults(run=execute, policy_command="explain")
    replay.add_command(policy_commands)
    stats.add_command(policy_commands)
    promote.add_command(policy_commands)


def execute(settings: Settings, args: argparse.Namespace) -> int:
    directory: Path = args.directory or settings.policies
    if args.policy_command == "check":
        return check(directory, sys.stdout)
    if args.policy_command == "test":
        return run_tests(directory, sys.stdout)
    return explain(args.payload, directory, sys.stdout)


def check(directory: Path, out: TextIO = sys.stdout) -> int:
    """Every error (exit 1), or the warnings of a valid set and its count (exit 0)."""
    try:
        policies, warnings = check_policies(directory)
    except PolicyErrors as exc:
        _print_errors(directory, exc, out)
        return 1
    for warning in warnings:
        print(warning, file=out)
    valid = "policy" if len(policies.policies) == 1 else "policies"
    warned = f", {_count(len(warnings), 'warning')}" if warnings else ""
    print(f"{directory}: {len(policies.policies)} {valid} valid{warned}", file=out)
    return 0


def run_tests(directory: Path, out: TextIO = sys.stdout) -> int:
    policies = _load(directory, out)
    if policies is None:
        return 1
    passed = failed = 0
    for result in run_policy_tests(directory / "tests", policies):
        if not isinstance(result, Outcome):
            print(result, file=out)
            failed += 1
        elif result.passed:
            passed += 1
            print(f"PASS {result.file.name}: {result.name}", file=out)
        else:
            failed += 1
            print(f"FAIL {result.file}:{result.line}: {result.name}\n{result.diff}", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed or not passed else 0


def explain(payload_file: Path, directory: Path, out: TextIO = sys.stdout) -> int:
    policies = _load(directory, out)
    if policies is None:
        return 1
    try:
        raw = json.loads(payload_file.read_text(encoding="utf-8"))
        body = raw.get("body", raw) if isinstance(raw, dict) and "alerts" not in raw else raw
        notification = Notification.model_validate(body)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"{payload_file}: not a webhook payload: {exc}", file=out)
        return 1
    now = datetime.now(UTC)
    for alert in notification.alerts:
        print(f"alert {alert.fingerprint} {_labels(alert.labels)}", file=out)
        for candidate in candidates(alert.labels, policies):
            where = f"{candidate.file}, priority {candidate.priority}"
            print(f"  {candidate.policy} ({where}): {candidate.verdict}", file=out)
        plan = describe(decide(alert, policies, now))
        print("  decision:\n" + _indent(yaml.safe_dump(plan, sort_keys=False), 4), file=out)
    return 0


def describe(decision: Decision) -> dict[str, Any]:
    """A decision as plain data, for people and for JSON."""
    escalation = {
        "level": decision.escalation.level,
        "channels": list(decision.escalation.channels),
    }
    if isinstance(decision, NoMatch):
        return {"outcome": "no policy matched: escalate only", "escalation": escalation}
    if isinstance(decision, Refused):
        return {
            "outcome": "refused",
            "policy": decision.policy,
            "reason": decision.reason,
            "escalation": escalation,
        }
    assert isinstance(decision, Plan)
    return {
        "outcome": "plan",
        "policy": decision.policy,
        "target": str(decision.target),
        "steps": [_step(step) for step in decision.steps],
        "on_resolved": [_step(step) for step in decision.on_resolved],
        "verify": f"resolved within {format_duration(decision.verify_within)}",
        "rate_limit_key": decision.rate_limit_key,
        "escalation": escalation,
    }


def _step(step: PlannedStep) -> dict[str, Any]:
    described: dict[str, Any] = {"action": step.action}
    params = step.params.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if params:
        described["params"] = params
    if step.when:
        described["when"] = step.when
    return described


def _load(directory: Path, out: TextIO) -> PolicySet | None:
    try:
        return load_policies(directory)
    except PolicyErrors as exc:
        _print_errors(directory, exc, out)
        return None


def _print_errors(directory: Path, exc: PolicyErrors, out: TextIO) -> None:
    for error in exc.errors:
        print(error, file=out)
    files = len(policy_files(directory)) if directory.is_dir() else 0
    print(f"{_count(len(exc.errors), 'error')} in {_count(files, 'policy file')}", file=out)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{name}="{value}"' for name, value in sorted(labels.items())) + "}"


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(keepends=True))
