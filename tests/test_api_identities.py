"""The operator API's identities: REMEDIATOR_API_TOKEN's caller and the users of
REMEDIATOR_USERS_FILE, each with a role; a bad file refused at start-up naming where, a
changed one read again, an unreadable one naming no one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from remediator.config import Settings, SettingsError, load_settings
from remediator.http.auth import OperatorAuth
from remediator.identities import Identity, Role
from tests.support.approval_requests import (
    ALICE,
    BOB,
    TOKENS,
    VERA,
    bearer,
    sha256,
    write_users,
)

OPERATOR = {"Authorization": "Bearer ops-token"}


def request(headers: dict[str, str]) -> web.Request:
    return make_mocked_request("GET", "/api/v1/approvals", headers=headers)


def auth_of(**settings: object) -> OperatorAuth:
    return OperatorAuth.from_settings(Settings(**settings))  # type: ignore[arg-type]


def replace_file(path: Path, text: str) -> None:
    """As the kubelet updates a Secret: a new file renamed over the old one."""
    new = path.with_suffix(".new")
    new.write_text(text)
    os.replace(new, path)


def test_an_operator_may_do_what_a_viewer_may_and_not_the_other_way() -> None:
    assert Role.OPERATOR.grants(Role.VIEWER)
    assert Role.OPERATOR.grants(Role.OPERATOR)
    assert Role.VIEWER.grants(Role.VIEWER)
    assert not Role.VIEWER.grants(Role.OPERATOR)
    assert Identity("vera", Role.VIEWER).may(Role.VIEWER)
    assert not Identity("vera", Role.VIEWER).may(Role.OPERATOR)


def test_the_api_token_is_an_operator_named_by_its_setting_and_users_by_their_token(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "users.yaml")
    auth = auth_of(api_token="ops-token", users_file=users)
    assert auth.identify(request(OPERATOR)) == Identity("operator", Role.OPERATOR)
    assert auth.identify(request({"Authorization": "bearer ops-token"})) is not None
    assert auth.authorize(request(bearer(ALICE)), Role.OPERATOR) == Identity(ALICE, Role.OPERATOR)
    assert auth.authorize(request(bearer(VERA)), Role.VIEWER) == Identity(VERA, Role.VIEWER)
    with pytest.raises(web.HTTPForbidden, match="vera is a viewer: this needs the operator role"):
        auth.authorize(request(bearer(VERA)), Role.OPERATOR)
    for refused in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic b3BzOng="}]:
        assert auth.identify(request(refused)) is None
        with pytest.raises(web.HTTPUnauthorized):
            auth.authorize(request(refused), Role.VIEWER)
    named = auth_of(api_token="ops-token", api_identity="oncall@example.com")
    assert named.identify(request(OPERATOR)) == Identity("oncall@example.com", Role.OPERATOR)


def test_a_users_file_alone_opens_the_api_and_neither_leaves_it_closed(tmp_path: Path) -> None:
    alone = auth_of(users_file=write_users(tmp_path / "users.yaml", {BOB: "operator"}))
    assert alone.identify(request(bearer(BOB))) == Identity(BOB, Role.OPERATOR)
    assert alone.identify(request(OPERATOR)) is None
    with pytest.raises(web.HTTPForbidden, match="closed: set REMEDIATOR_API_TOKEN or"):
        auth_of().authorize(request(OPERATOR), Role.VIEWER)


def test_the_readme_way_to_make_a_tokens_sha256_makes_what_the_file_takes(
    tmp_path: Path,
) -> None:
    token = "a token with spaces and no newline"
    made = subprocess.run(
        ["sh", "-c", 'printf %s "$TOKEN" | sha256sum'],
        env={"TOKEN": token, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  - name: {ALICE}\n    role: operator\n    token_sha256: {made}\n")
    auth = auth_of(users_file=users)
    assert auth.identify(request({"Authorization": f"Bearer {token}"})) == Identity(
        ALICE, Role.OPERATOR
    )


def listed(*entries: str) -> str:
    """A users file of these entries, each in YAML's flow style."""
    return "users:\n" + "".join(f"  - {{{entry}}}\n" for entry in entries)


ENTRY = f"name: {ALICE}, role: operator, token_sha256: {sha256('t')}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            listed(ENTRY, f"name: {BOB}, role: operator, token_sha256: bob-token"),
            f"users[1] ({BOB}): token_sha256: expected the SHA-256 of the token as 64 hex digits"
            ' (printf %s "$TOKEN" | sha256sum), not the token itself; got 9 characters',
            id="a token, not its hash",
        ),
        pytest.param(
            listed(f"name: {BOB}, role: admin, token_sha256: {sha256('b')}"),
            f"users[0] ({BOB}): role: Input should be 'viewer' or 'operator'",
            id="unknown role",
        ),
        pytest.param(
            listed(f"name: {BOB}, token_sha256: {sha256('b')}"),
            f"users[0] ({BOB}): role: Field required",
            id="no role",
        ),
        pytest.param(
            listed(f"{ENTRY}, token: t"),
            f"users[0] ({ALICE}): token: Extra inputs are not permitted",
            id="unknown field",
        ),
        pytest.param(
            listed(f'name: "a\\nb", role: viewer, token_sha256: {sha256("b")}'),
            "users[0]: name: must not contain control characters",
            id="newline in a name",
        ),
        pytest.param(
            listed(ENTRY, f"name: {BOB}, role: viewer, token_sha256: {sha256('t')}"),
            f"users[1] ({BOB}): token_sha256 is also users[0]'s: one token names one identity",
            id="one token, two names",
        ),
        pytest.param(
            listed(ENTRY, f"name: {ALICE}, role: viewer, token_sha256: {sha256('u')}"),
            f"users[1] ({ALICE}): role viewer but users[0] gives {ALICE} the role operator",
            id="one name, two roles",
        ),
        pytest.param("- just a list", "expected a mapping with a `users` list", id="not a mapping"),
        pytest.param("users: [", "is not YAML: ", id="not YAML"),
    ],
)
def test_a_bad_users_file_stops_start_up_naming_the_file_the_entry_and_the_field(
    tmp_path: Path, text: str, problem: str
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(text)
    with pytest.raises(SettingsError) as refused:
        load_settings({"users_file": users})
    [line] = refused.value.lines
    assert line.startswith(f"REMEDIATOR_USERS_FILE (--users-file): '{users}'")
    assert problem in line


def test_a_missing_users_file_or_a_blank_identity_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"users_file": tmp_path / "absent.yaml", "api_identity": " "})
    assert sorted(refused.value.lines) == [
        "REMEDIATOR_API_IDENTITY (--api-identity): must not be empty or blank",
        f"REMEDIATOR_USERS_FILE (--users-file): cannot read '{tmp_path / 'absent.yaml'}':"
        f" [Errno 2] No such file or directory: '{tmp_path / 'absent.yaml'}'",
    ]


def test_a_changed_users_file_is_read_again_and_an_unusable_one_names_no_one(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "users.yaml", {ALICE: "operator"})
    auth = auth_of(api_token="ops-token", users_file=users)
    assert auth.identify(request(bearer(ALICE))) == Identity(ALICE, Role.OPERATOR)
    assert auth.identify(request(bearer(BOB))) is None

    write_users(tmp_path / "next.yaml", {ALICE: "viewer", BOB: "operator"})
    os.replace(tmp_path / "next.yaml", users)
    assert auth.identify(request(bearer(ALICE))) == Identity(ALICE, Role.VIEWER)
    assert auth.identify(request(bearer(BOB))) == Identity(BOB, Role.OPERATOR)

    replace_file(users, "users:\n  - {name: bob}\n")  # invalid: fail closed
    assert auth.identify(request(bearer(BOB))) is None
    assert auth.identify(request(OPERATOR)) is not None  # the API token is not the file's
    users.unlink()
    assert auth.identify(request(bearer(BOB))) is None
    write_users(users, {BOB: "operator"})
    assert auth.identify(request(bearer(BOB))) == Identity(BOB, Role.OPERATOR)
    assert TOKENS[ALICE] not in users.read_text()  # the file holds no token
