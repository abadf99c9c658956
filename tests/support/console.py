"""The console as a browser without script uses it: it signs in through the sign-in form,
follows links, and posts forms with the token the page gave and its own Origin."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
_FORM_TOKEN = re.compile(r'name="csrf" value="([^"]*)"')


class Browser:
    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    async def sign_in(self, token: str) -> ClientResponse:
        """Sign in as a person would: the sign-in page, then its form with the token."""
        self.client.session.cookie_jar.clear()
        form_token = await self.form_token("/ui/login")
        return await self.client.post(
            "/ui/login",
            data={"token": token, "csrf": form_token, "next": "/ui/"},
            headers={"Origin": self.origin},
            allow_redirects=False,
        )

    def sign_out(self) -> None:
        self.client.session.cookie_jar.clear()

    async def page(self, path: str, **headers: str) -> tuple[int, str]:
        response = await self.client.get(path, headers=headers, allow_redirects=False)
        return response.status, await response.text()

    async def form_token(self, path: str = "/ui/") -> str:
        """The form token a page gives its forms."""
        status, text = await self.page(path)
        assert status == 200, (path, status, text[:500])
        found = _FORM_TOKEN.search(text)
        assert found is not None, f"{path} has no form token"
        return html.unescape(found.group(1))

    async def post(
        self,
        path: str,
        fields: dict[str, str] | None = None,
        *,
        token_from: str | None = "/ui/",
        origin: str | None = "own",
        **headers: str,
    ) -> ClientResponse:
        """A form posted from the console's page `token_from` (its token added), with this
        site's Origin unless told otherwise (None: no Origin)."""
        data = dict(fields or {})
        if token_from is not None and "csrf" not in data:
            data["csrf"] = await self.form_token(token_from)
        sent = dict(headers)
        if origin is not None:
            sent["Origin"] = self.origin if origin == "own" else origin
        return await self.client.post(path, data=data, headers=sent, allow_redirects=False)
