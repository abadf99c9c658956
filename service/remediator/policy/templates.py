"""Templates in policy files, rendered in jinja2's sandbox from the alert alone.

A template sees only `labels`, `annotations` and `alert` (status, fingerprint, startsAt,
generatorURL). Label values are data, never template source: `{{ 7*7 }}` in a label stays
those characters, and what a render produces is checked again before it names anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

# Renders are always text: a native environment would literal_eval a label value of "[1, 2]"
# into a list, turning data into structure. Parameter models coerce "5" to 5 where they must.
_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

# Kubernetes object names: RFC 1123 labels (namespaces) and subdomains (most other names).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class RenderError(ValueError):
    """A template that cannot be rendered from this alert, or renders to something unsafe."""


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


TEMPLATE_NAMES = frozenset({"labels", "annotations", "alert"})
CONDITION_NAMES = TEMPLATE_NAMES | {"steps"}


def template_syntax_error(text: str, known: frozenset[str] = TEMPLATE_NAMES) -> str | None:
    """What is wrong with the template, or None; checked when policies load. A name the
    template cannot see (`lables.pod`) is caught here, not when an alert first needs it."""
    try:
        _compiled(text)
        unknown = sorted(meta.find_undeclared_variables(_ENVIRONMENT.parse(text)) - known)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message} (line {exc.lineno} of the template)"
    if unknown:
        return (
            f"template uses {', '.join(map(repr, unknown))}, which it cannot see"
            f" (it sees {', '.join(sorted(known))})"
        )
    return None


_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "else"})


def condition_error(expression: str) -> str | None:
    """What is wrong with a step's `when` expression, in words about the expression (not the
    template Jinja wraps it in), or None."""
    try:
        _condition(expression)
        names = meta.find_undeclared_variables(_ENVIRONMENT.parse("{{ " + expression + " }}"))
    except TemplateSyntaxError as exc:
        return f"cannot read the expression {expression!r}: {_in_words(exc.message or str(exc))}"
    misplaced = sorted(names & _KEYWORDS)
    if misplaced:
        return (
            f"cannot read the expression {expression!r}: {misplaced[0]!r} is an operator and"
            " needs an operand on each side"
        )
    unknown = sorted(names - CONDITION_NAMES)
    if unknown:
        return (
            f"expression uses {', '.join(map(repr, unknown))}, which it cannot see"
            f" (it sees {', '.join(sorted(CONDITION_NAMES))})"
        )
    return None


def _in_words(message: str) -> str:
    if "end of template" in message:
        return "it ends before it is complete (a bracket left open, or an operand missing)"
    if message == "chunk after expression":
        return "text follows a complete expression (a comparison is ==, not =)"
    return message


@lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    return _ENVIRONMENT.from_string(text)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string inside value (a string, list or mapping)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return str(_compiled(value).render(context))
        except TemplateError as exc:
            raise RenderError(f"cannot render {value!r}: {exc}") from exc
    if isinstance(value, Mapping):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


def check_dns_label(what: str, value: object) -> str:
    text = str(value)
    if len(text) > 63 or not _DNS_LABEL.fullmatch(text):
        raise RenderError(f"{what} {text!r} is not a valid RFC 1123 label")
    return text


def check_dns_subdomain(what: str, value: object) -> str:
    text = str(value)
    if len(text) > 253 or not _DNS_SUBDOMAIN.fullmatch(text):
        raise RenderError(f"{what} {text!r} is not a valid RFC 1123 name")
    return text


class ConditionError(ValueError):
    """A `when` expression that cannot be evaluated against the run so far."""


@lru_cache(maxsize=1024)
def _condition(expression: str) -> Any:
    return _ENVIRONMENT.compile_expression(expression, undefined_to_none=False)


def evaluate_condition(expression: str, context: Mapping[str, Any]) -> bool:
    """A step's `when`, over `steps.<id>.ok / .outcome / .data`, `labels` and `annotations`."""
    try:
        return bool(_condition(expression)(**context))
    except (TemplateError, TypeError, ValueError) as exc:
        raise ConditionError(f"cannot evaluate when {expression!r}: {exc}") from exc
