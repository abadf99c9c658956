"""A URL template's parts: what the policy wrote, and what each expression may add where it lands.

The policy's literal text decides the URL's shape: its scheme, where the authority (host and
port) ends, whether it has a query. An expression's value (a label, an annotation) only fills
in the part it lands in, so it may not carry the characters that would start another part or
move the request: `@` (credentials), `/` and `\\` (another path), `?` (a query), `#` (a
fragment, which drops the rest). `http://{{ labels.instance }}/health` with an instance of
`127.0.0.1:18080/latest/meta-data/?x=` is refused, not sent to `/latest/meta-data/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from remediator.policy.templates import render

_EXPRESSION = re.compile(r"({{.*?}})", re.DOTALL)
_SCHEMES = ("http://", "https://")


class Part(StrEnum):
    AUTHORITY = "host and port"
    PATH = "path"
    QUERY = "query"
    FRAGMENT = "fragment"


_NEXT = {"/": Part.PATH, "?": Part.QUERY, "#": Part.FRAGMENT}
_UNRESERVED_OR_ESCAPED = r"([A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})*"
_ALLOWED = {
    Part.AUTHORITY: (re.compile(r"[A-Za-z0-9._~:\[\]-]*"), "letters, digits and . - _ ~ : [ ]"),
    Part.PATH: (re.compile(_UNRESERVED_OR_ESCAPED), "letters, digits, . - _ ~ and %XX escapes"),
    Part.QUERY: (re.compile(_UNRESERVED_OR_ESCAPED), "letters, digits, . - _ ~ and %XX escapes"),
}


def segments(template: str) -> Iterator[tuple[Part, str, bool]]:
    """Each piece of the template after its scheme: the part it is in, its text, and whether
    it is an expression. The part is decided by the literal text before it alone."""
    scheme = next(s for s in _SCHEMES if template.startswith(s))
    part = Part.AUTHORITY
    for piece in _EXPRESSION.split(template[len(scheme) :]):
        if not piece:
            continue
        if _EXPRESSION.fullmatch(piece):
            yield part, piece, True
            continue
        start = 0
        for index, char in enumerate(piece):
            later = _NEXT.get(char)
            if later is not None and _order(later) > _order(part):
                if index > start:
                    yield part, piece[start:index], False
                part, start = later, index
        if start < len(piece):
            yield part, piece[start:], False


def _order(part: Part) -> int:
    return list(Part).index(part)


def template_problem(template: str) -> str | None:
    """What is wrong with a URL template as written, or None (checked when policies load)."""
    if "{%" in template or "{#" in template:
        return "a URL may use {{ }} expressions only, not {% %} blocks or {# #} comments"
    if not template.startswith(_SCHEMES):
        return None  # the scheme's own check says so
    for part, text, expression in segments(template):
        if part is Part.AUTHORITY and not expression and "@" in text:
            return "a URL may not carry a user or password (use headers_from_env)"
        if part is Part.FRAGMENT and expression:
            return "an expression may not fill in a URL's fragment (it is never sent)"
    return None


def label_problem(template: str, context: Mapping[str, Any]) -> str | None:
    """Which expression renders to something that would change the URL's shape, or None."""
    if not template.startswith(_SCHEMES):
        return None
    for part, text, expression in segments(template):
        if not expression:
            continue
        value = str(render(text, context))
        if part is Part.FRAGMENT:
            return f"{text} lands in the URL's fragment"
        pattern, allowed = _ALLOWED[part]
        if not pattern.fullmatch(value):
            return (
                f"{text} renders {value!r}, which may hold only {allowed} in the URL's {part}"
                " (it would change where the request goes)"
            )
        if part is Part.PATH and _escapes_segment(value):
            return f"{text} renders {value!r}, which would leave its path segment"
    return None


def _escapes_segment(value: str) -> bool:
    decoded = unquote(value)
    return decoded in (".", "..") or "/" in decoded or "\\" in decoded
