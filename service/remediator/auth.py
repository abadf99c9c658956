"""Webhook authentication, as Alertmanager's `http_config` sends it: bearer or basic."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from remediator.config import Settings


@dataclass(frozen=True)
class WebhookAuth:
    """The one Authorization header value accepted; None accepts every request."""

    expected: bytes | None

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
