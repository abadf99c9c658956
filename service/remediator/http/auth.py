"""Who may call: the webhook, as Alertmanager's `http_config` sends it (bearer or basic), and
the operator API, with the bearer token of REMEDIATOR_API_TOKEN.

A token can also come from a file that is re-read whenever it changes: a Kubernetes Secret
volume is updated in place and Alertmanager reads its `credentials_file` on every request, so
a rotated token takes effect on both sides without a restart, and the old one stops working.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

from remediator.config import Settings, read_tokens

log = structlog.get_logger("remediator.http.auth")


class TokenFile:
    """The bearer tokens a file holds now, one a line: any of them is accepted.

    Rotating without a gap: add the new token on a line of its own, switch Alertmanager to it,
    then remove the old one. The file is checked on every request (one stat) and read again
    when it changed; a file that is gone, unreadable or empty accepts nothing (fail closed),
    so replace it whole (write a new file, rename it over), as the kubelet does.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._version: tuple[int, ...] | None = None
        self._accepted: tuple[bytes, ...] = ()

    def accepted(self) -> tuple[bytes, ...]:
        """The Authorization header values the file's tokens make, as `_normalised` gives them."""
        try:
            stat = self._path.stat()
            version: tuple[int, ...] = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            version = ()
        if version != self._version:
            self._version = version
            self._accepted = self._read()
        return self._accepted

    def _read(self) -> tuple[bytes, ...]:
        try:
            tokens = read_tokens(self._path)
        except ValueError as exc:
            log.error("webhook token file unusable: refusing every webhook", problem=str(exc))
            return ()
        log.info("webhook tokens read", file=str(self._path), tokens=len(tokens))
        return tuple(f"Bearer {token}".encode() for token in tokens)


@dataclass(frozen=True)
class WebhookAuth:
    """The Authorization header values accepted: `expected`, or those of `token_file`; neither
    accepts every request.

    An expected value is never a blank credential, so no empty header can equal it.
    """

    expected: bytes | None
    token_file: TokenFile | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.expected is not None and not _has_credentials(self.expected):
            raise ValueError("webhook authentication needs a non-empty credential")

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookAuth:
        if settings.webhook_token_file is not None:
            return cls(None, TokenFile(settings.webhook_token_file))
        if settings.webhook_token is not None:
            return cls(f"Bearer {settings.webhook_token.get_secret_value()}".encode())
        if settings.webhook_username is not None and settings.webhook_password is not None:
            pair = f"{settings.webhook_username}:{settings.webhook_password.get_secret_value()}"
            return cls(b"Basic " + base64.b64encode(pair.encode()))
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.expected is not None or self.token_file is not None

    @classmethod
    def bearer(cls, token: str | None) -> WebhookAuth:
        return cls(None if token is None else f"Bearer {token}".encode())

    def allows(self, authorization: str | None) -> bool:
        if self.token_file is not None:
            accepted = self.token_file.accepted()
        elif self.expected is None:
            return True
        else:
            accepted = (self.expected,)
        if authorization is None:
            return False
        given = _normalised(authorization)
        # Every accepted value is compared, each in constant time.
        return [hmac.compare_digest(given, value) for value in accepted].count(True) > 0


class OperatorAuth:
    """The operator API's bearer token. Closed (403) until a token is set: pausing and resuming
    remediation is not for whoever can reach the port, and the webhook's credentials, which
    Alertmanager holds, do not open it."""

    def __init__(self, token: str | None) -> None:
        self._open = token is not None
        self._bearer = WebhookAuth.bearer(token)

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorAuth:
        return cls(settings.api_token.get_secret_value() if settings.api_token else None)

    def allows(self, request: web.Request) -> bool:
        """Whether the request carries the token (never while the API is closed)."""
        return self._open and self._bearer.allows(request.headers.get("Authorization"))

    def authorize(self, request: web.Request) -> None:
        """Return when the request carries the token; raise 403 or 401 otherwise."""
        if not self._open:
            raise web.HTTPForbidden(reason="the operator API is closed: set REMEDIATOR_API_TOKEN")
        if not self._bearer.allows(request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(
                reason="missing or wrong bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="remediator"'},
            )


def _normalised(authorization: str) -> bytes:
    """The header with the scheme's case and base64 padding as we compare them."""
    scheme, _, credentials = authorization.strip().partition(" ")
    scheme = scheme.capitalize()
    if scheme == "Basic":
        try:
            credentials = base64.b64encode(base64.b64decode(credentials, validate=True)).decode()
        except (binascii.Error, ValueError):
            return b""
    return f"{scheme} {credentials.strip()}".encode(errors="replace")


def _has_credentials(header: bytes) -> bool:
    """Whether a normalised header carries a token, or a basic user and password, not blanks."""
    scheme, _, credentials = header.partition(b" ")
    if not credentials.strip():
        return False
    if scheme != b"Basic":
        return True
    try:
        user, colon, password = base64.b64decode(credentials, validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    return bool(colon and user.strip() and password.strip())
