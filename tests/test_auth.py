"""Webhook and operator-API credentials: a blank credential is never a lock that opens."""

from __future__ import annotations

import base64

import pytest

from remediator.http.auth import WebhookAuth


def basic(pair: bytes) -> str:
    return "Basic " + base64.b64encode(pair).decode()


@pytest.mark.parametrize("token", ["", " ", "\t"])
def test_an_empty_bearer_token_cannot_be_configured(token: str) -> None:
    with pytest.raises(ValueError, match="non-empty credential"):
        WebhookAuth.bearer(token)


@pytest.mark.parametrize("pair", [b"am:", b":pw", b" : ", b"", b"no-colon"])
def test_basic_credentials_need_a_user_and_a_password(pair: bytes) -> None:
    with pytest.raises(ValueError, match="non-empty credential"):
        WebhookAuth(basic(pair).encode())


def test_the_configured_credentials_are_accepted() -> None:
    assert WebhookAuth.bearer("s3cret").allows("bearer s3cret")
    assert WebhookAuth(basic(b"am:pw").encode()).allows(basic(b"am:pw"))
    assert not WebhookAuth.bearer("s3cret").allows("Bearer s3cre")
    assert not WebhookAuth.bearer("s3cret").allows("Bearer ")
    assert WebhookAuth(None).allows(None)  # no authentication configured: dry-run only
