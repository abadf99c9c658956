"""`remediator pause | resume | guards`: the operator API of a running service, from a shell.

They talk to the service over HTTP, whichever guard backend it runs on, with the bearer token
of --token-file or, without it, of REMEDIATOR_API_TOKEN.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from remediator.config import Settings
from remediator.http.operator_api import MAX_OPERATOR_NAME, MAX_PAUSE_REASON


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in [
        ("pause", "stop all remediation (the kill switch); alerts escalate instead"),
        ("resume", "let remediation run again"),
        ("guards", "open breakers, rate-limit budgets, blast radii, held leases, pause state"),
    ]:
        command = commands.add_parser(name, help=help_text, description=OPERATOR_DESCRIPTION)
        add_service_options(command)
        command.set_defaults(run=execute, operator_command=name)
        if name == "pause":
            command.add_argument(
                "--reason",
                default="paused from the command line",
                type=_reason,
                help=f"why, shown to operators and in escalations (at most {MAX_PAUSE_REASON}"
                " characters; default: 'paused from the command line')",
            )
        if name == "guards":
            command.add_argument("--json", action="store_true", help="the API's JSON")


def add_service_options(command: argparse.ArgumentParser) -> None:
    """--url and --token-file: how a command reaches the running service's operator API."""
    command.add_argument(
        "--url", help="the running service (default: from REMEDIATOR_LISTEN, on loopback)"
    )
    command.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding the operator API token, on its first line"
        " (default: REMEDIATOR_API_TOKEN from the environment, as the service reads it)",
    )


def service_url(settings: Settings, url: str | None) -> str:
    """--url, else the service REMEDIATOR_LISTEN names, on loopback for a wildcard address."""
    wildcard = settings.host in ("0.0.0.0", "::", "")  # noqa: S104 - recognised, not bound
    host = "127.0.0.1" if wildcard else settings.host
    host = f"[{host}]" if ":" in host else host
    # Served over HTTPS, the certificate is checked against the system's trust (or SSL_CERT_FILE)
    scheme = "https" if settings.tls_cert_file is not None else "http"
    return url or f"{scheme}://{host}:{settings.port}"


def execute(settings: Settings, args: argparse.Namespace) -> int:
    url = service_url(settings, args.url)
    try:
        token = token_of(settings, args.token_file)
        if args.operator_command == "pause":
            return pause(url, token, args.reason, sys.stdout)
        if args.operator_command == "resume":
            return resume(url, token, sys.stdout)
        return guards(url, token, args.json, sys.stdout)
    except OperatorError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 1


class OperatorError(Exception):
    """The service could not be reached, or refused; the message says which and why, and
    `status` the HTTP status of a refusal (None: no answer, or no request sent)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


OPERATOR_DESCRIPTION = (
    "The operator API's bearer token is read from --token-file, else from REMEDIATOR_API_TOKEN"
    " in the environment (the variable the service itself reads)."
)


def token_of(settings: Settings, token_file: Path | None) -> str | None:
    if token_file is None:
        return settings.api_token.get_secret_value() if settings.api_token else None
    try:
        lines = token_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OperatorError(f"cannot read --token-file {token_file}: {exc}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise OperatorError(f"--token-file {token_file} is empty: expected the token on line 1")
    return token


def call(
    url: str,
    token: str | None,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    if not url.startswith(("http://", "https://")):
        raise OperatorError(f"expected an http:// or https:// URL, got {url!r}")
    data = None if body is None else json.dumps(body).encode()
    # The scheme is checked above: no file:// or custom opener reaches urlopen.
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except (json.JSONDecodeError, AttributeError):
            reason = exc.reason
        raise OperatorError(f"{url} answered {exc.code}: {reason}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OperatorError(f"cannot reach the service at {url}: {reason}") from None


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"[:MAX_OPERATOR_NAME]


def _reason(value: str) -> str:
    """--reason, refused here as the API would refuse it: too long."""
    if len(value) > MAX_PAUSE_REASON:
        raise argparse.ArgumentTypeError(f"at most {MAX_PAUSE_REASON} characters, got {len(value)}")
    return value


def pause(url: str, token: str | None, reason: str, out: TextIO = sys.stdout) -> int:
    answer = call(url, token, "POST", "/api/v1/pause", {"reason": reason, "by": operator()})
    paused = answer["paused"]
    print(f"paused by {paused['by']} at {paused['at']}: {paused['reason']}", file=out)
    return 0


def resume(url: str, token: str | None, out: TextIO = sys.stdout) -> int:
    call(url, token, "POST", "/api/v1/resume", {"by": operator()})
    print("resumed: remediation runs again", file=out)
    return 0


def guards(url: str, token: str | None, as_json: bool, out: TextIO = sys.stdout) -> int:
    state = call(url, token, "GET", "/api/v1/guards")
    if as_json:
        print(json.dumps(state, indent=2), file=out)
        return 0
    paused = state["paused"]
    print(
        f"kill switch: paused by {paused['by']} at {paused['at']}: {paused['reason']}"
        if paused
        else "kill switch: off (remediation allowed)",
        file=out,
    )
    cap = state["max_concurrent_runs"]
    print(f"runs in flight: {state['runs_in_flight']} of {cap}", file=out)
    print("circuit breakers:", file=out)
    for breaker in state["breakers"] or [{"key": "(none yet)"}]:
        detail = (
            f"{breaker['state']}, {breaker['recent_failures']} recent failures"
            if "state" in breaker
            else ""
        )
        print(f"  {breaker['key']}  {detail}".rstrip(), file=out)
    print("rate limits:", file=out)
    for limit in state["rate_limits"] or [{"key": "(none yet)", "windows": []}]:
        budgets = ", ".join(
            f"{window['remaining']} of {window['max']} left per {window['per_seconds']:g}s"
            for window in limit["windows"]
        )
        print(f"  {limit['key']}  {budgets}".rstrip(), file=out)
    print("blast radii (distinct targets changed):", file=out)
    for radius in state.get("blast_radii") or [{"key": "(none set)"}]:
        detail = ""
        if "count" in radius:
            changed = ", ".join(entry["target"] for entry in radius["changed"])
            detail = (
                f"{radius['remaining']} of {radius['count']} left per"
                f" {radius['per_seconds']:g}s" + (f" (changed: {changed})" if changed else "")
            )
        print(f"  {radius['key']}  {detail}".rstrip(), file=out)
    print("target leases:", file=out)
    for lease in state["leases"] or [{"target": "(none held)"}]:
        detail = (
            f"run {lease['run']}, token {lease['token']}, {lease['expires_in_seconds']}s left"
            if "run" in lease
            else ""
        )
        print(f"  {lease['target']}  {detail}".rstrip(), file=out)
    return 0
