"""Webhook authentication, as Alertmanager's `http_config` sends it: bearer or basic."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from remediator.config import Settings


@dataclass(frozen=True)
class WebhookAuth:
    """The one Authorization header value accepted; None accepts every request.

    An expected value is never a blank credential, so no empty header can equal it.
    """

    expected: bytes | None

    def __post_init__(self) -> None:
        if self.expected is not None and not _has_credentials(self.expected):
            raise ValueError("webhook authentication needs a non-empty credential")

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookAuth:
        if settings.webhook_token is not None:
            return cls(f"Bearer {settings.webhook_token.get_secret_value()}".encode())
        if settings.webhook_username is not None and settings.webhook_password is not None:
            pair = f"{settings.webhook_username}:{settings.webhook_password.get_secret_value()}"
            return cls(b"Basic " + base64.b64encode(pair.encode()))
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.expected is not None

    @classmethod
    def bearer(cls, token: str | None) -> WebhookAuth:
        return cls(None if token is None else f"Bearer {token}".encode())

    def allows(self, authorization: str | None) -> bool:
        if self.expected is None:
            return True
        if authorization is None:
            return False
        return hmac.compare_digest(_normalised(authorization), self.expected)


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
