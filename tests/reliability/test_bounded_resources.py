"""Bounded resources (issue 16, items 3, 4, 8 and 9): what a hostile or broken peer sends is
never held whole.

- A probe's, a hook's or a channel's 150 MB answer is read up to a cap, then the connection
  is closed: the server sends a few MiB at most (socket buffers), the record keeps 500
  characters and says the body was cut.
- A JSON answer (Prometheus) over its cap is refused with a message, not parsed from a cut.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import pytest

from remediator.actions.base import Outcome, StepContext
from remediator.actions.http import HttpActions
from remediator.actions.prometheus import PrometheusActions
from remediator.answers import DOCUMENT_BYTES, EXCERPT_BYTES
from remediator.engine.plan import RenderedTarget
from remediator.notify.channel_support import post_json
from remediator.policy.parameters import HttpCheck, HttpRequest, PrometheusQuery
from tests.support.big_answers import BigAnswers
from tests.support.figures import Figures, scale

MIB = 1024 * 1024
ANSWER_BYTES = scale(32, 150) * MIB
# Loopback socket buffers (send and receive, autotuned) hold a few MiB the client never reads.
SENT_AT_MOST = 16 * MIB
CONTEXT = StepContext(
    RenderedTarget("Application", "web", None, None, None), False, datetime(2026, 1, 1, tzinfo=UTC)
)

Call = Callable[[aiohttp.ClientSession, str], Awaitable[object]]


async def _check(session: aiohttp.ClientSession, url: str) -> object:
    params = HttpCheck(url=f"{url}/health", body_contains="never there")
    return await HttpActions(session).check(params, CONTEXT)


async def _request(session: aiohttp.ClientSession, url: str) -> object:
    params = HttpRequest(url=f"{url}/hook", json={"x": 1})
    return await HttpActions(session).request(params, CONTEXT)


async def _channel(session: aiohttp.ClientSession, url: str) -> object:
    limit = aiohttp.ClientTimeout(total=30)
    await post_json(session, f"{url}/slack", {"text": "x"}, what="Slack", ok=200, limit=limit)
    return None


@pytest.fixture
async def big() -> AsyncIterator[BigAnswers]:
    server = BigAnswers(ANSWER_BYTES)
    await server.start()
    yield server
    await server.close()


@pytest.mark.parametrize(
    ("call", "what"),
    [
        pytest.param(_check, "http.check", id="http.check"),
        pytest.param(_request, "http.request", id="http.request"),
        pytest.param(_channel, "a channel's answer", id="channel"),
    ],
)
async def test_a_huge_answer_is_read_only_up_to_the_cap(
    big: BigAnswers, call: Call, what: str, figures: Figures
) -> None:
    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as session:
            result = await call(session, big.url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sent = await big.finished()
    figures.record(
        f"{ANSWER_BYTES // MIB} MB answer to {what}",
        expected=f"read at most {EXCERPT_BYTES // 1024} KiB, connection closed",
        figure=f"{sent / MIB:.1f} MiB sent before the close, peak allocation {peak / MIB:.1f} MiB",
        passed=sent <= SENT_AT_MOST and peak < 8 * MIB,
    )
    assert sent <= SENT_AT_MOST, f"the server sent {sent} bytes: the answer was read whole"
    assert peak < 8 * MIB
    if result is not None:
        data = getattr(result, "data", {})
        assert data["body_truncated"] is True
        assert len(data["body"]) == 500


async def test_a_json_answer_over_its_cap_is_refused_with_a_message(
    figures: Figures,
) -> None:
    server = BigAnswers(ANSWER_BYTES, json=True)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            params = PrometheusQuery(url=server.url, query="up")
            result = await PrometheusActions(session).query(params, CONTEXT)
        sent = await server.finished()
    finally:
        await server.close()
    figures.record(
        f"{ANSWER_BYTES // MIB} MB Prometheus answer",
        expected=f"refused past {DOCUMENT_BYTES // MIB} MiB",
        figure=f"{sent / MIB:.1f} MiB sent before the close; {result.message}",
        passed=sent <= SENT_AT_MOST and result.outcome is Outcome.FAILED,
    )
    assert result.outcome is Outcome.FAILED
    assert result.message.endswith(f"answer larger than {DOCUMENT_BYTES} bytes, not read")
    assert sent <= SENT_AT_MOST
