"""Where the actions may send a request: the `allowed_hosts` of guardrails.yaml.

Purely computational: a URL or an address in, the reason it is refused (or None) out. The
decision core checks every rendered URL before a plan is made; the actions' HTTP client
checks again, with the addresses a name resolves to, when it connects.

An entry is `HOST[:PORT]`. HOST is a name, where `*` stands for any characters (dots too:
`*.svc` allows `api.payments.svc`); an IP address (`10.1.2.3`, `[fd00::1]`); or a network
(`10.0.0.0/8`, `[fd00::/8]`). Without a port, every port is allowed.

Loopback, link-local, unspecified and cloud metadata addresses (and the metadata service's
names) are refused even when a pattern matches, unless an entry names them: the address
itself, a network inside those ranges (`127.0.0.0/8`), or the exact host name (no `*`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata services: AWS (IPv4 and IPv6), GCP, Azure and OpenStack share
# 169.254.169.254 (link-local anyway); Alibaba Cloud answers on 100.100.100.200.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_SPECIAL_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("127.0.0.0/8", "a loopback address"),
        ("::1/128", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
        ("0.0.0.0/8", "an unspecified address"),
        ("::/128", "an unspecified address"),
    )
)
DEFAULT_ALLOWED_HOSTS = ("*.svc", "*.svc.cluster.local")
_NAME_GLOB = re.compile(r"[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?(\.[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?)*")
# The last label of a name is never all digits (RFC 3696 2): `2130706433`, `127.1` and
# `0x7f.1` are numeric forms some resolvers turn into 127.0.0.1.
_NUMERIC_LAST_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_EXAMPLES = "such as '*.svc.cluster.local:8080', 'api.example.com:443', '10.0.0.0/8' or '[fd00::1]'"


def special(address: IPAddress) -> str | None:
    """What makes the address one no request goes to unless allowed by name, if anything."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        address = mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for network, why in _SPECIAL_NETWORKS:
        if address.version == network.version and address in network:
            return why
    return None


@dataclass(frozen=True)
class HostPattern:
    """One entry of `allowed_hosts`: a name glob, an address or a network, and a port."""

    text: str
    name: str | None  # a glob, lowercase, when the entry is a name
    network: IPNetwork | None  # when it is an address (a /32 or /128) or a network
    port: int | None  # None: any port

    def allows(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return fnmatchcase(host, self.name)
        address = _address(host)
        assert self.network is not None
        return address is not None and _within(address, self.network)

    def names(self, host: str, address: IPAddress, port: int) -> bool:
        """Whether the entry allows this special address explicitly: it names the host exactly
        (no `*`), or it is an address or network within the special ranges holding it."""
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return "*" not in self.name and self.name == host
        assert self.network is not None
        return _is_special_network(self.network) and _within(address, self.network)


def parse_host_pattern(text: str) -> HostPattern:
    """An `allowed_hosts` entry; ValueError says what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected HOST[:PORT] {_EXAMPLES}; got {text!r}")
    host, port = _split_port(text.strip())
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed or ":" in host or "/" in host or _looks_numeric(host):
        try:
            network = ipaddress.ip_network(host[1:-1] if bracketed else host, strict=True)
        except ValueError as exc:
            raise ValueError(f"{text!r}: not an IP address or network ({exc})") from exc
        if network.version == 6 and not bracketed:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [{host}]")
        return HostPattern(text, None, network, port)
    name = host.lower()
    if not _NAME_GLOB.fullmatch(name) or len(name) > 253:
        raise ValueError(
            f"{text!r}: expected a host name of letters, digits, '-' and '.', where '*' stands"
            f" for any characters ({_EXAMPLES})"
        )
    return HostPattern(text, name, None, port)


def _split_port(text: str) -> tuple[str, int | None]:
    host, colon, port = text.rpartition(":")
    if not colon or (host.count(":") and not host.endswith("]")):
        return text, None  # no port, or a bare IPv6 address (refused by the caller)
    if port == "*":
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535, or *")
    return host, int(port)


def _is_special_network(network: IPNetwork) -> bool:
    if network.num_addresses == 1 and network.network_address in METADATA_ADDRESSES:
        return True
    return any(
        network.version == wide.version and network.subnet_of(wide)  # type: ignore[arg-type]
        for wide, _ in _SPECIAL_NETWORKS
    )


def _looks_numeric(host: str) -> bool:
    return bool(_NUMERIC_LAST_LABEL.fullmatch(host.lower().rsplit(".", 1)[-1]))


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _within(address: IPAddress, network: IPNetwork) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    candidates = [address] if mapped is None else [address, mapped]
    return any(a.version == network.version and a in network for a in candidates)


@dataclass(frozen=True)
class Egress:
    """The allow-list as a whole: what a URL, or an address a name resolved to, may be."""

    patterns: tuple[HostPattern, ...]

    @classmethod
    def of(cls, texts: tuple[str, ...] | list[str]) -> Egress:
        return cls(tuple(parse_host_pattern(text) for text in texts))

    def url_refusal(self, url: str) -> str | None:
        """Why no request may go to the URL, or None: it must be http(s), carry no user
        or password, name a host the list allows, and not a special address it does not name."""
        try:
            parsed = URL(url)
        except ValueError as exc:
            return f"{url!r} is not a URL: {exc}"
        if parsed.scheme not in ("http", "https"):
            return f"{url!r}: only http and https are allowed"
        if parsed.raw_user is not None or parsed.raw_password is not None:
            return f"{url!r} carries a user or password (use headers_from_env for credentials)"
        host, port = (parsed.host or "").lower(), parsed.port
        if not host or port is None:
            return f"{url!r} names no host"
        return self.host_refusal(host, port)

    def host_refusal(self, host: str, port: int) -> str | None:
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        address = _address(host)
        if address is None and _looks_numeric(host):
            return f"{host!r} is neither an IP address nor a host name (a numeric form)"
        if not any(pattern.allows(host, port) for pattern in self.patterns):
            allowed = ", ".join(p.text for p in self.patterns) or "nothing"
            return f"{where} is not in guardrails allowed_hosts (allowed: {allowed})"
        if address is not None:
            return self.address_refusal(host, address, port)
        if host.rstrip(".") in METADATA_NAMES and not self._named(host, None, port):
            return f"{host} is the cloud metadata service: refused unless allowed_hosts names it"
        return None

    def address_refusal(self, host: str, address: IPAddress, port: int) -> str | None:
        """Why a connection to `address` (for `host`, resolved or literal) is refused."""
        why = special(address)
        if why is None or self._named(host.lower(), address, port):
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return f"{shown} is {why}: refused unless guardrails allowed_hosts names it"

    def _named(self, host: str, address: IPAddress | None, port: int) -> bool:
        if address is None:
            return any(p.name == host and p.port in (None, port) for p in self.patterns)
        return any(pattern.names(host, address, port) for pattern in self.patterns)
