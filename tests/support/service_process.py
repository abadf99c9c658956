"""The service as users run it: `remediator serve` in its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.policies import SHIPPED_POLICIES
from tests.support.services import free_port

OPERATOR_TOKEN = "operator-token"  # REMEDIATOR_API_TOKEN unless a test sets its own
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}  # /health with its checks, the API


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    client_ssl: ssl.SSLContext | None = None  # what trusts its certificate, served over HTTPS
    operator: dict[str, str] | None = None  # the operator token's header: /health's checks

    @classmethod
    async def start(
        cls,
        tmp_path: Path,
        *,
        port: int | None = None,
        client_ssl: ssl.SSLContext | None = None,
        **settings: str,
    ) -> ServiceProcess:
        """Start `remediator serve` on `port` (a free one by default: give the port of a killed
        service to restart it where its clients send) and wait until it answers /health.
        With `tls_cert_file` and `tls_key_file` it serves HTTPS, checked with `client_ssl`."""
        port = port or free_port()
        settings.setdefault("api_token", OPERATOR_TOKEN)
        # Tests of escalation hear their messages in dry-run as in live; a test of dry-run's
        # own "would send" names none (dry_run_channels="").
        settings.setdefault("dry_run_channels", "pagerduty,slack,email")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
        env.update({f"REMEDIATOR_{name.upper()}": value for name, value in settings.items()})
        env["REMEDIATOR_LISTEN"] = f"127.0.0.1:{port}"
        env.setdefault("REMEDIATOR_POLICIES", str(SHIPPED_POLICIES))
        log_path = tmp_path / f"remediator-{port}.log"
        with log_path.open("ab") as log:  # a restart on the same port appends to the log
            process = subprocess.Popen(
                [sys.executable, "-m", "remediator", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        scheme = "https" if "tls_cert_file" in settings else "http"
        operator = {"Authorization": f"Bearer {settings['api_token']}"}
        service = cls(process, f"{scheme}://127.0.0.1:{port}", log_path, client_ssl, operator)
        await eventually(service.is_healthy, what=f"service on port {port} to answer /health")
        return service

    async def is_healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"service exited early:\n{self.log_path.read_text()}")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.url}/health", ssl=self.client_ssl or True) as answer,
            ):
                return answer.status == 200
        except aiohttp.ClientConnectionError:
            return False

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup, as a crash or the OOM killer does it."""
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 30.0
) -> None:
    """Poll until the condition holds; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)
