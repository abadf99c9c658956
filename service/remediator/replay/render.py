"""A replay and a diff as text for people and as JSON for machines: the same on every run
(sorted, the alerts' own times only, no ids made up by the replay)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from remediator.replay.diff import Diff
from remediator.replay.results import MODEL, AlertResult, Message, Report


def report_json(report: Report) -> dict[str, Any]:
    return {
        "policies": report.policies,
        "mode": report.mode.value,
        "model": MODEL,
        "outcomes": report.outcomes(),
        "pages": sum(result.pages for result in report.alerts),
        "resolutionsUnheard": report.resolutions_unheard,
        "alerts": [_alert_json(result) for result in report.alerts],
    }


def _alert_json(result: AlertResult) -> dict[str, Any]:
    return {
        "fired": _iso(result.fired_at),
        "alertname": result.alertname,
        "fingerprint": result.fingerprint,
        "startsAt": _iso(result.starts_at),
        "policy": result.policy,
        "target": result.target,
        "outcome": result.outcome,
        "guard": result.guard,
        "reason": result.reason,
        "steps": list(result.steps),
        "acting": None if result.acting is None else [_iso(at) for at in result.acting],
        "resolved": None if result.resolved_at is None else _iso(result.resolved_at),
        "undo": list(result.undo),
        "messages": [_message_json(message) for message in result.messages],
        "pages": result.pages,
    }


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "at": _iso(message.at),
        "channel": message.channel,
        "notify": message.notify,
        "incident": message.incident,
        "page": message.page,
    }


def diff_json(diff: Diff) -> dict[str, Any]:
    return {
        "outcomeChanged": [
            {**_label(c.fired_at, c.alertname, c.fingerprint), "before": c.before, "after": c.after}
            for c in diff.outcomes
        ],
        "newNamespaces": list(diff.new_namespaces),
        "newTargets": list(diff.new_targets),
        "peakTargetsAtOnce": [
            {"namespace": p.namespace, "before": p.before, "after": p.after} for p in diff.peaks
        ],
        "pagesChanged": [
            {**_label(p.fired_at, p.alertname, p.fingerprint), "before": p.before, "after": p.after}
            for p in diff.pages
        ],
        "pages": {"before": diff.pages_before, "after": diff.pages_after},
        "found": {kind.value: count for kind, count in diff.found().items()},
    }


def report_text(report: Report) -> list[str]:
    lines = [
        f"replay of {len(report.alerts)} alert episodes through {report.policies}"
        f" ({report.mode.value} mode)",
        f"model: {MODEL}",
        "",
    ]
    for result in report.alerts:
        lines.extend(_alert_text(result))
    lines.append("")
    lines.extend(_totals(report))
    return lines


def _alert_text(result: AlertResult) -> list[str]:
    where = f"{result.policy} -> {result.target}" if result.target else result.policy or "-"
    lines = [f"{_shown(result.fired_at)}  {result.alertname}  {result.fingerprint}  {where}"]
    reason = f": {result.reason}" if result.reason else ""
    lines.append(f"  outcome: {result.verdict}{reason}")
    if result.steps:
        lines.append(f"  steps: {'; '.join(result.steps)}")
    if result.undo:
        lines.append(f"  on resolved: {'; '.join(result.undo)}")
    if result.messages:
        lines.append(f"  messages: {_messages(result.messages)}")
    return lines


def _messages(messages: Iterable[Message]) -> str:
    said: dict[tuple[datetime, str], list[str]] = {}
    for message in messages:
        said.setdefault((message.at, message.notify), []).append(message.channel)
    return "; ".join(
        f"{_shown(at)} {notify} {', '.join(channels)}" for (at, notify), channels in said.items()
    )


def _totals(report: Report) -> list[str]:
    outcomes = ", ".join(f"{verdict} {count}" for verdict, count in report.outcomes().items())
    pages = sum(result.pages for result in report.alerts)
    lines = [f"outcomes: {outcomes or 'none'}", f"pages: {pages}"]
    if report.resolutions_unheard:
        lines.append(f"resolutions of episodes not heard firing: {report.resolutions_unheard}")
    return lines


def diff_text(before: Report, after: Report, diff: Diff) -> list[str]:
    lines = [
        f"replay of {len(after.alerts)} alert episodes ({after.mode.value} mode):"
        f" {before.policies} (before) against {after.policies} (after)",
        f"model: {MODEL}",
        f"before: {'; '.join(_totals(before))}",
        f"after: {'; '.join(_totals(after))}",
        "",
        f"outcome changed: {len(diff.outcomes)}",
    ]
    lines += [
        f"  {_shown(c.fired_at)}  {c.alertname}  {c.fingerprint}: {c.before} -> {c.after}"
        for c in diff.outcomes
    ]
    lines.append(f"new namespaces touched: {', '.join(diff.new_namespaces) or 'none'}")
    lines.append(f"new targets touched: {', '.join(diff.new_targets) or 'none'}")
    lines.append("peak targets changed at once, per namespace (before -> after):")
    lines += [
        f"  {p.namespace}: {p.before} -> {p.after}{'  (grew)' if p.after > p.before else ''}"
        for p in diff.peaks
    ] or ["  none"]
    lines.append(f"pages: {diff.pages_before} -> {diff.pages_after}")
    lines += [
        f"  {_shown(p.fired_at)}  {p.alertname}  {p.fingerprint}: {p.before} -> {p.after}"
        for p in diff.pages
    ]
    return lines


def _label(fired_at: datetime, alertname: str, fingerprint: str) -> dict[str, str]:
    return {"fired": _iso(fired_at), "alertname": alertname, "fingerprint": fingerprint}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _shown(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")
