"""Alertmanager silences through its v2 API: `alertmanager.silence` while a remediation (or a
maintenance window) runs, and `alertmanager.expire_silence`, typically `on_resolved`.

A silence is ours when its matchers are exactly the step's (each an equality, never a regex)
and its author is the step's `created_by`. `alertmanager.silence` reuses an active one of ours
rather than adding another (extending it if it would end sooner than asked), so a re-run after
a crash does not duplicate it. `on_resolved` runs in a new run without the firing run's step
data, so `alertmanager.expire_silence` finds the silence again the same way, through
`GET /api/v2/silences`, and expires it with `DELETE /api/v2/silence/{id}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from remediator import answers
from remediator.actions.base import (
    Action,
    StepContext,
    StepResult,
    Transient,
    dry_run,
    failed,
    ok,
    skipped,
)
from remediator.policy.durations import format_duration
from remediator.policy.parameters import AlertmanagerExpireSilence, AlertmanagerSilence

_LIVE = ("active", "pending")
_EXTEND_SLACK = timedelta(minutes=1)  # a silence ending this much sooner than asked is fine


class AlertmanagerActions:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def actions(self) -> dict[str, Action]:
        return {
            "alertmanager.silence": self.silence,
            "alertmanager.expire_silence": self.expire_silence,
        }

    async def silence(self, params: AlertmanagerSilence, context: StepContext) -> StepResult:
        try:
            return await self._silence(params, context)
        except _Refusal as exc:
            return failed(str(exc))

    async def expire_silence(
        self, params: AlertmanagerExpireSilence, context: StepContext
    ) -> StepResult:
        try:
            return await self._expire(params, context)
        except _Refusal as exc:
            return failed(str(exc))

    async def _silence(self, params: AlertmanagerSilence, context: StepContext) -> StepResult:
        matchers = _matchers(params.matchers)
        if not matchers:
            return failed("refusing a silence without matchers: every value rendered empty")
        shown = _show(matchers)
        api = _Api(self._session, params.url, params.timeout)
        ours = _ours(await api.silences(), matchers, params.created_by)
        now = datetime.now(UTC)
        until = now + params.duration
        data: dict[str, Any] = {"matchers": shown}
        if ours:
            current = max(ours, key=lambda s: _time(s["endsAt"]))
            data |= {"silence_id": current["id"], "ends_at": current["endsAt"]}
            if _time(current["endsAt"]) >= until - _EXTEND_SLACK:
                return skipped(
                    f"silence {current['id']} by {params.created_by} already active until"
                    f" {current['endsAt']}: {shown}",
                    **data,
                )
            if context.dry_run:
                return dry_run(f"would extend silence {current['id']} to {_iso(until)}", **data)
            # The same id, startsAt and matchers: Alertmanager updates the silence in place.
            body = _body(current["matchers"], _time(current["startsAt"]), until, params, context)
            silence_id = await api.post({"id": current["id"], **body})
            data |= {"silence_id": silence_id, "ends_at": _iso(until)}
            return ok(f"extended silence {silence_id} to {_iso(until)}: {shown}", **data)
        lasting = format_duration(params.duration)
        if context.dry_run:
            return dry_run(f"would create a silence for {lasting} by {params.created_by}: {shown}")
        silence_id = await api.post(_body(matchers, now, until, params, context))
        data |= {"silence_id": silence_id, "ends_at": _iso(until)}
        return ok(f"created silence {silence_id} for {lasting}: {shown}", **data)

    async def _expire(self, params: AlertmanagerExpireSilence, context: StepContext) -> StepResult:
        matchers = _matchers(params.matchers)
        if not matchers:
            return failed("no matchers: every value rendered empty")
        shown = _show(matchers)
        api = _Api(self._session, params.url, params.timeout)
        ours = _ours(await api.silences(), matchers, params.created_by)
        if not ours:
            return skipped(f"no active silence by {params.created_by}: {shown}", matchers=shown)
        ids = [str(s["id"]) for s in ours]
        data = {"silence_ids": ids, "matchers": shown}
        if context.dry_run:
            return dry_run(f"would expire silence {', '.join(ids)}: {shown}", **data)
        for silence_id in ids:
            await api.expire(silence_id)
        return ok(f"expired silence {', '.join(ids)}: {shown}", **data)


class _Api:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: timedelta) -> None:
        self._session = session
        self._base = f"{url.rstrip('/')}/api/v2"
        self._timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())

    async def silences(self) -> list[dict[str, Any]]:
        status, body = await self._call("GET", "/silences")
        if status != 200 or not isinstance(body, list):
            raise _refused("GET /silences", status, body)
        return [s for s in body if isinstance(s, dict)]

    async def post(self, silence: Mapping[str, Any]) -> str:
        status, body = await self._call("POST", "/silences", silence)
        if status != 200 or not isinstance(body, dict) or "silenceID" not in body:
            raise _refused("POST /silences", status, body)
        return str(body["silenceID"])

    async def expire(self, silence_id: str) -> None:
        status, body = await self._call("DELETE", f"/silence/{silence_id}")
        if status not in (200, 404):  # 404: gone meanwhile, which is what was asked
            raise _refused(f"DELETE /silence/{silence_id}", status, body)

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        url = f"{self._base}{path}"
        try:
            async with self._session.request(
                method, url, json=body, timeout=self._timeout, allow_redirects=False
            ) as response:
                answer = await answers.read_document(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"{method} {url}: {exc or type(exc).__name__}") from exc
        status = answer.status
        try:
            parsed: Any = answer.json()
        except ValueError as exc:  # AnswerTooLarge too: its message is the body shown
            parsed = str(exc) if answer.truncated else answer.text()
        if status == 429 or status >= 500:
            raise Transient(f"{method} {url} answered {status}: {str(parsed)[:200]}")
        return status, parsed


class _Refusal(Exception):
    """An answer that is neither success nor worth retrying: the step fails with it."""


def _refused(what: str, status: int, body: object) -> _Refusal:
    return _Refusal(f"Alertmanager {what} answered {status}: {str(body)[:300]}")


def _matchers(wanted: Mapping[str, str]) -> list[dict[str, Any]]:
    """Equality matchers, sorted by label; a value that rendered empty is left out."""
    return [
        {"name": name, "value": value, "isRegex": False, "isEqual": True}
        for name, value in sorted(wanted.items())
        if value != ""
    ]


def _key(matchers: Sequence[Mapping[str, Any]]) -> frozenset[tuple[str, str, bool, bool]]:
    return frozenset(
        (
            str(m.get("name")),
            str(m.get("value")),
            bool(m.get("isRegex", False)),
            bool(m.get("isEqual", True)),  # absent before Alertmanager 0.22: equality
        )
        for m in matchers
    )


def _ours(
    silences: list[dict[str, Any]], matchers: Sequence[Mapping[str, Any]], author: str
) -> list[dict[str, Any]]:
    wanted = _key(matchers)
    return [
        s
        for s in silences
        if (s.get("status") or {}).get("state") in _LIVE
        and s.get("createdBy") == author
        and _key(s.get("matchers") or []) == wanted
    ]


def _body(
    matchers: Sequence[Mapping[str, Any]],
    starts: datetime,
    ends: datetime,
    params: AlertmanagerSilence,
    context: StepContext,
) -> dict[str, Any]:
    began = context.run_started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    comment = params.comment or f"remediator: remediating {context.target}, run began {began}"
    return {
        "matchers": list(matchers),
        "startsAt": _iso(starts),
        "endsAt": _iso(ends),
        "createdBy": params.created_by,
        "comment": comment,
    }


def _show(matchers: Sequence[Mapping[str, Any]]) -> str:
    return "{" + ", ".join(f'{m["name"]}="{m["value"]}"' for m in matchers) + "}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(text: object) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
