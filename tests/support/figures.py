"""What the reliability scenarios measure, and how many of each they run.

Every scenario runs in two sizes: the short one in CI with the other tests, the issue's full
counts with REMEDIATOR_CHAOS=long (`make chaos`). A scenario records its figure before it
asserts, so a failing figure is written down too (tests/reliability/conftest.py writes them).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

LONG = os.environ.get("REMEDIATOR_CHAOS", "").lower() == "long"


def scale(short: int, long: int) -> int:
    """The count a scenario runs: the issue's figure in the long run, a few in CI."""
    return long if LONG else short


@dataclass(frozen=True)
class Figure:
    scenario: str
    expected: str
    figure: str
    passed: bool
    seconds: float
    test: str


@dataclass
class Figures:
    """What one test measured, in the words of the issue's table."""

    test: str
    started: float = field(default_factory=time.monotonic)

    def record(self, scenario: str, *, expected: str, figure: str, passed: bool) -> None:
        seconds = time.monotonic() - self.started
        RECORDED.append(Figure(scenario, expected, figure, passed, seconds, self.test))


RECORDED: list[Figure] = []
