"""Regular expressions as Alertmanager reads them: Go's RE2 syntax, run by RE2 itself.

RE2 (google-re2) matches in time linear in the text, whatever the pattern, so no label can make
a match slow: a backtracking engine takes seconds on `([a-z0-9]+-?)+` against 28 characters,
RE2 a fraction of a millisecond against 100,000. Its syntax and meaning are those of Go's
`regexp`, which Alertmanager compiles a matcher with, as `^(?:pattern)$`; so is this. The one
escape RE2 knows and Go refuses, `\\C` (any one byte), is refused here too. RE2 never falls back
to a backtracking engine: a pattern it cannot compile is an error.
"""

from __future__ import annotations

import functools
import re

import re2

# Go refuses `\C`; inside `\Q...\E` it is literal text, so those spans are stepped over.
_ESCAPES = re.compile(r"\\Q.*?(?:\\E|$)|\\(.)", re.DOTALL)


class RegexError(ValueError):
    """A pattern Go's regexp (and so Alertmanager) would refuse, or one too large for RE2."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the error is raised, not printed to stderr
    options.never_capture = True  # only "does it match" is asked: RE2's fastest engine
    return options


_OPTIONS = _options()


class AnchoredRegex:
    """A pattern that must match the whole text, as an Alertmanager matcher's does."""

    __slots__ = ("compiled", "pattern")

    def __init__(self, pattern: str, compiled: re2._Regexp[bytes]) -> None:
        self.pattern = pattern
        self.compiled = compiled

    def __repr__(self) -> str:
        return f"AnchoredRegex({self.pattern!r})"

    def matches(self, text: str) -> bool:
        return self.compiled.fullmatch(_utf8(text)) is not None


@functools.lru_cache(maxsize=1024)
def compile_anchored(pattern: str) -> AnchoredRegex:
    """The pattern as Alertmanager compiles a matcher's: `^(?:pattern)$`."""
    for escape in _ESCAPES.finditer(pattern):
        if escape.group(1) == "C":
            raise RegexError("invalid escape sequence: \\C (Go's regexp has no byte class)")
    try:
        compiled = re2.compile(_utf8(f"^(?:{pattern})$"), _OPTIONS)
    except re2.error as exc:
        raise RegexError(_reason(exc)) from None
    return AnchoredRegex(pattern, compiled)


def _utf8(text: str) -> bytes:
    """What RE2 reads, as Go does: UTF-8 bytes (a lone surrogate becomes bytes no rune matches,
    rather than an exception)."""
    return text.encode("utf-8", "surrogatepass")


def _reason(exc: re2.error) -> str:
    reason = exc.args[0] if exc.args else "refused by RE2"
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    if text.startswith("pattern too large"):
        return f"{text}: its compiled form is over RE2's 8 MiB; use smaller repetition counts"
    return text
