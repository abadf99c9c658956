"""A redis-server of the test's own, to stop and start under the guards."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from remediator.guards.base import GuardsUnavailable
from remediator.guards.redis import RedisGuards


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart comes back empty."""

    def __init__(self, binary: str, port: int, log: Path) -> None:
        self.binary, self.port, self.log = binary, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.log.parent)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


async def answers(guards: RedisGuards, server: RedisServer, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await guards.ping()
            return
        except GuardsUnavailable:
            assert server.process is not None
            assert server.process.poll() is None, server.log.read_text()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
