"""What `policies check` warns of: policies that are valid but will not do what they say.

- A matcher value that keeps its quotes: `alertname='HighCPUUsage'` matches the label value
  with the single quotes in it (as Alertmanager does), so the policy never fires.
- A policy shadowed by one that comes first for every alert it matches: an enabled policy
  earlier in winning order whose matchers are a subset of its own matches each of its alerts
  first, so it never wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from remediator.policy.matchers import Matcher, MatcherError, parse_matcher
from remediator.policy.policyset import PolicySet
from remediator.policy.source import Document, SourceError

_QUOTES = ("'", '"', "`")


def policy_warnings(policies: PolicySet, documents: dict[str, Document]) -> list[SourceError]:
    """The warnings of a valid set, given each policy's document by policy name; in file and
    line order."""
    found = [*_quoted_values(documents.values()), *_shadowed(policies, documents)]
    return sorted(found, key=lambda w: (str(w.file), w.position.line, w.position.column))


def _quoted_values(documents: Iterable[Document]) -> Iterator[SourceError]:
    for document in documents:
        written = document.value.get("match") if isinstance(document.value, dict) else None
        for index, text in enumerate(written if isinstance(written, list) else []):
            matcher = _parsed(text)
            if matcher is not None and _keeps_quotes(matcher.value):
                inner = matcher.value[1:-1]
                yield document.error(
                    ("match", index),
                    f"warning: the value {matcher.value} keeps its quotes, which the label"
                    f" value would have to contain too (as in Alertmanager), so this never"
                    f' matches; write {matcher.name}{matcher.type}"{inner}"',
                )


def _parsed(text: object) -> Matcher | None:
    try:
        return parse_matcher(text) if isinstance(text, str) else None
    except MatcherError:
        return None


def _keeps_quotes(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES


def _shadowed(policies: PolicySet, documents: dict[str, Document]) -> Iterator[SourceError]:
    earlier: list[tuple[str, frozenset[Matcher]]] = []
    for policy in policies.policies:
        if not policy.enabled:
            continue
        matchers = frozenset(policy.match)
        winner = next((name for name, first in earlier if first <= matchers), None)
        if winner is not None and policy.name in documents:
            shadow = policies.by_name[winner]
            why = (
                f"priority {shadow.priority} > {policy.priority}"
                if shadow.priority != policy.priority
                else f"same priority, {policies.files[winner]} sorts first"
            )
            yield documents[policy.name].error(
                ("match",),
                f"warning: policy {policy.name!r} never wins: {winner!r} ({why}) matches every"
                f" alert it matches ({', '.join(map(str, shadow.match))})",
            )
        earlier.append((policy.name, matchers))
