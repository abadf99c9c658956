"""Replicas woken when events are queued: a NOTIFY after the intake, a LISTEN for the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from remediator.store.postgres.connection import FAILURES, SESSION, PostgresConnection
from remediator.store.roles import StoreUnavailable

log = structlog.get_logger(__name__)

_EVENTS_CHANNEL = "remediator_events"
# Wake-ups are sent after the intake's commit, in a transaction of their own, at most this
# often: PostgreSQL serialises the commits of every notifying transaction on one lock, so a
# NOTIFY inside each intake transaction would queue every acknowledgement behind the others.
_WAKE_EVERY = 0.05


class PostgresWakes(PostgresConnection):
    def _wake_replicas(self) -> None:
        """Tell every replica listening that events were queued: one NOTIFY for the events
        committed meanwhile, however many, in its own transaction. The payload is the schema,
        so deployments sharing a database wake only their own replicas."""
        if self._waking is not None and not self._waking.done():
            self._wake_again = True
            return
        self._waking = asyncio.create_task(self._send_wakes())

    async def _send_wakes(self) -> None:
        self._wake_again = True
        while self._wake_again:
            self._wake_again = False
            try:
                await self._execute("SELECT pg_notify($1, current_schema())", _EVENTS_CHANNEL)
            except StoreUnavailable as exc:  # the others' poll finds the work
                log.warning("replicas not woken", error=str(exc))
                return
            await asyncio.sleep(_WAKE_EVERY)

    async def watch_events(self, wake: Callable[[], None]) -> None:
        async with self._listening:
            await self._listen(wake)

    async def _listen(self, wake: Callable[[], None]) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return

        def on_notify(_: object, __: int, ___: str, schema: object) -> None:
            if schema == own_schema:
                wake()

        try:
            listener = await asyncpg.connect(self._dsn, timeout=5, server_settings=SESSION)
            own_schema = await listener.fetchval("SELECT current_schema()")
            await listener.add_listener(_EVENTS_CHANNEL, on_notify)
        except FAILURES as exc:
            log.warning("not listening for new events; polling instead", error=str(exc))
            return
        self._listener = listener
        log.info("listening for new events", channel=_EVENTS_CHANNEL)
