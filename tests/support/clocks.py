"""A clock for the code under test that moves only when the test moves it."""

from __future__ import annotations

START = 1_800_000_000.0


class Clock:
    """Time that moves only when a test moves it: from `now`, START unless told."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
