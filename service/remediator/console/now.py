"""Now (`/ui/`): the alerts firing, the latest begun first, each with its incident's state
(remediating, verifying, awaiting approval, escalated, blocked and by which guard); the page
loads itself again every 10 seconds. Two queries: the pause, and the alerts with their latest
remediation in one statement."""

from __future__ import annotations

from aiohttp import web

from remediator.console.people import Visitor
from remediator.console.sources import Sources
from remediator.console.states import incident_state

SHOWN = 200  # alerts firing at most on the page, the latest begun
REFRESH_SECONDS = 10
KEY_LABELS = ("instance", "namespace", "pod", "deployment", "service", "job", "severity")


async def show(sources: Sources, _: web.Request, visitor: Visitor) -> web.Response:
    firing = await sources.store.firing_alerts(SHOWN + 1)
    rows = [(item, incident_state(item.latest)) for item in firing[:SHOWN]]
    return await sources.page(
        "now.html",
        visitor,
        title="Now",
        active="now",
        rows=rows,
        more=len(firing) > SHOWN,
        shown=SHOWN,
        refresh=REFRESH_SECONDS,
        key_labels=KEY_LABELS,
    )
