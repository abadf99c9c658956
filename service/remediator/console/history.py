"""History (`/ui/history`): every decision and run, newest first, searched by alert name,
target, policy, outcome and time, 50 a page, paged on by a cursor (the last run's start and
id, as /api/v1/runs pages). One query a page, each filter on an index of its own (migration
0015), so a page is as quick on a year of runs as on a day's."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from remediator.console.people import Visitor
from remediator.console.sources import Sources
from remediator.console.states import outcome_css
from remediator.engine.outcome import RunOutcome
from remediator.store import Remediation, RunQuery

PAGE = 50
TEXT_FILTERS = ("alertname", "target", "policy")
MAX_FILTER = 1000


class BadFilter(ValueError):
    """A filter the page cannot use: shown above the form, no runs listed."""


@dataclass(frozen=True)
class Filters:
    """The form's fields as given (the empty ones unset)."""

    values: Mapping[str, str]

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        known = (*TEXT_FILTERS, "outcome", "since", "until")
        return cls({name: query[name].strip() for name in known if query.get(name, "").strip()})

    def query(self, cursor: str | None) -> RunQuery:
        values = self.values
        for name, value in values.items():
            if len(value) > MAX_FILTER or "\x00" in value:
                raise BadFilter(f"{name}: at most {MAX_FILTER} characters, no NUL")
        outcome = values.get("outcome")
        if outcome is not None and outcome not in set(RunOutcome):
            raise BadFilter(f"outcome: unknown outcome {outcome!r}")
        return RunQuery(
            limit=PAGE + 1,  # one more: whether a page follows
            alertname=values.get("alertname"),
            outcome=outcome,
            policy=values.get("policy"),
            target=values.get("target"),
            since=_moment(values, "since"),
            until=_moment(values, "until"),
            after=_cursor(cursor) if cursor else None,
        )

    def link(self, cursor: str | None = None) -> str:
        """This search's page from `cursor` (None: its first)."""
        fields = dict(self.values) | ({"cursor": cursor} if cursor else {})
        return "/ui/history" + (f"?{urlencode(fields)}" if fields else "")


async def show(sources: Sources, request: web.Request, visitor: Visitor) -> web.Response:
    filters = Filters.of(request.query)
    cursor = request.query.get("cursor") or None
    try:
        query = filters.query(cursor)
    except BadFilter as exc:
        return await _page(sources, visitor, filters, [], problem=str(exc), status=400)
    found = await sources.store.find_remediations(query)
    runs = found[:PAGE]
    following = filters.link(cursor_of(runs[-1])) if len(found) > PAGE else None
    first = filters.link() if cursor else None
    return await _page(sources, visitor, filters, runs, following=following, first=first)


async def _page(
    sources: Sources,
    visitor: Visitor,
    filters: Filters,
    runs: list[Remediation],
    *,
    problem: str = "",
    status: int = 200,
    following: str | None = None,
    first: str | None = None,
) -> web.Response:
    return await sources.page(
        "history.html",
        visitor,
        status=status,
        title="History",
        active="history",
        filters=filters.values,
        outcomes=[outcome.value for outcome in RunOutcome],
        policies=sorted(policy.name for policy in sources.policies.current.policies),
        rows=[(run, outcome_css(run.outcome)) for run in runs],
        problem=problem,
        following=following,
        first=first,
    )


def cursor_of(run: Remediation) -> str:
    """Where the next page starts, after this run: opaque to people."""
    raw = json.dumps([run.started_at.isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(text: str) -> tuple[datetime, str]:
    try:
        started, run_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        moment = datetime.fromisoformat(started)
    except (binascii.Error, ValueError, TypeError):
        raise BadFilter("cursor: not one this page gave (start from the first page)") from None
    if "\x00" in str(run_id):
        raise BadFilter("cursor: not one this page gave (start from the first page)")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), str(run_id)


def _moment(values: Mapping[str, str], name: str) -> datetime | None:
    """A time from the form's datetime-local field (UTC), or RFC 3339 with its offset."""
    text = values.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name}: expected a time such as 2027-01-15T08:00, got {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
