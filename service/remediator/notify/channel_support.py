"""What the channels share: their secrets from the environment, text and messages cut to a
channel's limits (saying how much was cut), the links worth sending, and the POST of a message,
whose HTTP answer maps to a transient or permanent failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Container, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp

from remediator import answers
from remediator.notify.base import (
    Message,
    PermanentFailure,
    TransientFailure,
    diagnostics_text,
)

TIMEOUT = 10.0  # seconds a channel waits for its service's answer
_ERROR_EXCERPT = 500
_NOTE_FROM = 500  # a limit this long has room to say how much was cut; a shorter one ends in "…"
_SHORTEST_CUT = 1000  # a text is not cut shorter than this to make a message fit
_MOST_CUTS = 100  # then the message's labels, annotations and diagnostics are left out
# RFC 3986's characters: unreserved, reserved, and "%" before two hex digits.
_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")


class ChannelNotConfigured(ValueError):
    """A channel's secret is missing from the environment: the service should not start."""


def from_env(variable: str, channel: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ChannelNotConfigured(f"{channel}: environment variable {variable} is not set")
    return value


def truncate(text: str, limit: int, *, tidy: Callable[[str], str] = lambda kept: kept) -> str:
    """`text` when it fits; else its start and what was cut, `limit` characters in all:
    "… (truncated: 588,000 characters cut)", or "…" alone under a short limit. `tidy` trims the
    end of the start kept (say, half an escaped entity)."""
    if len(text) <= limit:
        return text
    kept = tidy(text[: max(0, limit - len(_cut_note(len(text), limit)))])
    return kept + _cut_note(len(text) - len(kept), limit)


def _cut_note(cut: int, limit: int) -> str:
    return f"… (truncated: {cut:,} characters cut)" if limit >= _NOTE_FROM else "…"


def is_web_url(href: str) -> bool:
    """A well-formed http(s) URL with a host: nothing a URL may not hold unencoded (spaces,
    control characters, `|`, `<`, `>`), so it cannot end a channel's link markup early."""
    try:
        parts = urlsplit(href)
        host = parts.hostname
    except ValueError:  # an unbalanced [ in the host
        return False
    return parts.scheme in ("http", "https") and bool(host) and _URL.fullmatch(href) is not None


def fit_message(message: Message, size: Callable[[Message], int], limit: int) -> Message:
    """The message as is when `size` finds it within `limit`; else with its largest texts cut
    first, each saying how much was cut, until it fits. Purely computational.

    A text is cut by the excess (characters: each is a byte at least in any encoding), never
    below a readable length; a message of many small texts that still does not fit is sent
    without its labels, annotations and diagnostics, saying so."""
    for _ in range(_MOST_CUTS):
        excess = size(message) - limit
        if excess <= 0:
            return message
        key, text = max(_texts(message).items(), key=lambda item: len(item[1]))
        if len(text) <= _SHORTEST_CUT:
            break
        cut = truncate(text, max(_SHORTEST_CUT, len(text) - excess))
        message = _with_text(message, key, cut)
    return _without_details(message) if size(message) > limit else message


def _texts(message: Message) -> dict[tuple[str, str], str]:
    """The message's texts that may be cut, each by where it is."""
    texts = {("reason", ""): message.reason}
    texts.update({("labels", name): value for name, value in message.labels.items()})
    texts.update({("annotations", name): value for name, value in message.annotations.items()})
    texts.update({("steps", str(n)): step.message for n, step in enumerate(message.steps)})
    if message.diagnostics:
        texts["diagnostics", ""] = diagnostics_text(message)
    return texts


def _with_text(message: Message, key: tuple[str, str], text: str) -> Message:
    where, name = key
    if where == "labels":
        return replace(message, labels={**message.labels, name: text})
    if where == "annotations":
        return replace(message, annotations={**message.annotations, name: text})
    if where == "steps":
        steps = list(message.steps)
        steps[int(name)] = replace(steps[int(name)], message=text)
        return replace(message, steps=tuple(steps))
    if where == "diagnostics":
        return replace(message, diagnostics=text)
    return replace(message, reason=text)


def _without_details(message: Message) -> Message:
    left_out = "left out: too large for this channel, see the run in Remediator"
    return replace(
        message,
        labels={"alertname": message.alertname[:_SHORTEST_CUT], "labels": left_out},
        annotations={"annotations": left_out},
        diagnostics=f"diagnostics {left_out}" if message.diagnostics else {},
        steps=message.steps[:20],
    )


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def check_answer(
    what: str, status: int, headers: Mapping[str, str], body: str, *, ok: Container[int]
) -> None:
    """Raise for an answer not in `ok`: 429 and 5xx are worth another try, others are not."""
    if status in ok:
        return
    excerpt = truncate(body.strip(), _ERROR_EXCERPT)
    if status == 429:
        raise TransientFailure(
            f"{what} answered 429 (rate limited): {excerpt}",
            retry_after=retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        raise TransientFailure(f"{what} answered {status}: {excerpt}")
    raise PermanentFailure(f"{what} answered {status}: {excerpt}")


def describe_error(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: object,
    *,
    what: str,
    ok: Container[int],
    limit: aiohttp.ClientTimeout,
    explain: Callable[[str], str] = lambda body: body,
    secret_url: bool = False,
) -> None:
    """POST `payload` as JSON; raise as `check_answer` says (`explain` turns a refusal's body
    into its text). With `secret_url` (a webhook URL that is itself the credential) the URL
    never appears in an error: some of aiohttp's messages name it."""
    try:
        async with session.post(url, json=payload, timeout=limit) as response:
            answer = await answers.read(response)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = describe_error(exc)
        if secret_url:
            reason = reason.replace(url, "<webhook URL>")
        raise TransientFailure(f"{what}: {reason}") from exc
    check_answer(what, answer.status, response.headers, explain(answer.text()), ok=ok)
