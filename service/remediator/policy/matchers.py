"""Alertmanager's label matchers, parsed and evaluated the way Alertmanager 0.25 does.

Same grammar as `pkg/labels/parse.go` (`name op value`, the value quoted or bare, `\\"`, `\\\\`
and `\\n` unescaped, any other backslash kept literally), same semantics: a regex is anchored
at both ends, and a label the alert lacks is matched as the empty string.

Regexes are Go's RE2 syntax, run by RE2 itself in linear time (`regex.compile_anchored`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from remediator.policy.regex import AnchoredRegex, RegexError, compile_anchored

_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.DOTALL)
_LABEL_NAME_START = re.compile(r"\s*[a-zA-Z_:]")


class MatcherError(ValueError):
    """A matcher that Alertmanager would refuse too."""


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    _regex: AnchoredRegex | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                compiled = compile_anchored(self.value)
            except RegexError as exc:
                raise MatcherError(f"invalid regular expression {self.value!r}: {exc}") from None
            object.__setattr__(self, "_regex", compiled)

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self._regex is None:
            return (value == self.value) is (self.type is MatchType.EQUAL)
        return self._regex.matches(value) is (self.type is MatchType.REGEX)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """One matcher such as `namespace=~"prod-.*"`; raises MatcherError saying what is wrong."""
    found = _MATCHER.match(text)
    if found is None:
        raise MatcherError(_why_unparsable(text))
    name, operator, raw = found.groups()
    return Matcher(name, MatchType(operator), _unquote(raw))


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)


def _unquote(raw: str) -> str:
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    value: list[str] = []
    escaped = False
    for position, char in enumerate(body):
        if escaped:
            escaped = False
            value.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
        elif char == "\\" and position < len(body) - 1:
            escaped = True
        elif char == '"':
            if not quoted or position < len(body) - 1:
                raise MatcherError(f"value contains an unescaped double quote: {raw}")
            quoted = False
        else:
            value.append(char)
    if quoted:
        raise MatcherError(f"value lacks its closing double quote: {raw}")
    return "".join(value)


def _why_unparsable(text: str) -> str:
    example = 'expected name, one of = != =~ !~, then a value, as in alertname="ApplicationDown"'
    if not _LABEL_NAME_START.match(text):
        return f"{example}; a label name starts with a letter, '_' or ':' (got {text!r})"
    return f"{example} (got {text!r})"
