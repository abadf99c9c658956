"""Small plots over days, drawn as inline SVG by the template (`_plot.html`): bars for a
count, lines for a share or a duration. Here only numbers: the coordinates and each point's
title; no markup is built in Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 240.0, 64.0
TOP_MARGIN = 4.0  # the highest value stops short of the top edge


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # "2027-01-15: 12 runs"


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Series:
    css: str  # the stylesheet's class: share, remediated, escalated
    segments: tuple[str, ...]  # `points` of each unbroken run of days with a value
    dots: tuple[Dot, ...]


@dataclass(frozen=True)
class Plot:
    caption: str
    peak: str  # the top of the scale, as people read it
    bars: tuple[Bar, ...] = ()
    series: tuple[Series, ...] = ()
    width: float = WIDTH
    height: float = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.bars and not any(s.dots for s in self.series)


def bars(caption: str, days: Sequence[str], values: Sequence[int], unit: str = "runs") -> Plot:
    """One bar a day, scaled to the highest day."""
    top = max(values, default=0)
    step = WIDTH / max(len(days), 1)
    drawn = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        if value <= 0:
            continue
        height = (HEIGHT - TOP_MARGIN) * value / top
        x = round(index * step + step * 0.1, 2)
        drawn.append(
            Bar(
                x,
                round(HEIGHT - height, 2),
                round(step * 0.8, 2),
                round(height, 2),
                f"{day}: {value} {unit}",
            )
        )
    return Plot(caption, f"{top} {unit}", bars=tuple(drawn))


def lines(
    caption: str,
    days: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    top: float | None = None,
    shown: Callable[[float], str] = str,
) -> Plot:
    """A line a series (its class the key), gaps where a day has no value; scaled to `top`,
    else to the highest value of any series."""
    highest = max((v for values in series.values() for v in values if v is not None), default=0)
    scale = top if top is not None else highest
    step = WIDTH / max(len(days), 1)
    drawn = []
    for css, values in series.items():
        segments: list[list[str]] = []
        dots = []
        previous = False
        for index, (day, value) in enumerate(zip(days, values, strict=True)):
            if value is None:
                previous = False
                continue
            x = round(index * step + step / 2, 2)
            y = round(HEIGHT - (HEIGHT - TOP_MARGIN) * (value / scale if scale else 0), 2)
            if not previous:
                segments.append([])
            segments[-1].append(f"{x},{y}")
            dots.append(Dot(x, y, f"{day}: {css} {shown(value)}"))
            previous = True
        joined = tuple(" ".join(points) for points in segments if len(points) > 1)
        drawn.append(Series(css, joined, tuple(dots)))
    return Plot(caption, shown(scale), series=tuple(drawn))
