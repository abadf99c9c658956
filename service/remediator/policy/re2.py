"""Go's RE2 regular expressions, as Alertmanager uses them, compiled with Python's `re`.

A policy must match exactly the alerts that Alertmanager's own routing would, so the syntax the
two engines read differently is translated: `\\d`, `\\w`, `\\s` and `\\b` are ASCII-only in RE2,
POSIX classes such as `[[:alpha:]]` exist only there, `\\z` is Python's `\\Z`, and inline flags
may appear mid-pattern. What RE2 refuses (look-around, back-references, conditionals) is refused
here too, and what Python cannot express (`\\p{..}`, the `U` flag, negated classes inside a set)
is refused with a message rather than matched differently.
"""

from __future__ import annotations

import re

_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
# Perl classes: their members, inside a set, and the whole class outside one.
_PERL_IN_SET = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_PERL = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[0-9A-Za-z_]",
    "W": "[^0-9A-Za-z_]",
    "s": "[\\t\\n\\f\\r ]",
    "S": "[^\\t\\n\\f\\r ]",
    "b": "(?a:\\b)",
    "B": "(?a:\\B)",
    "z": "\\Z",
}
_FLAGS = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")
_POSIX_CLASS = re.compile(r"\[:(\^?)([a-z]+):\]")


class RE2Error(ValueError):
    pass


def compile_anchored(pattern: str) -> re.Pattern[str]:
    """The pattern as Alertmanager compiles a matcher's: `^(?:pattern)$`."""
    translated = translate(pattern)
    leading = _FLAGS.match(translated)
    if leading and leading.group(3) == ")" and not leading.group(2):
        flags = leading.group(0)
        body = translated[leading.end() :]
    else:
        flags, body = "", translated
    try:
        return re.compile(f"{flags}^(?:{body})$")
    except re.error as exc:
        raise RE2Error(exc.msg) from None


def translate(pattern: str) -> str:
    out: list[str] = []
    position, in_set = 0, False
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern):
            out.append(_escape(pattern[position + 1], in_set))
            position += 2
        elif in_set:
            posix = _POSIX_CLASS.match(pattern, position)
            if posix:
                out.append(_posix(posix))
                position = posix.end()
                continue
            if char == "]":
                in_set = False
            out.append(char)
            position += 1
        elif char == "[":
            start = position + 1 + (pattern.startswith("^", position + 1))
            in_set = True
            out.append(pattern[position:start])
            if pattern.startswith("]", start):  # a leading ] is a member, not the end
                out.append("]")
                start += 1
            position = start
        elif pattern.startswith("(?", position):
            consumed = _group_opening(pattern, position, at_start=not out)
            out.append(pattern[position : position + consumed])
            position += consumed
        else:
            out.append(char)
            position += 1
    return "".join(out)


def _escape(char: str, in_set: bool) -> str:
    if char in "123456789":
        raise RE2Error(f"back-reference \\{char}: RE2 has none")
    if char in "pP":
        raise RE2Error(f"Unicode class \\{char}: not supported here")
    if char == "C":
        raise RE2Error("\\C: not supported here")
    if in_set:
        if char in _PERL_IN_SET:
            return _PERL_IN_SET[char]
        if char in "DWS":
            raise RE2Error(f"negated class \\{char} inside a set: not supported here")
        return "\\" + char
    return _PERL.get(char, "\\" + char)


def _posix(found: re.Match[str]) -> str:
    negated, name = found.groups()
    if name not in _POSIX:
        raise RE2Error(f"unknown character class [:{name}:]")
    if negated:
        raise RE2Error(f"negated character class [:^{name}:]: not supported here")
    return _POSIX[name]


def _group_opening(pattern: str, position: int, *, at_start: bool) -> int:
    """How many characters of a `(?` opening to copy: flags, named and non-capturing groups."""
    rest = pattern[position + 2 :]
    if rest.startswith(("P<", "<")) and not rest.startswith(("<=", "<!")):
        return 2
    if rest.startswith((":", "P<")):
        return 2
    flags = _FLAGS.match(pattern, position)
    if flags is None:
        raise RE2Error("look-around, conditionals and back-references: RE2 has none")
    if "U" in flags.group(0):
        raise RE2Error("the U (ungreedy) flag: not supported here")
    if flags.group(3) == ")" and not at_start:
        raise RE2Error("inline flags such as (?i) are supported at the start only; use (?i:...)")
    return flags.end() - position
