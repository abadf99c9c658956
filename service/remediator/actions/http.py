"""HTTP actions: probe a URL (`http.check`), call an application's hook (`http.request`), read
GitHub's rate limit (`github.rate_limit`).

A probe that answers the wrong status is a result, not an error: `http.check` reports it as a
failed step whose data the policy's `when` conditions read. Only the transport failing, 429
and 5xx from a hook are worth retrying.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from remediator import answers
from remediator.actions.base import (
    WOULD_FAIL,
    Action,
    StepContext,
    StepResult,
    Transient,
    dry_run,
    failed,
    ok,
)
from remediator.policy.parameters import GitHubRateLimit, HttpCheck, HttpRequest

_BODY_EXCERPT = 500  # of the body read (answers.EXCERPT_BYTES at most), kept in the record


class HttpActions:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def actions(self) -> dict[str, Action]:
        return {
            "http.check": self.check,
            "http.request": self.request,
            "github.rate_limit": self.github_rate_limit,
        }

    async def check(self, params: HttpCheck, context: StepContext) -> StepResult:
        """Read-only, so it runs in dry-run too: later steps' conditions need its answer."""
        timeout = aiohttp.ClientTimeout(total=params.timeout.total_seconds())
        try:
            async with self._session.request(
                params.method, params.url, timeout=timeout, allow_redirects=False
            ) as response:
                answer = await answers.read(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(f"{params.url} did not answer: {_describe(exc)}", status=None)
        body = answer.text()
        data = _answer_data(answer, body)
        if answer.status not in params.expect_status:
            return failed(f"{params.url} answered {_status(answer)}", **data)
        if params.body_contains is not None and params.body_contains not in body:
            return failed(f"{params.url} answered without {params.body_contains!r}", **data)
        return ok(f"{params.url} answered {answer.status}", **data)

    async def request(self, params: HttpRequest, context: StepContext) -> StepResult:
        what = f"{params.method} {params.url}"
        headers, missing = _headers(params.headers_from_env)
        unset = f"environment variables not set: {', '.join(missing)}"
        if context.dry_run:
            # Dry-run sends nothing, so it needs no secret: one that live mode would miss is
            # said, and the run goes on as live mode's would not.
            if missing:
                return dry_run(f"would {what}; would fail: {unset}", **{WOULD_FAIL: unset})
            return dry_run(f"would {what}", json=params.json_body)
        if missing:
            return failed(f"{what}: {unset}")
        timeout = aiohttp.ClientTimeout(total=params.timeout.total_seconds())
        try:
            async with self._session.request(
                params.method,
                params.url,
                json=params.json_body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,  # a redirect could lead outside guardrails allowed_hosts
            ) as response:
                answer = await answers.read(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"{what}: {_describe(exc)}") from exc
        data = _answer_data(answer, answer.text())
        if answer.status == 429 or answer.status >= 500:
            raise Transient(f"{what} answered {answer.status}")
        if answer.status not in params.expect_status:
            return failed(f"{what} answered {_status(answer)}", **data)
        return ok(f"{what} answered {answer.status}", **data)

    async def github_rate_limit(self, params: GitHubRateLimit, context: StepContext) -> StepResult:
        token = os.environ.get(params.token_env)
        headers = {"Accept": "application/vnd.github+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{params.api_url.rstrip('/')}/rate_limit"
        try:
            async with self._session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=10), allow_redirects=False
            ) as response:
                answer = await answers.read_document(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"{url}: {_describe(exc)}") from exc
        if answer.status == 429 or answer.status >= 500:
            raise Transient(f"{url} answered {answer.status}")
        if answer.status != 200:
            return failed(f"{url} answered {answer.status}", status=answer.status)
        try:
            core: dict[str, Any] = answer.json()["resources"]["core"]
        except answers.AnswerTooLarge as exc:
            return failed(f"{url}: {exc}")
        except (KeyError, TypeError, ValueError) as exc:
            return failed(f"{url} answered in an unknown shape: {exc}")
        data = {key: core.get(key) for key in ("limit", "remaining", "reset", "used")}
        message = f"{data['remaining']} of {data['limit']} GitHub API calls left"
        if int(data["remaining"] or 0) < params.min_remaining:
            return failed(f"{message}, fewer than {params.min_remaining}", **data)
        return ok(message, **data)


def _answer_data(answer: answers.Answer, body: str) -> dict[str, Any]:
    """What the record keeps of an answer: its status, the body's first characters, and
    whether the body went on past what was read (`body_truncated`, the rest never read)."""
    data: dict[str, Any] = {"status": answer.status, "body": body[:_BODY_EXCERPT]}
    if answer.truncated:
        data["body_truncated"] = True
    return data


def _headers(from_env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    headers, missing = {}, []
    for header, variable in from_env.items():
        value = os.environ.get(variable)
        if value is None:
            missing.append(variable)
        else:
            headers[header] = value
    return headers, missing


def _status(answer: answers.Answer) -> str:
    """The status, and for a redirect where it points: redirects are not followed, as one
    could lead outside guardrails allowed_hosts; the policy names the final URL itself."""
    location = answer.location
    if 300 <= answer.status < 400 and location:
        return f"{answer.status}, a redirect to {location[:200]!r} (not followed)"
    return str(answer.status)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
