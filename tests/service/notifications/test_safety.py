"""The address policy with the system's resolver: host forms that spell a private address in
another way are refused, and the address used is the one the resolver prefers."""

from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.notifications.safety import UnsafeUrl, UrlPolicy, system_resolver

STRICT = UrlPolicy(allow_insecure=False)


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.1",  # hexadecimal, short form
        "0177.0.0.1",  # octal
        "127.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "0",  # 0.0.0.0
        "localhost",
        "localhost.",
    ],
)
async def test_other_spellings_of_an_inward_address_are_refused(host: str) -> None:
    # Numeric forms and /etc/hosts need no DNS: this is the real resolver.
    with pytest.raises(UnsafeUrl):
        await STRICT.resolve(f"https://{host}/hook")


async def test_the_resolvers_preferred_address_is_the_one_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def answers(*_args: Any, **_kwargs: Any) -> list[Any]:
        stream, tcp = socket.SOCK_STREAM, socket.IPPROTO_TCP
        return [
            (socket.AF_INET, stream, tcp, "", ("93.184.215.14", 443)),
            (socket.AF_INET6, stream, tcp, "", ("2606:2800:21f:cb07::1", 443, 0, 0)),
            (socket.AF_INET, stream, tcp, "", ("93.184.215.14", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", answers)
    assert await system_resolver("partner.example", 443) == [
        "93.184.215.14",
        "2606:2800:21f:cb07::1",
    ]
    policy = UrlPolicy(allow_insecure=False, resolver=system_resolver)
    target = await policy.resolve("https://partner.example/hook")
    # Not IPv6 first because "2" sorts before "9": on a host without IPv6 that never connects.
    assert target.address == "93.184.215.14"


async def test_names_resolve_even_when_the_default_executor_is_held() -> None:
    # A name server that never answers holds resolver threads; they are not the loop's default
    # executor's, which asyncpg also uses to resolve the database's host.
    loop = asyncio.get_running_loop()
    held = threading.Event()
    default = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(default)
    try:
        blocker = loop.run_in_executor(None, held.wait)
        async with asyncio.timeout(10):
            assert "127.0.0.1" in await system_resolver("localhost", 443)
    finally:
        held.set()
        await blocker
