"""Alertmanagers clustered on loopback, each with every replica as a webhook of its one
receiver: their configuration, and what a test asks of them."""

from __future__ import annotations

import re

import aiohttp

from tests.support.alertmanager import ready
from tests.support.service_process import eventually

ALERTMANAGER_CONFIG = """
route:
  receiver: remediator
  group_by: ['alertname', 'deployment']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: remediator
    webhook_configs:
{webhooks}
"""
WEBHOOK = """\
      - url: {url}/api/v1/alerts
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


async def clustered(urls: list[str]) -> None:
    """Both Alertmanagers answer, and each sees the other as a peer of a settled cluster."""
    async with aiohttp.ClientSession() as session:

        async def both() -> bool:
            for url in urls:
                if not await ready(session, url):
                    return False
                async with session.get(f"{url}/api/v2/status") as answer:
                    cluster = (await answer.json())["cluster"]
                if cluster.get("status") != "ready" or len(cluster.get("peers") or []) != 2:
                    return False
            return True

        await eventually(both, what="the two Alertmanagers to form a cluster", timeout=30)


async def webhooks_sent(url: str) -> int:
    """How many webhook notifications this Alertmanager has sent (its own counter)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as answer:
        text = await answer.text()
    found = re.search(
        r'^alertmanager_notifications_total\{integration="webhook"\} (\S+)$', text, re.M
    )
    return int(float(found[1])) if found else 0
