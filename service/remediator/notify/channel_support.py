"""What the channels share: their secrets from the environment, text cut to a limit, and the
POST of a message, whose HTTP answer maps to a transient or permanent failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from remediator.notify.base import PermanentFailure, TransientFailure

TIMEOUT = 10.0  # seconds a channel waits for its service's answer
_ERROR_EXCERPT = 500


class ChannelNotConfigured(ValueError):
    """A channel's secret is missing from the environment: the service should not start."""


def from_env(variable: str, channel: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise ChannelNotConfigured(f"{channel}: environment variable {variable} is not set")
    return value


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def check_answer(what: str, status: int, headers: Mapping[str, str], body: str, *, ok: int) -> None:
    """Raise for anything but `ok`: 429 and 5xx are worth another try, other answers are not."""
    if status == ok:
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
    ok: int,
    limit: aiohttp.ClientTimeout,
    explain: Callable[[str], str] = lambda body: body,
    secret_url: bool = False,
) -> None:
    """POST `payload` as JSON; raise as `check_answer` says (`explain` turns a refusal's body
    into its text). With `secret_url` (a webhook URL that is itself the credential) the URL
    never appears in an error: some of aiohttp's messages name it."""
    try:
        async with session.post(url, json=payload, timeout=limit) as answer:
            body = await answer.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = describe_error(exc)
        if secret_url:
            reason = reason.replace(url, "<webhook URL>")
        raise TransientFailure(f"{what}: {reason}") from exc
    check_answer(what, answer.status, answer.headers, explain(body), ok=ok)
