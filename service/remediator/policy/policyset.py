"""A validated set of policies, indexed so an alert is matched without scanning them all."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from remediator.policy.matchers import MatchType
from remediator.policy.schema import EscalationMatrix, Guardrails, Policy


@dataclass(frozen=True)
class PolicySet:
    """Policies in the order they win: highest priority first, then by file name."""

    policies: tuple[Policy, ...]
    files: Mapping[str, str]  # policy name -> the file it came from
    matrix: EscalationMatrix
    guardrails: Guardrails = field(default_factory=Guardrails)
    _by_alertname: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _unindexed: tuple[int, ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        policies: Sequence[Policy],
        files: Mapping[str, str],
        matrix: EscalationMatrix,
        guardrails: Guardrails | None = None,
    ) -> PolicySet:
        ordered = sorted(policies, key=lambda policy: (-policy.priority, files[policy.name]))
        return cls(tuple(ordered), dict(files), matrix, guardrails or Guardrails())

    def __post_init__(self) -> None:
        by_alertname: dict[str, list[int]] = {}
        unindexed: list[int] = []
        for position, policy in enumerate(self.policies):
            name = _required_alertname(policy)
            if name is None:
                unindexed.append(position)
            else:
                by_alertname.setdefault(name, []).append(position)
        object.__setattr__(self, "_by_alertname", {k: tuple(v) for k, v in by_alertname.items()})
        object.__setattr__(self, "_unindexed", tuple(unindexed))

    @property
    def by_name(self) -> dict[str, Policy]:
        return {policy.name: policy for policy in self.policies}

    @property
    def alertnames(self) -> frozenset[str]:
        """The alertnames a policy names with `alertname="X"`: the only ones the metrics count
        by name (any other is `other`), so invented names cannot grow the series."""
        return frozenset(self._by_alertname)

    def candidates(self, labels: Mapping[str, str]) -> Iterator[Policy]:
        """The policies that could match these labels, in winning order.

        Purely computational: a policy with an `alertname="X"` matcher is looked up by the
        alert's alertname; only policies without one are tried for every alert.
        """
        indexed = self._by_alertname.get(labels.get("alertname", ""), ())
        for position in sorted(indexed + self._unindexed):
            yield self.policies[position]


def _required_alertname(policy: Policy) -> str | None:
    for matcher in policy.match:
        if matcher.name == "alertname" and matcher.type is MatchType.EQUAL:
            return matcher.value
    return None


class PoliciesInForce(Protocol):
    """The policy set in force now, which a reload may replace whole at any time: read
    `current` again for each decision. runtime/live_policies.py keeps it."""

    @property
    def current(self) -> PolicySet: ...

    @property
    def revision(self) -> str | None:
        """The policy directory's git commit, recorded with every remediation."""
        ...

    def health(self) -> dict[str, str]:
        """ok, or degraded while the last reload was refused."""
        ...
