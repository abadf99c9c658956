"""Reading what another service answers, never more than a cap.

Every outbound call (a probe, an application's hook, Prometheus, Alertmanager, the Docker
engine, GitHub, PagerDuty, Slack) reads its answer through here. An answer kept only as an
excerpt (a probe's body, a refusal's text) is read up to `EXCERPT_BYTES` and the rest is left
unread: the connection is closed, so a 150 MB `/health` answer costs 64 KiB, not 150 MB. An
answer parsed whole (JSON) is read up to `DOCUMENT_BYTES`; a larger one is refused, never cut
and parsed.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

EXCERPT_BYTES = 64 * 1024
"""The most of an answer kept as text: `http.check`'s `body_contains` looks this far."""

DOCUMENT_BYTES = 1024 * 1024
"""The largest JSON answer parsed (Prometheus, Alertmanager, Docker, GitHub)."""


class AnswerTooLarge(ValueError):
    """A JSON answer over `DOCUMENT_BYTES`: refused rather than parsed from a cut."""


@dataclass(frozen=True)
class Answer:
    """The first bytes of an answer's body; `truncated` when there was more, left unread."""

    status: int
    body: bytes
    truncated: bool
    charset: str
    location: str | None = None  # a redirect's Location (redirects are not followed)

    def text(self) -> str:
        return self.body.decode(self.charset, errors="replace")

    def json(self) -> Any:
        """The body parsed; AnswerTooLarge when it was cut, ValueError when it is not JSON."""
        if self.truncated:
            raise AnswerTooLarge(f"answer larger than {len(self.body)} bytes, not read")
        text = self.text()
        return json.loads(text) if text.strip() else None


async def read(response: aiohttp.ClientResponse, limit: int = EXCERPT_BYTES) -> Answer:
    """At most `limit` bytes of the body. When there is more, the connection is closed instead
    of drained, so the rest is never read (nor reused on a pooled connection)."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    while True:
        chunk = await response.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            truncated = True
            response.close()
            break
    body = b"".join(chunks)[:limit]
    location = response.headers.get("Location")
    return Answer(response.status, body, truncated, _charset(response), location)


async def read_document(response: aiohttp.ClientResponse) -> Answer:
    return await read(response, DOCUMENT_BYTES)


def _charset(response: aiohttp.ClientResponse) -> str:
    """The answer's declared charset, UTF-8 when none or one Python does not know."""
    charset = response.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset
