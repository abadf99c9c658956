"""An alert the kill switch blocked is decided again, once, at `resume` if it still fires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from remediator.store import open_store
from tests.support.samples import sample
from tests.support.service_process import OPERATOR, ServiceProcess, eventually


async def test_alerts_blocked_by_the_kill_switch_and_still_firing_are_decided_again_once(
    tmp_path: Path, database_url: str
) -> None:
    database = database_url
    service = await ServiceProcess.start(tmp_path, database_url=database)
    try:
        async with aiohttp.ClientSession(headers=OPERATOR) as session:

            async def call(method: str, path: str, body: Any = None) -> Any:
                async with session.request(method, service.url + path, json=body) as answer:
                    assert answer.status == 200, await answer.text()
                    return await answer.json()

            async def runs() -> list[dict[str, Any]]:
                return list(reversed((await call("GET", "/api/v1/runs"))["runs"]))

            async def firing_runs() -> list[tuple[str, str | None]]:
                found = [run for run in await runs() if run["event"] == "firing"]
                if any(run["outcome"] in ("waiting", "running") for run in found):
                    return []  # not decided yet
                return [(run["alertname"], run["guard"]) for run in found]

            async def decided(count: int) -> bool:
                return len(await firing_runs()) == count

            async def error_rate_resolved() -> bool:
                alerts = (await call("GET", "/api/v1/alerts"))["alerts"]
                return any(
                    a["alertname"] == "HighErrorRate" and a["status"] == "resolved" for a in alerts
                )

            await call("POST", "/api/v1/pause", {"reason": "drill", "by": "alice"})
            await call("POST", "/api/v1/alerts", sample("github-api-rate-limit-low.firing.json"))
            await call("POST", "/api/v1/alerts", sample("high-error-rate.firing.json"))
            await eventually(lambda: decided(2), what="both alerts blocked")
            assert {guard for _, guard in await firing_runs()} == {"kill_switch"}
            resolved = sample("high-error-rate.firing.json")
            for alert in resolved["alerts"]:
                alert["status"] = "resolved"
                alert["endsAt"] = "2026-11-23T21:00:00Z"
            resolved["status"] = "resolved"
            await call("POST", "/api/v1/alerts", resolved)
            await eventually(error_rate_resolved, what="the resolution stored")

            await call("POST", "/api/v1/resume", {"by": "alice"})
            await eventually(lambda: decided(3), what="the firing alert decided again")
            *_, (alertname, guard) = await firing_runs()
            assert (alertname, guard) != ("GitHubAPIRateLimitLow", "kill_switch")
            assert alertname == "GitHubAPIRateLimitLow"
            await call("POST", "/api/v1/resume", {"by": "alice"})  # nothing more is held
    finally:
        assert service.stop() == 0
    store = await open_store(database)
    try:
        entries = [e for e in await store.audit_log(10) if e.kind == "resume"]
    finally:
        await store.close()
    assert [entry.detail["decided_again"] for entry in entries] == [0, 1]  # newest first
