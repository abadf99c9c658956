"""Real services a test needs: a free port, Postgres' DSN, and what to do when one is missing.

On a developer's machine without a service the tests that need it skip and say how to get it;
with CI=true (as .ci/run sets) they fail instead.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_ADMIN_DSN = os.environ.get("REMEDIATOR_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def missing_service(what: str, how: str) -> None:
    """Skip a test whose service is absent, or fail it in CI where the service must be."""
    message = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
