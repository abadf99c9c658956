"""`prometheus.query`: an instant PromQL query, for the runbooks' checks and for verification.

It passes when the query returns samples and every sample's value is within the bounds the
policy gives (`below`, `above`); an empty result fails, as a check whose series vanished must
not count as healthy.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from remediator import answers
from remediator.actions.base import Action, StepContext, StepResult, Transient, failed, ok
from remediator.policy.parameters import PrometheusQuery


class PrometheusActions:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def actions(self) -> dict[str, Action]:
        return {"prometheus.query": self.query}

    async def query(self, params: PrometheusQuery, context: StepContext) -> StepResult:
        url = f"{params.url.rstrip('/')}/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=params.timeout.total_seconds())
        try:
            async with self._session.get(
                url, params={"query": params.query}, timeout=timeout, allow_redirects=False
            ) as response:
                answer = await answers.read_document(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"{url}: {exc or type(exc).__name__}") from exc
        if answer.status == 429 or answer.status >= 500:
            raise Transient(f"{url} answered {answer.status}")
        try:
            body = answer.json()
        except answers.AnswerTooLarge as exc:
            return failed(f"{url}: {exc}")
        except ValueError as exc:
            return failed(f"{url} did not answer JSON: {exc}")
        if not isinstance(body, dict):
            return failed(f"{url} did not answer a JSON object")
        if body.get("status") != "success":
            return failed(f"query {params.query!r} failed: {body.get('error', body)}")
        samples = _samples(body.get("data", {}))
        data = {"query": params.query, "samples": samples[:20]}
        if not samples:
            return failed(f"query {params.query!r} returned no samples", **data)
        outside = [
            sample
            for sample in samples
            if (params.below is not None and not sample["value"] < params.below)
            or (params.above is not None and not sample["value"] > params.above)
        ]
        if outside:
            shown = ", ".join(f"{s['metric']} = {s['value']:g}" for s in outside[:3])
            return failed(f"query {params.query!r}: {len(outside)} outside bounds: {shown}", **data)
        return ok(f"query {params.query!r}: {len(samples)} samples within bounds", **data)


def _samples(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Vector or scalar results as [{metric, value}]."""
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return [{"metric": {}, "value": float(result[1])}]
    if data.get("resultType") != "vector" or not isinstance(result, list):
        return []
    return [{"metric": item["metric"], "value": float(item["value"][1])} for item in result]
