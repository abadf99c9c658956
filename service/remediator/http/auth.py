"""Who may call: the webhook, as Alertmanager's `http_config` sends it (bearer or basic), and
the operator API, with the bearer token of REMEDIATOR_API_TOKEN or of a user of
REMEDIATOR_USERS_FILE, each an `Identity` with a `Role` (remediator.identities).

A token can also come from a file that is re-read whenever it changes: a Kubernetes Secret
volume is updated in place and Alertmanager reads its `credentials_file` on every request, so
a rotated token takes effect on both sides without a restart, and the old one stops working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

from remediator.config import Settings, read_tokens
from remediator.identities import Identity, Role, User, read_users

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
        version = _version(self._path)
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


class UsersFile:
    """The identities REMEDIATOR_USERS_FILE names now, each by its token's SHA-256.

    Checked on every request (one stat) and read again when it changed, as `TokenFile` is: a
    user added or removed takes effect without a restart. A file that becomes unreadable or
    invalid names no one (fail closed) until it is fixed; the error is logged.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._version: tuple[int, ...] | None = None
        self._users: tuple[User, ...] = ()

    def identity(self, token: str) -> Identity | None:
        """The identity whose token this is, if the file names one."""
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found = None
        for user in self._current():  # every entry compared, each in constant time
            if user.token_sha256 is not None and hmac.compare_digest(
                digest, user.token_sha256.encode()
            ):
                found = user
        return None if found is None else Identity(found.name, found.role)

    def named(self, name: str) -> Identity | None:
        """The identity the file gives this name (a proxy's user: no token needed)."""
        for user in self._current():
            if user.name == name:
                return Identity(user.name, user.role)
        return None

    def _current(self) -> tuple[User, ...]:
        version = _version(self._path)
        if version != self._version:
            self._version = version
            self._users = self._read()
        return self._users

    def _read(self) -> tuple[User, ...]:
        try:
            users = read_users(self._path)
        except ValueError as exc:
            log.error("API users file unusable: refusing its users", problem=str(exc))
            return ()
        log.info("API users read", file=str(self._path), users=len(users))
        return users


class OperatorAuth:
    """Who may call the operator API: REMEDIATOR_API_TOKEN's caller (an operator named by
    REMEDIATOR_API_IDENTITY) and the users of REMEDIATOR_USERS_FILE, each with a role. Closed
    (403) until one of them is set: pausing remediation and answering approval requests is not
    for whoever can reach the port, and the webhook's credentials, which Alertmanager holds, do
    not open it."""

    def __init__(
        self,
        token: str | None,
        identity: str = "operator",
        users: UsersFile | None = None,
    ) -> None:
        self._open = token is not None or users is not None
        self._bearer = WebhookAuth.bearer(token) if token is not None else None
        self._token_identity = Identity(identity, Role.OPERATOR)
        self._users = users

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorAuth:
        token = settings.api_token.get_secret_value() if settings.api_token else None
        users = UsersFile(settings.users_file) if settings.users_file is not None else None
        return cls(token, settings.api_identity, users)

    def identify(self, request: web.Request) -> Identity | None:
        """Who the request's bearer token says it is; None for no token or an unknown one."""
        authorization = request.headers.get("Authorization")
        if not self._open or authorization is None:
            return None
        return self._identify(authorization)

    def identity_of(self, token: str) -> Identity | None:
        """Who a token (pasted into the console's sign-in page) names; None for an unknown
        one, or while the API is closed."""
        token = token.strip()
        if not self._open or not token:
            return None
        return self._identify(f"Bearer {token}")

    def _identify(self, authorization: str) -> Identity | None:
        if self._bearer is not None and self._bearer.allows(authorization):
            return self._token_identity
        token = _bearer_token(authorization)
        if self._users is None or token is None:
            return None
        return self._users.identity(token)

    def token_identity(self) -> Identity | None:
        """REMEDIATOR_API_TOKEN's identity, while that token is set."""
        return self._token_identity if self._bearer is not None else None

    def named(self, name: str) -> Identity | None:
        """The users file's identity of this name (the console's proxy names people)."""
        return None if self._users is None else self._users.named(name)

    def allows(self, request: web.Request) -> bool:
        """Whether the request carries a known token (never while the API is closed)."""
        return self.identify(request) is not None

    def authorize(self, request: web.Request, role: Role) -> Identity:
        """The caller, when its token is known and its role grants `role`; 403 (closed, or a
        role that does not) or 401 (no token, or an unknown one) otherwise."""
        if not self._open:
            raise web.HTTPForbidden(
                reason="the operator API is closed: set REMEDIATOR_API_TOKEN or"
                " REMEDIATOR_USERS_FILE"
            )
        identity = self.identify(request)
        if identity is None:
            raise web.HTTPUnauthorized(
                reason="missing or wrong bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="remediator"'},
            )
        if not identity.may(role):
            raise web.HTTPForbidden(
                reason=f"{identity.name} is a {identity.role}: this needs the {role} role"
            )
        return identity


def _version(path: Path) -> tuple[int, ...]:
    """What changes when a file is written or replaced (one stat); () when it is gone."""
    try:
        stat = path.stat()
    except OSError:
        return ()
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


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
