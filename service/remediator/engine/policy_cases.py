"""Policy cases: the tests kept beside the policies, checked against decide(): an alert's
labels in, the expected decision out.

`policies/tests/*.yaml` holds `tests:`, a list of cases. Only what a case's `expect` names is
compared, so a case can pin the winning policy alone or every rendered parameter.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remediator.alerts import Alert, AlertStatus
from remediator.engine.decide import decide
from remediator.engine.plan import Decision, NoMatch, Plan, PlannedStep, Refused
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import Channel, Level
from remediator.policy.source import Position, SourceError, read_yaml

_TEST_TIME = datetime(2026, 1, 1, tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertInput(_Model):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)


class Expect(_Model):
    policy: str | None = Field(None, description="the winning policy; null: no policy matches")
    level: Level | None = None
    channels: list[Channel] | None = None
    target: dict[str, str] | None = None
    steps: list[str | dict[str, Any]] | None = None
    on_resolved: list[str | dict[str, Any]] | None = None
    refused: str | None = Field(None, description="a part of the refusal's reason")


class PolicyTest(_Model):
    name: str
    alert: AlertInput
    expect: Expect


class PolicyTestFile(_Model):
    tests: list[PolicyTest] = Field(min_length=1)


@dataclass(frozen=True)
class Outcome:
    file: Path
    line: int
    name: str
    diff: str  # empty when the case passed

    @property
    def passed(self) -> bool:
        return not self.diff


def run_policy_tests(directory: Path, policies: PolicySet) -> Iterator[Outcome | SourceError]:
    """Each case's outcome, or each problem of a file that cannot be run, in file order.

    A file that does not parse is reported like `policies check` reports one, and the other
    files still run: a typo in one test file must not hide the results of the rest.
    """
    for file in sorted(directory.glob("*.yaml")):
        try:
            document = read_yaml(file)
        except SourceError as exc:
            yield exc
            continue
        except (OSError, UnicodeDecodeError) as exc:
            yield SourceError(file, Position(1, 1), "", f"cannot read: {exc}")
            continue
        try:
            cases = PolicyTestFile.model_validate(document.value).tests
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                at_key = error["type"] == "extra_forbidden"
                yield document.error(error["loc"], str(error["msg"]), at_key=at_key)
            continue
        for index, case in enumerate(cases):
            line = document.positions[("tests", index)].line
            yield Outcome(file, line, case.name, _diff(case, policies))


def _diff(case: PolicyTest, policies: PolicySet) -> str:
    alert = Alert(
        status=AlertStatus.FIRING,
        labels=case.alert.labels,
        annotations=case.alert.annotations,
        starts_at=_TEST_TIME,
        fingerprint="policy-test",
    )
    expected = case.expect.model_dump(exclude_unset=True)
    actual = _observed(decide(alert, policies, _TEST_TIME), expected)
    if actual == expected:
        return ""
    lines = difflib.unified_diff(
        yaml.safe_dump(expected, sort_keys=True).splitlines(),
        yaml.safe_dump(actual, sort_keys=True).splitlines(),
        "expected",
        "decided",
        lineterm="",
    )
    return "\n".join(lines)


def _observed(decision: Decision, expected: dict[str, Any]) -> dict[str, Any]:
    """The decision, shaped like the expectation and limited to what it names."""
    observed: dict[str, Any] = {
        "policy": None if isinstance(decision, NoMatch) else decision.policy,
        "level": decision.escalation.level,
        "channels": list(decision.escalation.channels),
        "refused": decision.reason if isinstance(decision, Refused) else None,
    }
    if isinstance(decision, Plan):
        target = vars(decision.target)
        observed["target"] = {key: value for key, value in target.items() if value is not None}
        observed["steps"] = _steps_like(decision.steps, expected.get("steps"))
        observed["on_resolved"] = _steps_like(decision.on_resolved, expected.get("on_resolved"))
    refused = expected.get("refused")
    if refused is not None and observed["refused"] and refused in observed["refused"]:
        observed["refused"] = refused
    return {key: observed.get(key) for key in expected}


def _steps_like(steps: tuple[PlannedStep, ...], expected: list[Any] | None) -> list[Any]:
    shaped: list[Any] = []
    for index, step in enumerate(steps):
        want = expected[index] if expected and index < len(expected) else None
        if isinstance(want, dict):
            params = step.params.model_dump(mode="json", by_alias=True)
            wanted = want.get("params", {})
            shown: dict[str, Any] = {"action": step.action}
            if "params" in want:
                shown["params"] = {key: params.get(key) for key in wanted}
            shaped.append(shown)
        else:
            shaped.append(step.action)
    return shaped
