"""Load a policy directory whole, or report every problem in it with file, line and field.

A directory loads only when every file in it is valid: a half-loaded set could drop the one
policy that should have matched.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

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
from remediator.policy.templates import condition_error, template_syntax_error
from remediator.policy.warnings import policy_warnings

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
    return _load_all(directory)[0]


def check_policies(directory: Path) -> tuple[PolicySet, list[SourceError]]:
    """load_policies, and what `policies check` warns of in the set (policy/warnings.py)."""
    policies, documents = _load_all(directory)
    return policies, policy_warnings(policies, documents)


def _load_all(directory: Path) -> tuple[PolicySet, dict[str, Document]]:
    if not directory.is_dir():
        raise PolicyErrors([SourceError(directory, _TOP, "", "policy directory not found")])
    errors: list[SourceError] = []
    matrix = _load_model(directory / MATRIX_FILE, EscalationMatrix, errors, required=True)
    guardrails = _load_model(directory / GUARDRAILS_FILE, Guardrails, errors, required=False)
    policies: dict[str, Policy] = {}
    documents: dict[str, Document] = {}
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
        documents[policy.name] = document
        files[policy.name] = file.name
    if errors or matrix is None:
        raise PolicyErrors(sorted(errors, key=_file_and_line))
    return PolicySet.of(list(policies.values()), files, matrix, guardrails), documents


def _file_and_line(error: SourceError) -> tuple[str, int, int]:
    return str(error.file), error.position.line, error.position.column


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
        errors.extend(_located(document, (), exc, partial(_unknown_key, model)))
        return None


def _located(
    document: Document,
    prefix: Location,
    exc: ValidationError,
    unknown: Callable[[Location], str] | None = None,
) -> Iterator[SourceError]:
    """Each error at its place, in a person's words: `unknown` words the message for an
    unknown field (given its location), and the alternatives of a union of literals
    (`severity: P5`) are one error listing every allowed value."""
    for loc, error in _literals_merged(exc.errors(include_url=False)):
        message = str(error["msg"]).removeprefix("Value error, ")
        at_key = error["type"] == "extra_forbidden"
        if at_key and unknown is not None:
            message = unknown(loc)
        yield document.error((*prefix, *loc), message, at_key=at_key)


def _literals_merged(errors: Iterable[ErrorDetails]) -> Iterator[tuple[Location, ErrorDetails]]:
    """Pydantic reports a value outside `Literal[...] | Literal[...]` once per literal, at a
    location naming the literal: one error at the field instead, with all the values."""
    allowed: dict[Location, list[str]] = {}
    given: dict[Location, ErrorDetails] = {}
    for error in errors:
        loc = tuple(part for part in error["loc"] if not str(part).startswith("literal["))
        if error["type"] != "literal_error":
            yield loc, error
            continue
        expected = str((error.get("ctx") or {}).get("expected", ""))
        allowed.setdefault(loc, []).extend(expected.replace(" or ", ", ").split(", "))
        given.setdefault(loc, error)
    for loc, values in allowed.items():
        got = given[loc]["input"]
        message = f"{got!r} is not allowed; expected one of {', '.join(values)}"
        yield loc, given[loc] | {"msg": message}


def _unknown_key(model: type[BaseModel], loc: Location) -> str:
    """'unknown key 'priorty', did you mean 'priority'?', from the keys the model takes there."""
    name = str(loc[-1])
    known = _keys_at(model, loc[:-1])
    if not known:
        return f"unknown key {name!r}"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown key {name!r}, did you mean {close[0]!r}?"
    return f"unknown key {name!r} (expected one of: {', '.join(known)})"


def _keys_at(model: type[BaseModel], loc: Location) -> list[str]:
    """The keys the model takes at a location inside it; list indexes and the keys of a
    mapping of models (`levels: {P1: ...}`) step over to the model they hold."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        field = current.model_fields.get(str(part))
        if field is not None:
            current = _model_in(field.annotation)
    if current is None:
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


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
    # Parameters and templates are checked even when the policy is not valid otherwise: every
    # mistake in one run, not one more on each.
    found = [*_parameter_errors(document), *_template_errors(document)]
    errors.extend(found)
    return document, None if found else policy


def _step_locations(value: Mapping[str, Any]) -> Iterator[Location]:
    """Where the steps are written, each a mapping naming a known action (the others are
    the schema's errors)."""
    places: list[tuple[Location, Any]] = []
    for field in ("steps", "on_resolved"):
        written = value.get(field)
        if isinstance(written, list):
            places += [((field, index), step) for index, step in enumerate(written)]
    if isinstance(value.get("verify"), dict):
        places.append((("verify", "check"), value["verify"].get("check")))
    for location, step in places:
        if isinstance(step, dict) and step.get("action") in CATALOGUE:
            yield location


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


def _unknown_parameter(spec: ActionSpec, loc: Location) -> str:
    """Pydantic's "Extra inputs are not permitted" does not say what the action does take."""
    name = str(loc[-1])
    if not spec.parameters:
        return f"unknown parameter {name!r}: {spec.name} takes no parameters"
    close = difflib.get_close_matches(name, spec.parameters, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    expected = ", ".join(spec.parameters)
    return f"unknown parameter {name!r} for {spec.name}{hint} (expected: {expected})"


def _template_errors(document: Document) -> Iterator[SourceError]:
    value = document.value
    places: list[tuple[Location, Any]] = [(("target",), value.get("target"))]
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
            problem = condition_error(str(condition))
            if problem:
                yield document.error((*location, "when"), problem)


def _strings(location: Location, value: Any) -> Iterable[tuple[Location, str]]:
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings((*location, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings((*location, index), item)
