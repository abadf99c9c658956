"""Two replays of the same alerts compared: the policy set at a git revision (before) and the
working tree's (after). Purely computational."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from remediator.replay.results import AlertResult, Report


class FailOn(StrEnum):
    """What in a diff makes `--fail-on` exit 1: a team's CI refusing such a change."""

    OUTCOME_CHANGED = "outcome-changed"
    PAGES_ADDED = "pages-added"
    NEW_NAMESPACE = "new-namespace"
    NEW_TARGET = "new-target"
    BLAST_RADIUS_GREW = "blast-radius-grew"


@dataclass(frozen=True)
class OutcomeChange:
    fired_at: datetime
    alertname: str
    fingerprint: str
    before: str
    after: str


@dataclass(frozen=True)
class PageChange:
    fired_at: datetime
    alertname: str
    fingerprint: str
    before: int
    after: int


@dataclass(frozen=True)
class Peak:
    """The most targets of a namespace changed at once (runs admitted to ended overlapping)."""

    namespace: str
    before: int
    after: int


@dataclass(frozen=True)
class Diff:
    outcomes: tuple[OutcomeChange, ...]
    new_namespaces: tuple[str, ...]
    new_targets: tuple[str, ...]
    peaks: tuple[Peak, ...]
    pages: tuple[PageChange, ...]
    pages_before: int
    pages_after: int

    def found(self) -> dict[FailOn, int]:
        """How many of each kind of change the diff holds."""
        return {
            FailOn.OUTCOME_CHANGED: len(self.outcomes),
            FailOn.PAGES_ADDED: sum(max(0, page.after - page.before) for page in self.pages),
            FailOn.NEW_NAMESPACE: len(self.new_namespaces),
            FailOn.NEW_TARGET: len(self.new_targets),
            FailOn.BLAST_RADIUS_GREW: sum(peak.after > peak.before for peak in self.peaks),
        }

    def failures(self, fail_on: Iterable[FailOn]) -> list[str]:
        found = self.found()
        return [f"{kind}: {found[kind]}" for kind in sorted(set(fail_on)) if found[kind]]


def compare(before: Report, after: Report) -> Diff:
    old = {result.key: result for result in before.alerts}
    new = {result.key: result for result in after.alerts}
    outcomes, pages = [], []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        shown = now or was
        assert shown is not None
        label = (shown.fired_at, shown.alertname, shown.fingerprint)
        verdicts = (was.verdict if was else "-", now.verdict if now else "-")
        if verdicts[0] != verdicts[1]:
            outcomes.append(OutcomeChange(*label, *verdicts))
        counts = (was.pages if was else 0, now.pages if now else 0)
        if counts[0] != counts[1]:
            pages.append(PageChange(*label, *counts))
    return Diff(
        tuple(sorted(outcomes, key=_when)),
        tuple(sorted(_namespaces(after.alerts) - _namespaces(before.alerts))),
        tuple(sorted(_targets(after.alerts) - _targets(before.alerts))),
        _peaks(peaks(before.alerts), peaks(after.alerts)),
        tuple(sorted(pages, key=_when)),
        sum(result.pages for result in before.alerts),
        sum(result.pages for result in after.alerts),
    )


def _when(change: OutcomeChange | PageChange) -> tuple[datetime, str]:
    return change.fired_at, change.fingerprint


def _acting(results: Iterable[AlertResult]) -> list[AlertResult]:
    return [result for result in results if result.acting is not None and result.target]


def _namespaces(results: Iterable[AlertResult]) -> set[str]:
    return {result.namespace for result in _acting(results) if result.namespace}


def _targets(results: Iterable[AlertResult]) -> set[str]:
    return {result.target for result in _acting(results) if result.target}


def peaks(results: Iterable[AlertResult]) -> dict[str, int]:
    """Per namespace, the most distinct targets with a run changing them at one time (a run
    counts from its admission to its end; runs at one instant count together)."""
    marks: dict[str, list[tuple[datetime, int, str]]] = {}
    for result in _acting(results):
        assert result.acting is not None
        assert result.target is not None
        start, end = result.acting
        namespace = result.namespace or "-"
        marks.setdefault(namespace, []).extend([(start, 0, result.target), (end, 1, result.target)])
    found = {}
    for namespace, points in marks.items():
        active: dict[str, int] = {}
        peak = 0
        for _, ending, target in sorted(points):
            active[target] = active.get(target, 0) + (-1 if ending else 1)
            if not active[target]:
                del active[target]
            peak = max(peak, len(active))
        found[namespace] = peak
    return found


def _peaks(before: dict[str, int], after: dict[str, int]) -> tuple[Peak, ...]:
    return tuple(
        Peak(namespace, before.get(namespace, 0), after.get(namespace, 0))
        for namespace in sorted(before.keys() | after.keys())
    )
