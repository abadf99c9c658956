"""What keeps the console's pages to their own people: signed values (the sign-in cookie, the
form tokens), the same-origin check on every form, and the headers every answer carries.

A signed value is `base64url(JSON).base64url(HMAC-SHA256)` under the console's secret
(REMEDIATOR_CONSOLE_SECRET, else one drawn at start): the browser holds it, the server keeps
nothing, so any replica with the same secret reads it, and no one without the secret can make
or alter one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

# Every answer: no script at all, styles and images from the service only, forms posted only
# to it, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class Signer:
    """Signs values with the console's secret, and reads back only what it signed."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"remediator console\x00" + secret).digest()

    @classmethod
    def drawn(cls) -> Signer:
        """A signer with a secret drawn now: what it signed stops being read at a restart."""
        return cls(secrets.token_bytes(32))

    def sign(self, value: Mapping[str, Any]) -> str:
        body = _b64(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{_b64(self._mac(body.encode()))}"

    def unsign(self, signed: str) -> dict[str, Any] | None:
        """The value, when this signer signed it; None for anything else."""
        body, dot, mac = signed.partition(".")
        if not dot:
            return None
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(body.encode())):
                return None
            value = json.loads(_unb64(body))
        except (binascii.Error, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def token(self, *parts: str) -> str:
        """A form token bound to `parts` (what it is for, and the session it belongs to)."""
        return _b64(self._mac("\x00".join(("form", *parts)).encode()))

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()


def tokens_match(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def same_origin(request: web.Request, external_url: str | None) -> bool:
    """Whether a form was posted from the console's own pages: its Origin (else its Referer)
    names this host, as the browser reached it or as REMEDIATOR_EXTERNAL_URL says. Neither
    header: refused, as every browser sends one with a form."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        origin = request.headers.get("Referer")
    if not origin:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False
    allowed = {request.host.lower()}
    if external_url:
        allowed.add(urlsplit(external_url).netloc.lower())
    return parts.netloc.lower() in allowed


def secure_cookies(request: web.Request, external_url: str | None) -> bool:
    """Cookies are marked Secure when the page was served over TLS, here or at the address
    people reach it at (a proxy that ends TLS)."""
    return request.secure or (external_url or "").startswith("https://")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
