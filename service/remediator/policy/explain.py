"""Why an alert got its decision: the winner, and the near misses with their failed matchers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from remediator.policy.matchers import Matcher
from remediator.policy.policyset import PolicySet


@dataclass(frozen=True)
class Candidate:
    policy: str
    file: str
    priority: int
    enabled: bool
    failed: tuple[Matcher, ...]

    @property
    def matches(self) -> bool:
        return self.enabled and not self.failed


def candidates(labels: Mapping[str, str], policies: PolicySet, closest: int = 3) -> list[Candidate]:
    """Every policy that matches, in winning order, then the `closest` that fail fewest matchers."""
    scored = [
        Candidate(
            policy.name,
            policies.files[policy.name],
            policy.priority,
            policy.enabled,
            tuple(matcher for matcher in policy.match if not matcher.matches(labels)),
        )
        for policy in policies.policies
    ]
    matching = [candidate for candidate in scored if candidate.matches]
    losers = sorted(
        (candidate for candidate in scored if not candidate.matches),
        key=lambda candidate: len(candidate.failed),
    )
    return matching + losers[:closest]
