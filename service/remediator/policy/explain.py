"""Why an alert got its decision: the winner, the matching losers and why they lost, and the
near misses with their failed matchers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from remediator.policy.matchers import Matcher
from remediator.policy.policyset import PolicySet


@dataclass(frozen=True)
class Candidate:
    policy: str
    file: str
    priority: int
    enabled: bool
    failed: tuple[Matcher, ...]
    loses_to: Candidate | None = None  # the winner, when this one matches too

    @property
    def matches(self) -> bool:
        return self.enabled and not self.failed

    @property
    def verdict(self) -> str:
        """What an author needs to see: a match that did not win must not look like the winner."""
        if self.failed:
            return "fails " + ", ".join(map(str, self.failed))
        if not self.enabled:
            return "disabled"
        if self.loses_to is None:
            return "matches and wins"
        return f"matches, but loses to {self.loses_to.policy} ({self._why_it_loses()})"

    def _why_it_loses(self) -> str:
        """The documented rule: the highest priority wins, then the file name that sorts first."""
        winner = self.loses_to
        assert winner is not None
        if winner.priority != self.priority:
            return f"priority {winner.priority} > {self.priority}"
        return f"same priority {self.priority}, {winner.file} sorts before {self.file}"


def candidates(labels: Mapping[str, str], policies: PolicySet, closest: int = 3) -> list[Candidate]:
    """Every policy that matches, in winning order, then the `closest` that fail fewest matchers.

    Every match after the first is marked as losing to the first, which is the one decide() picks.
    """
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
    misses = sorted(
        (candidate for candidate in scored if not candidate.matches),
        key=lambda candidate: len(candidate.failed),
    )
    ranked = matching[:1] + [replace(candidate, loses_to=matching[0]) for candidate in matching[1:]]
    return ranked + misses[:closest]
