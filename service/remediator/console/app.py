"""The console as an aiohttp sub-application under /ui: its routes, who may reach each (a
viewer reads, an operator changes), the forms' checks, its own HTML error pages and the
headers every answer carries."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.resources import files
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web

from remediator.config import Settings
from remediator.console import approvals, control, history, now, policies, render, runs
from remediator.console.ledger_counts import LedgerCounts
from remediator.console.people import Doorman, Identities, Visitor
from remediator.console.security import HEADERS, Signer, same_origin, tokens_match
from remediator.console.sources import MAX_FORM_BYTES, ConsoleStore, Sources
from remediator.guards.base import GuardsUnavailable
from remediator.guards.guards import Guards
from remediator.identities import Role
from remediator.policy.policyset import PoliciesInForce
from remediator.remediation.approvals import ApprovalDesk
from remediator.remediation.demotions import Demotions
from remediator.store import StoreUnavailable

log = structlog.get_logger("remediator.console")

PREFIX = "/ui"
FORM_TOKEN = "csrf"  # noqa: S105 - the name of the field every form carries
STALE_SIGN_IN = "Sign-in refused: this form came from elsewhere or is stale. Try again here."
PageHandler = Callable[[Sources, web.Request, Visitor], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STYLESHEET = files("remediator.console").joinpath("static", "console.css").read_bytes()


class Console:
    def __init__(
        self,
        settings: Settings,
        store: ConsoleStore,
        guards: Guards,
        policies: PoliciesInForce,
        identities: Identities,
        *,
        desk: ApprovalDesk,
        demotions: Demotions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledgers = LedgerCounts(store, policies, clock)
        self._sources = Sources(
            settings, store, guards, policies, desk, demotions, clock, self._ledgers
        )
        secret = settings.console_secret
        signer = Signer(secret.get_secret_value().encode()) if secret else Signer.drawn()
        self._doorman = Doorman(settings, identities, signer, clock)
        self._external_url = settings.external_url

    def application(self) -> web.Application:
        """Mounted at /ui by the wiring (`app.add_subapp(PREFIX, ...)`)."""
        app = web.Application(middlewares=[self._answers], client_max_size=MAX_FORM_BYTES)
        app.router.add_routes(self._routes())
        app.on_cleanup.append(lambda _: self._ledgers.close())
        return app

    def _routes(self) -> list[web.RouteDef]:
        read, change = self._viewer, self._operator
        return [
            web.get("/", read(now.show)),
            web.get("/runs/{id}", read(runs.show)),
            web.get("/history", read(history.show)),
            web.get("/policies", read(policies.show)),
            web.post("/policies/{name}/promote", change(policies.promote)),
            web.get("/approvals", read(approvals.show)),
            web.post("/approvals/{id}", change(approvals.answer)),
            web.get("/control", read(control.show)),
            web.post("/control/pause", change(control.pause)),
            web.post("/control/resume", change(control.resume)),
            web.get("/login", self._login_page),
            web.post("/login", self._login),
            web.post("/logout", self._viewer(self._logout, form=True)),
            web.get("/static/console.css", _stylesheet),
        ]

    def _viewer(self, handler: PageHandler, *, form: bool = False) -> Handler:
        return partial(self._enter, handler, Role.VIEWER, form)

    def _operator(self, handler: PageHandler) -> Handler:
        return partial(self._enter, handler, Role.OPERATOR, True)

    async def _enter(
        self, handler: PageHandler, role: Role, form: bool, request: web.Request
    ) -> web.StreamResponse:
        """Who may: signed in (else to the sign-in page), with the role; a form posted from
        the console's own page with the visitor's token (else 403)."""
        visitor = self._doorman.visitor(request)
        if visitor is None:
            return _to_sign_in(request)
        if not visitor.identity.may(role):
            who = visitor.identity
            return await self._refused(
                request, visitor, f"{who.name} is a {who.role}: this needs the {role} role"
            )
        if form:
            if not same_origin(request, self._external_url):
                return await self._refused(request, visitor, "this form came from another site")
            fields = await self._sources.form(request)
            if not tokens_match(fields.get(FORM_TOKEN), visitor.form_token):
                return await self._refused(
                    request, visitor, "this form's token is missing or stale: load the page again"
                )
        return await handler(self._sources, request, visitor)

    async def _refused(self, request: web.Request, visitor: Visitor, why: str) -> web.Response:
        log.warning(
            "console request refused", path=request.path, who=visitor.identity.name, why=why
        )
        return await self._sources.page("error.html", visitor, status=403, title="Refused", why=why)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        if self._doorman.visitor(request) is not None:
            return _see_other(_next(request.query.get("next")))
        return self._sign_in_form(request, _next(request.query.get("next")))

    def _sign_in_form(
        self, request: web.Request, following: str, *, problem: str = "", status: int = 200
    ) -> web.Response:
        response = web.Response(status=status, content_type="text/html", charset="utf-8")
        response.headers["Cache-Control"] = "no-store"
        token = self._doorman.login_form(request, response)
        response.text = render.html(
            "login.html",
            title="Sign in",
            visitor=None,
            next=following,
            problem=problem,
            form_token=token,
        )
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        fields = await self._sources.form(request)
        following = _next(fields.get("next"))
        expected = self._doorman.login_token(request)
        posted = fields.get(FORM_TOKEN)
        if not same_origin(request, self._external_url) or expected is None:
            return self._sign_in_form(request, following, problem=STALE_SIGN_IN, status=403)
        if not tokens_match(posted, expected):
            return self._sign_in_form(request, following, problem=STALE_SIGN_IN, status=403)
        response = _see_other(following)
        signed_in = self._doorman.sign_in(request, response, fields.get("token", ""))
        if signed_in is None:
            log.warning("console sign-in refused: unknown token", remote=request.remote)
            return self._sign_in_form(
                request, following, problem="That token is not known here.", status=401
            )
        log.info("console sign-in", who=signed_in.name, role=signed_in.role.value)
        return response

    async def _logout(
        self, _: Sources, request: web.Request, visitor: Visitor
    ) -> web.StreamResponse:
        response = _see_other(f"{PREFIX}/login")
        self._doorman.sign_out(response)
        log.info("console sign-out", who=visitor.identity.name)
        return response

    @web.middleware
    async def _answers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The console's own error pages (HTML, never the API's JSON), and its headers on
        every answer."""
        response: web.StreamResponse
        try:
            if request.path == PREFIX:  # /ui, as people type it
                response = _see_other(f"{PREFIX}/")
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason, exc.headers.get("Location"))
        except (StoreUnavailable, GuardsUnavailable) as exc:
            response = _error(503, f"the store or the guard state is unavailable: {exc}")
        except TimeoutError:
            response = _error(408, "the form did not arrive in time")
        except Exception:
            log.exception("console page failed", path=request.path)
            response = _error(500, "this page failed; the service's log says why")
        response.headers.update(HEADERS)
        return response


def _error(status: int, reason: str, location: str | None = None) -> web.Response:
    if location is not None:
        return web.Response(status=status, headers={"Location": location})
    return render.page("error.html", status=status, title=str(status), why=reason, visitor=None)


def _to_sign_in(request: web.Request) -> web.StreamResponse:
    """To the sign-in page, back here after. A link followed from another site (a page's
    Slack link) carries no SameSite=Strict cookie: that visit is sent round once through the
    console's own page, which does carry it."""
    here = request.path_qs
    if request.method == "GET" and request.headers.get("Sec-Fetch-Site") == "cross-site":
        return render.page("continue.html", target=here)
    return _see_other(f"{PREFIX}/login?next={quote(here, safe='')}")


def _next(value: str | None) -> str:
    """Where to go after signing in: a console page only (never another site)."""
    if not value:
        return f"{PREFIX}/"
    parts = urlsplit(value)
    odd = not value.isascii() or any(ch.isspace() or not ch.isprintable() for ch in value)
    if odd or parts.scheme or parts.netloc or not value.startswith(f"{PREFIX}/") or "\\" in value:
        return f"{PREFIX}/"
    return value


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def _stylesheet(_: web.Request) -> web.Response:
    response = web.Response(body=STYLESHEET, content_type="text/css", charset="utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
