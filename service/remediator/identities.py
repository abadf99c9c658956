"""Who calls the operator API, and what each role may do: the identities the HTTP API, the
command line and the console share.

An identity is a name and a role. REMEDIATOR_API_TOKEN's caller is one identity (named by
REMEDIATOR_API_IDENTITY, an operator); REMEDIATOR_USERS_FILE names the others, each by the
SHA-256 of its token, so the file holds no secret: a person's name is what an approval
request's `approvers` list and what the audit records as who answered.

A viewer reads (runs, alerts, guards, approval requests); an operator also changes (pause,
resume, answers to approval requests, promotions). An entry without a token names a person
who signs in only through the console's authenticating proxy (its trusted header), with the
role the entry gives. Pure: reading the file is the only I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

MAX_NAME = 200  # as an approver of a policy is at most
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Role(StrEnum):
    VIEWER = "viewer"  # reads
    OPERATOR = "operator"  # reads and changes

    def grants(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may: an operator may all a viewer may."""
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1}


@dataclass(frozen=True)
class Identity:
    """Who made a request, as the API knows them."""

    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return self.role.grants(needed)


def check_name(name: str) -> str:
    """An identity's name: what the audit shows and approvers list, on one line."""
    if not name.strip():
        raise ValueError("must not be empty or blank")
    if len(name) > MAX_NAME:
        raise ValueError(f"at most {MAX_NAME} characters, got {len(name)}")
    if _CONTROL.search(name):
        raise ValueError("must not contain control characters (a newline, a tab, NUL)")
    return name


class User(BaseModel):
    """One entry of the users file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role
    # None: no token of their own; the console's trusted proxy names them (role by name).
    token_sha256: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("token_sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        # The value is never repeated: a token pasted here by mistake must not reach a log.
        if value is None:
            return None
        if not _SHA256.fullmatch(value):
            raise ValueError(
                "expected the SHA-256 of the token as 64 hex digits"
                ' (printf %s "$TOKEN" | sha256sum), not the token itself;'
                f" got {len(value)} characters"
            )
        return value.lower()


class _UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[User]


def read_users(path: Path) -> tuple[User, ...]:
    """The users a file lists; ValueError naming the file, the entry and the field when it
    cannot be read, is not YAML, or an entry is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{str(path)!r} is not YAML: {_one_line(str(exc))}") from None
    try:
        users = _UsersFile.model_validate(document).users
    except ValidationError as exc:
        wrong = "; ".join(_problem(error, document) for error in exc.errors())
        raise ValueError(f"{str(path)!r}: {wrong}") from None
    clashes = _clashes(users)
    if clashes:
        raise ValueError(f"{str(path)!r}: {'; '.join(clashes)}")
    return tuple(users)


def _problem(error: Any, document: Any) -> str:
    """`users[1] (bob@example.com): token_sha256: ...`: where, whose, and what is wrong."""
    message = str(error["msg"]).removeprefix("Value error, ")
    location = list(error["loc"])
    if error["type"] == "model_type" and not location:
        return "expected a mapping with a `users` list (users: [{name:, role:, token_sha256:}])"
    if len(location) < 2 or location[0] != "users":
        return f"{'.'.join(map(str, location)) or 'the file'}: {message}"
    index, *fields = location[1:]
    entry = f"users[{index}]" + _whose(document, index)
    return f"{entry}: {'.'.join(map(str, fields))}: {message}" if fields else f"{entry}: {message}"


def _whose(document: Any, index: Any) -> str:
    try:
        name = document["users"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return ""
    return f" ({name})" if isinstance(name, str) and not _CONTROL.search(name) else ""


def _clashes(users: list[User]) -> list[str]:
    """One token names one identity; one name has one role (two entries of a name: its
    tokens while one is rotated out)."""
    problems = []
    first_of_digest: dict[str, int] = {}
    role_of: dict[str, tuple[int, Role]] = {}
    for index, user in enumerate(users):
        earlier = index
        if user.token_sha256 is not None:
            earlier = first_of_digest.setdefault(user.token_sha256, index)
        if earlier != index:
            problems.append(
                f"users[{index}] ({user.name}): token_sha256 is also users[{earlier}]'s:"
                " one token names one identity"
            )
        first, role = role_of.setdefault(user.name, (index, user.role))
        if role is not user.role:
            problems.append(
                f"users[{index}] ({user.name}): role {user.role} but users[{first}] gives"
                f" {user.name} the role {role}: one name has one role"
            )
    return problems


def _one_line(text: str) -> str:
    return " ".join(text.split())
