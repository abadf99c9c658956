"""The actions' HTTP client, held to guardrails `allowed_hosts` when it connects.

The decision core has refused a plan whose URLs go anywhere else; this is the second check,
for what only connecting shows: the addresses a name resolves to (a name allowed by `*.svc`
that resolves to 127.0.0.1 or 169.254.169.254), and an allow-list reloaded since the plan.
Every request's URL is checked as it starts (literal addresses never reach the resolver),
and every resolved address as it is connected to. Redirects are not followed by the actions.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from remediator.policy.egress import Egress

EgressRules = Callable[[], Egress]
REFUSED = "refused"  # in a step's data: the request the allow-list refused, and why


class EgressRefused(Exception):
    """A request the allow-list refuses: never sent, not worth retrying, and not an answer
    about the target's health."""


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing a name whose addresses the allow-list does not allow."""

    def __init__(self, rules: EgressRules, resolver: AbstractResolver | None = None) -> None:
        self._rules = rules
        self._resolver = resolver or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        rules = self._rules()
        for result in found:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            refusal = rules.address_refusal(host, address, port)
            if refusal is not None:
                raise EgressRefused(f"refused: {refusal}")
        return found

    async def close(self) -> None:
        await self._resolver.close()


def guarded_session(rules: EgressRules) -> aiohttp.ClientSession:
    """A client session whose every request and connection `rules` allow. Without a DNS cache:
    each connection is checked against the allow-list as it is now."""

    async def check_url(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        refusal = rules().url_refusal(str(params.url))
        if refusal is not None:
            raise EgressRefused(f"refused: {refusal}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(check_url)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(rules), use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace])
