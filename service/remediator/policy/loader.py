"""Load a policy directory whole, or report every problem in it with file, line and field.

A directory loads only when every file in it is valid: a half-loaded set could drop the one
policy that should have matched.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from remediator.policy.parameters import CATALOGUE, ActionSpec
from remediator.policy.policyset import PolicySet
from remediator.policy.schema import (
    VERIFY_SHORTHANDS,
    EscalationMatrix,
    Guardrails,
    Policy,
    shorthand_params,
)
from remediator.policy.source import Document, Location, Position, SourceError, read_yaml
from remediator.policy.templates import CONDITION_NAMES, template_syntax_error

MATRIX_FILE = "escalation.yaml"
GUARDRAILS_FILE = "guardrails.yaml"
M = TypeVar("M", bound=BaseModel)
_TOP = Position(1, 1)


class PolicyErrors(Exception):
    """Every problem found in a policy directory, in file order."""

    def __init__(self, errors: Sequence[SourceError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = list(errors)


def load_policies(directory: Path) -> PolicySet:
    """The directory's policies, matrix and guard rails; PolicyErrors lists every problem."""
    if not directory.is_dir():
        raise PolicyErrors([SourceError(directory, _TOP, "", "policy directory not found")])
    errors: list[SourceError] = []
    matrix = _load_model(directory / MATRIX_FILE, EscalationMatrix, errors, required=True)
    guardrails = _load_model(directory / GUARDRAILS_FILE, Guardrails, errors, required=False)
    policies: dict[str, Policy] = {}
    files: dict[str, str] = {}
    for file in policy_files(directory):
        document, policy = _load_policy(file, errors)
        if policy is None or document is None:
            continue
        if policy.name in policies:
            message = f"duplicate policy name {policy.name!r}, also in {files[policy.name]}"
            errors.append(document.error(("name",), message))
            continue
        policies[policy.name] = policy
        files[policy.name] = file.name
    if errors or matrix is None:
        raise PolicyErrors(errors)
    return PolicySet.of(list(policies.values()), files, matrix, guardrails)


def policy_files(directory: Path) -> list[Path]:
    special = {MATRIX_FILE, GUARDRAILS_FILE}
    found = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    return sorted(path for path in found if path.name not in special)


def _read(file: Path, errors: list[SourceError]) -> Document | None:
    try:
        document = read_yaml(file)
    except SourceError as exc:
        errors.append(exc)
        return None
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(SourceError(file, _TOP, "", f"cannot read: {exc}"))
        return None
    if not isinstance(document.value, dict):
        errors.append(document.error((), "expected a mapping of fields at the top of the file"))
        return None
    return document


def _validate(document: Document, model: type[M], errors: list[SourceError]) -> M | None:
    try:
        return model.model_validate(document.value)
    except ValidationError as exc:
        errors.extend(_located(document, (), exc))
        return None


def _located(
    document: Document,
    prefix: Location,
    exc: ValidationError,
    unknown: Callable[[str], str] | None = None,
) -> Iterator[SourceError]:
    """Each error at its place; `unknown` words the message for an unknown field's name."""
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        at_key = error["type"] == "extra_forbidden"
        if at_key and unknown is not None:
            message = unknown(str(error["loc"][-1]))
        yield document.error((*prefix, *error["loc"]), message, at_key=at_key)


def _load_model(
    file: Path, model: type[M], errors: list[SourceError], *, required: bool
) -> M | None:
    if not file.exists():
        if required:
            errors.append(
                SourceError(file, _TOP, "", "file not found: the severity matrix is required")
            )
        return None if required else model()
    document = _read(file, errors)
    return None if document is None else _validate(document, model, errors)


def _load_policy(file: Path, errors: list[SourceError]) -> tuple[Document | None, Policy | None]:
    document = _read(file, errors)
    if document is None:
        return None, None
    policy = _validate(document, Policy, errors)
    if policy is None:
        return document, None
    found = [*_parameter_errors(document), *_template_errors(document)]
    errors.extend(found)
    return document, None if found else policy


def _step_locations(value: Mapping[str, Any]) -> Iterator[Location]:
    for field in ("steps", "on_resolved"):
        for index, _ in enumerate(value.get(field) or []):
            yield (field, index)
    if isinstance(value.get("verify"), dict) and value["verify"].get("check") is not None:
        yield ("verify", "check")


def _at(value: Any, location: Location) -> Any:
    for part in location:
        value = value[part]
    return value


def _parameter_errors(document: Document) -> Iterator[SourceError]:
    for location in _step_locations(document.value):
        step = _at(document.value, location)
        spec = CATALOGUE[step["action"]]
        try:
            spec.params.model_validate(step.get("params") or {})
        except ValidationError as exc:
            unknown = partial(_unknown_parameter, spec)
            yield from _located(document, (*location, "params"), exc, unknown)
    for location, name, value in _verify_shorthands(document.value):
        spec = CATALOGUE[VERIFY_SHORTHANDS[name]]
        try:
            spec.params.model_validate(shorthand_params(name, value))
        except ValidationError as exc:
            yield from _located(document, location, exc, partial(_unknown_parameter, spec))


def _verify_shorthands(value: Mapping[str, Any]) -> Iterator[tuple[Location, str, Any]]:
    verify = value.get("verify")
    if isinstance(verify, dict):
        for name in VERIFY_SHORTHANDS:
            if verify.get(name) is not None:
                yield ("verify", name), name, verify[name]


def _unknown_parameter(spec: ActionSpec, name: str) -> str:
    """Pydantic's "Extra inputs are not permitted" does not say what the action does take."""
    if not spec.parameters:
        return f"unknown parameter {name!r}: {spec.name} takes no parameters"
    close = difflib.get_close_matches(name, spec.parameters, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    expected = ", ".join(spec.parameters)
    return f"unknown parameter {name!r} for {spec.name}{hint} (expected: {expected})"


def _template_errors(document: Document) -> Iterator[SourceError]:
    value = document.value
    places: list[tuple[Location, Any]] = [(("target",), value["target"])]
    places += [
        ((*loc, "params"), _at(value, loc).get("params") or {}) for loc in _step_locations(value)
    ]
    if isinstance(value.get("rate_limit"), dict) and "key" in value["rate_limit"]:
        places.append((("rate_limit", "key"), value["rate_limit"]["key"]))
    places += [(location, part) for location, _, part in _verify_shorthands(value)]
    for location, part in places:
        for where, text in _strings(location, part):
            problem = template_syntax_error(text)
            if problem:
                yield document.error(where, problem)
    for location in _step_locations(value):
        condition = _at(value, location).get("when")
        if condition is not None:
            problem = template_syntax_error("{{ " + str(condition) + " }}", CONDITION_NAMES)
            if problem:
                yield document.error(
                    (*location, "when"), problem.replace("template", "expression", 1)
                )


def _strings(location: Location, value: Any) -> Iterable[tuple[Location, str]]:
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings((*location, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings((*location, index), item)
