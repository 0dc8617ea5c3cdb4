"""One attempt against hostile receivers on 127.0.0.1: an endless body, a trickle of bytes, and a
slow resolver followed by a slow answer. The attempt's bounds are its timeout and 64 KiB, whatever
the receiver does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from service.notifications import delivery, signing
from service.notifications.safety import UrlPolicy
from tests.webhooks import local_resolver, receiver

Respond = Callable[[asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_receiver(respond: Respond) -> AsyncIterator[str]:
    """A receiver that reads the request's head and then answers however `respond` writes."""

    handlers: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")
                await respond(writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def send(url: str, timeout: float, policy: UrlPolicy | None = None) -> delivery.Result:
    async with delivery.new_client(timeout) as client:
        return await delivery.attempt(
            client,
            policy or UrlPolicy(allow_insecure=True, resolver=local_resolver),
            url=url,
            message_id="msg_1",
            secrets=(signing.new_secret(),),
            body=b"{}",
            timeout=timeout,
        )


async def endless_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"x" * 16384
    while True:  # until the dispatcher hangs up
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()


async def trickle(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
    while True:  # a byte at a time: each read is quick, the whole never ends
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def test_an_endless_body_is_read_to_64_kib_and_no_further() -> None:
    async with raw_receiver(endless_body) as url:
        result = await send(url, timeout=5.0)
    # Reading it all would have run into the timeout: the attempt stopped at the bound.
    assert (result.ok, result.status_code, result.error) == (True, 200, None)


async def test_a_trickling_receiver_is_bounded_by_the_attempts_timeout() -> None:
    async with raw_receiver(trickle) as url:
        result = await send(url, timeout=0.5)
    assert (result.ok, result.error) == (False, "timeout")


async def test_the_timeout_covers_resolving_and_sending_together() -> None:
    async def slow_resolver(host: str, port: int) -> list[str]:
        await asyncio.sleep(0.7)
        return await local_resolver(host, port)

    policy = UrlPolicy(allow_insecure=True, resolver=slow_resolver)
    with receiver(lambda _n: (204, 0.7, {})) as hook:
        # Each step alone is within the second; both together are not.
        result = await send(f"http://receiver.test:{hook.port}/hook", timeout=1.0, policy=policy)
    assert (result.ok, result.error) == (False, "timeout")


async def test_an_unreadable_url_is_refused_not_raised() -> None:
    # An octal IPv4 host: the resolver reads it as 127.0.0.1, the HTTP client not at all.
    result = await send("http://0177.0.0.1:9/hook", timeout=1.0)
    assert (result.ok, result.error) == (False, "address_refused")


async def test_an_internationalised_host_name_is_sent_in_its_ascii_form() -> None:
    with receiver() as hook:
        result = await send(f"http://bücher.test:{hook.port}/hook", timeout=5.0)
        [message] = hook.snapshot()
    # Not a UnicodeEncodeError building the Host header at every attempt.
    assert (result.ok, result.status_code) == (True, 204)
    assert message.headers["host"] == f"xn--bcher-kva.test:{hook.port}"
