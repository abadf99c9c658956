"""Who is looking at the console, and what they may do: the operator API's identities and
roles (`remediator.identities`), known one of two ways.

- **Signed in here**: a person pastes their token (REMEDIATOR_API_TOKEN's, or one of
  REMEDIATOR_USERS_FILE's) into the sign-in page and gets a session cookie: signed, with an
  expiry, HttpOnly, SameSite=Strict, Secure over TLS. The cookie names the identity, not the
  token; each request checks the name again (a person removed from the users file, or whose
  role changed, is out or changed at once).
- **A trusted proxy** (oauth2-proxy and the like) names the person in a header
  (REMEDIATOR_CONSOLE_TRUSTED_HEADER), believed only from the addresses of
  REMEDIATOR_CONSOLE_TRUSTED_PROXIES: the role is the users file's for that name, else viewer.

Every form carries a token bound to the session (or to the proxy's person), checked with the
Origin of the post.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from aiohttp import web

from remediator.config import Settings
from remediator.console.security import Signer, secure_cookies
from remediator.identities import Identity, Role, check_name

SESSION_COOKIE = "remediator_console"
LOGIN_COOKIE = "remediator_console_login"  # the sign-in form's own token, before a session
LOGIN_SECONDS = 15 * 60  # how long a sign-in form may stay open


class Identities(Protocol):
    """Who a token names, and who a name is (the operator API's `OperatorAuth`)."""

    def identity_of(self, token: str) -> Identity | None: ...

    def named(self, name: str) -> Identity | None: ...

    def token_identity(self) -> Identity | None: ...


class Way(StrEnum):
    TOKEN = "token"  # noqa: S105 - REMEDIATOR_API_TOKEN's identity, signed in here
    USERS = "users"  # a users file's identity, signed in here
    PROXY = "proxy"  # named by the trusted proxy's header


@dataclass(frozen=True)
class Visitor:
    """A person the console knows, and the token their forms carry."""

    identity: Identity
    way: Way
    form_token: str

    @property
    def operator(self) -> bool:
        return self.identity.may(Role.OPERATOR)

    @property
    def signs_out(self) -> bool:
        """A proxy's person signs out at the proxy."""
        return self.way is not Way.PROXY


class Doorman:
    """Knows the console's visitors by their session cookie or their proxy's header."""

    def __init__(
        self,
        settings: Settings,
        identities: Identities,
        signer: Signer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identities = identities
        self._signer = signer
        self._clock = clock
        self._lifetime = int(settings.console_session_hours * 3600)
        self._header = settings.console_trusted_header
        self._proxies = tuple(settings.console_trusted_proxies)
        self._external_url = settings.external_url

    def visitor(self, request: web.Request) -> Visitor | None:
        """Who sent the request: the trusted proxy's person, else the session's; None when
        neither (or the session's identity is no longer known)."""
        proxied = self._proxied(request)
        if proxied is not None:
            return proxied
        value = request.cookies.get(SESSION_COOKIE)
        session = self._signer.unsign(value) if value else None
        if session is None or not isinstance(session.get("until"), int):
            return None
        if session["until"] <= self._clock():
            return None
        identity = self._still(session.get("way"), session.get("name"))
        if identity is None:
            return None
        return Visitor(identity, Way(session["way"]), self._signer.token(str(session["id"])))

    def sign_in(
        self, request: web.Request, response: web.StreamResponse, token: str
    ) -> Identity | None:
        """Set the session cookie when the token names an identity: who it names."""
        identity = self._identities.identity_of(token)
        if identity is None:
            return None
        way = Way.TOKEN if identity == self._identities.token_identity() else Way.USERS
        session = {
            "name": identity.name,
            "way": way.value,
            "id": secrets.token_urlsafe(16),
            "until": int(self._clock()) + self._lifetime,
        }
        self._cookie(request, response, SESSION_COOKIE, self._signer.sign(session), self._lifetime)
        response.del_cookie(LOGIN_COOKIE, path="/ui/login")
        return identity

    def sign_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/ui")

    def login_form(self, request: web.Request, response: web.StreamResponse) -> str:
        """The sign-in form's token, its cookie set on `response` (a new one unless the
        browser holds one)."""
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
        self._cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_SECONDS, path="/ui/login")
        return self._signer.token("login", nonce)

    def login_token(self, request: web.Request) -> str | None:
        """The token a sign-in form posted now must carry (None: the browser holds no
        sign-in cookie)."""
        nonce = request.cookies.get(LOGIN_COOKIE)
        return self._signer.token("login", nonce) if nonce else None

    def _proxied(self, request: web.Request) -> Visitor | None:
        if self._header is None or not self._from_proxy(request.remote):
            return None
        name = request.headers.get(self._header, "").strip()
        try:
            check_name(name)
        except ValueError:
            return None
        identity = self._identities.named(name) or Identity(name, Role.VIEWER)
        return Visitor(identity, Way.PROXY, self._signer.token("proxy", name))

    def _from_proxy(self, remote: str | None) -> bool:
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def _still(self, way: object, name: object) -> Identity | None:
        """The session's identity as it stands now."""
        if not isinstance(name, str):
            return None
        if way == Way.TOKEN.value:
            found = self._identities.token_identity()
            return found if found is not None and found.name == name else None
        if way == Way.USERS.value:
            return self._identities.named(name)
        return None

    def _cookie(
        self,
        request: web.Request,
        response: web.StreamResponse,
        name: str,
        value: str,
        seconds: int,
        path: str = "/ui",
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=seconds,
            path=path,
            httponly=True,
            samesite="Strict",
            secure=secure_cookies(request, self._external_url),
        )
