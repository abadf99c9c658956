"""Code that might never finish, run in a process of its own with a timeout.

A backtracking regex match holds the interpreter and heeds no signal, so neither pytest-timeout
nor an alarm can stop it in the test's own process; a process of its own can be killed at a
generous timeout, failing the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest


def json_printed_by(script: str, *args: str, what: str, timeout: float = 60.0) -> Any:
    """What `script` (Python that prints one JSON value; `args` are its sys.argv[1:]) printed,
    or the test fails once it has taken `timeout` seconds, naming `what` took too long."""
    printed = json_printed_within(script, *args, timeout=timeout)
    if printed is None:
        pytest.fail(f"{what} took over {timeout:.0f} s")
    return printed


def json_printed_within(script: str, *args: str, timeout: float) -> Any | None:
    """What `script` printed, as JSON; None when it had not finished within `timeout` seconds
    (it is killed then)."""
    try:
        answer = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(answer.stdout)
