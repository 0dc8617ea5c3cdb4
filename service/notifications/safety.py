"""SSRF protection: where a webhook may be sent.

`https://` only, and every address the host resolves to must be public: not loopback, private
(RFC 1918, unique local fc00::/7), link-local, CGNAT (100.64.0.0/10), multicast, unspecified,
a cloud metadata address or anything else that is not globally routable. The host is resolved
at each delivery (a name may change), and the connection is then made to the very address that
was checked (the host name still goes in the Host header and TLS SNI), so a DNS answer that
changes between the check and the connection (rebinding) cannot point us inwards.
`REFERRAL_WEBHOOK_ALLOW_INSECURE=true` (tests and development only) allows `http://` and
private addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import httpx

# Resolves a host name and port to its IP addresses; tests hand in a stub (no DNS in tests).
Resolver = Callable[[str, int], Awaitable[list[str]]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 (RFC 6052) leads to the IPv4 address it embeds, so that one must be public.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never globally routable, though the ipaddress module of Python 3.11 counts them as global:
# IPv4-compatible (deprecated, RFC 4291), local-use NAT64 (RFC 8215), site-local (deprecated).
_NOT_GLOBAL_V6 = tuple(ipaddress.ip_network(n) for n in ("::/96", "64:ff9b:1::/48", "fec0::/10"))


class UnsafeUrl(ValueError):
    """The URL may not be called; the message says why, without echoing the URL."""


# getaddrinfo blocks a thread until the name server answers or gives up. A partner whose name
# server never answers would otherwise fill the event loop's default executor, which others
# share (asyncpg resolves the database's host there when it opens a connection); with threads
# of its own, slow names can only delay other deliveries' names.
_RESOLVER_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


async def system_resolver(host: str, port: int) -> list[str]:
    lookup = partial(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    infos = await asyncio.get_running_loop().run_in_executor(_RESOLVER_THREADS, lookup)
    # In the resolver's order (RFC 6724: the preferred address first), without repeats.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: IPAddress) -> str | None:
    """Why this address may not be called, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
        elif int(address) > 1 and any(address in network for network in _NOT_GLOBAL_V6):
            return "not globally routable"  # (:: and ::1 are named below)
    checks = (
        (address in _METADATA, "a cloud metadata address"),
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "shared (CGNAT)"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    for refused, why in checks:
        if refused:
            return why
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 address leads to (Teredo is refused
    whole: it is not global)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect: the URL with its host replaced by the checked address."""

    host: str  # as in the URL (IDNA-encoded): for the Host header and TLS SNI
    address: str  # the checked IP address to connect to
    url: str  # the original URL


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    allow_insecure: bool
    resolver: Resolver = system_resolver

    def check_shape(self, url: str) -> tuple[str, int]:
        """The host and port of an acceptable URL (scheme, host, no credentials)."""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or (
            parts.scheme == "http" and not self.allow_insecure
        ):
            raise UnsafeUrl("must be an https:// URL")
        if not parts.hostname:
            raise UnsafeUrl("must name a host")
        if parts.username is not None or parts.password is not None:
            raise UnsafeUrl("must not carry credentials")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UnsafeUrl("has an invalid port") from None
        try:
            # The HTTP client must read the URL as we do, or delivery fails every time. Its
            # host in ASCII (IDNA) is the name resolved, sent as Host and verified by TLS.
            host = httpx.URL(url).raw_host.decode("ascii")
        except httpx.InvalidURL:
            raise UnsafeUrl("is not a valid URL") from None
        return host, port

    async def resolve(self, url: str) -> Target:
        """Resolve the URL's host and check every address; the first is the one to use."""
        host, port = self.check_shape(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await self.resolver(host, port)
            except OSError:
                raise UnsafeUrl("has a host that does not resolve") from None
            except UnicodeError:  # an empty or too long label: IDNA cannot encode it
                raise UnsafeUrl("has an invalid host name") from None
        if not addresses:
            raise UnsafeUrl("has a host that does not resolve")
        if not self.allow_insecure:
            for text in addresses:
                why = refusal(ipaddress.ip_address(text))
                if why is not None:
                    raise UnsafeUrl(f"resolves to an address that is {why}")
        return Target(host=host, address=addresses[0], url=url)
