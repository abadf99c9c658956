"""The pages' HTML: Jinja templates from the package (`console/templates/`), every one
autoescaped, so an alert's labels and annotations, a step's data and a person's note are
always text. No template marks data `|safe`; the filters here return plain strings, escaped
like any other value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined

from remediator.console.security import HEADERS

_ENVIRONMENT = Environment(
    loader=PackageLoader("remediator.console", "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=StrictUndefined,  # a name a template gets wrong fails its test, not silently
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(moment: datetime | None) -> str:
    """A time as people read it on the console: UTC, to the second."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | timedelta | None) -> str:
    """A duration, short: 850 ms, 42 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    if value is None:
        return ""
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if total < 1:
        return f"{round(total * 1000)} ms"
    if total < 60:
        return f"{total:.1f} s" if total < 10 else f"{round(total)} s"
    minutes, rest = divmod(round(total), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime, now: datetime) -> str:
    """How long before `now`: "3 min ago"; a moment after it (its sender's clock is ahead of
    the service's) reads "in 2 min"."""
    age = (now - moment).total_seconds()
    return f"{seconds(age)} ago" if age >= 0 else f"in {seconds(-age)}"


def pretty(value: Any) -> str:
    """JSON, indented, keys sorted: a step's data, a request's parameters."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.0f}%"


_ENVIRONMENT.filters.update(when=when, seconds=seconds, ago=ago, pretty=pretty, percent=percent)


def html(template: str, **values: Any) -> str:
    return _ENVIRONMENT.get_template(template).render(**values)


def page(template: str, *, status: int = 200, **values: Any) -> web.Response:
    """A page, never cached (it shows internal data), with the console's headers."""
    response = web.Response(
        text=html(template, **values), status=status, content_type="text/html", charset="utf-8"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(HEADERS)
    return response
