"""A verification check against a real Prometheus, scraping an exporter this test runs."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.service_process import eventually
from tests.support.services import free_port, missing_service
from tests.support.world import POLICY, World

SCRAPE = """\
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ["{target}"]
"""


class Exporter:
    """The application's metrics: its error ratio, which the test sets."""

    def __init__(self) -> None:
        self.error_ratio = 0.5

    def app(self) -> web.Application:
        async def metrics(_: web.Request) -> web.Response:
            body = f"# TYPE shop_error_ratio gauge\nshop_error_ratio {self.error_ratio}\n"
            return web.Response(text=body, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app


@pytest.fixture
async def exporter() -> AsyncIterator[tuple[Exporter, str]]:
    exporter = Exporter()
    async with TestServer(exporter.app()) as server:
        yield exporter, f"127.0.0.1:{server.port}"


@pytest.fixture
def prometheus(exporter: tuple[Exporter, str], tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        missing_service("the Prometheus binary", "install it with `apt-get install prometheus`")
    assert binary is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE.format(target=exporter[1]))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def policy(prometheus: str) -> str:
    return POLICY.replace(
        "verify:\n  resolved_within: 10m\n",
        "verify:\n  resolved_within: 10m\n  check:\n    action: prometheus.query\n"
        f"    params: {{url: '{prometheus}', query: shop_error_ratio, below: 0.1}}\n",
    )


async def test_a_passing_check_verifies_the_fix_before_the_alert_resolves(
    world: World, exporter: tuple[Exporter, str], prometheus: str
) -> None:
    async def scraped() -> bool:
        query = f"{prometheus}/api/v1/query?query=shop_error_ratio"
        try:
            async with aiohttp.ClientSession() as session, session.get(query) as answer:
                return bool((await answer.json())["data"]["result"])
        except (aiohttp.ClientError, KeyError):
            return False

    await eventually(scraped, what="Prometheus to scrape the exporter", timeout=60)
    await world.post("firing")
    await world.dispatcher.run_once()
    [run] = await world.runs()
    assert run.outcome == "verifying"  # the error ratio is 0.5: not verified

    exporter[0].error_ratio = 0.01

    async def verified() -> bool:
        await world.dispatcher.run_once()
        [current] = await world.runs()
        return current.outcome == "succeeded"

    await eventually(verified, what="the check to pass once Prometheus has scraped 0.01")
    [done] = await world.runs()
    assert done.reason.startswith("verified: query 'shop_error_ratio': 1 samples within bounds")
    check = (await world.store.steps(done.id))[-1]
    assert (check.phase, check.action, check.outcome) == ("verify", "prometheus.query", "ok")
    assert check.data["samples"][0]["value"] == 0.01
