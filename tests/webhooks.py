"""A real webhook receiver on 127.0.0.1 (http.server in a thread) for the notification tests:
it records every request and answers as the test's plan says; signatures are checked with the
`standardwebhooks` library, as a receiver would."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float  # time.monotonic() when it arrived

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def verify(self, secret: str) -> dict[str, Any]:
        """The message as `standardwebhooks` verifies it with `secret` (raises if it fails)."""
        verified: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return verified


# A plan answers the n-th request (0-based): (status, seconds to wait first, extra headers).
Plan = Callable[[int], tuple[int, float, dict[str, str]]]


def always(status: int) -> Plan:
    return lambda _n: (status, 0.0, {})


@dataclass
class Receiver:
    port: int
    plan: Plan = field(default_factory=lambda: always(204))
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait until `count` requests have arrived (a bound, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.snapshot())} of {count} webhooks arrived")
            await asyncio.sleep(0.02)
        return self.snapshot()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                n = len(receiver.received)
                receiver.received.append(
                    Received(
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        self.path,
                        time.monotonic(),
                    )
                )
            status, delay, headers = receiver.plan(n)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")  # 204 may carry no body
                self.end_headers()
            except OSError:
                pass  # the dispatcher gave up waiting (a timeout test)

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 refuses a dispatcher's burst of connections


@contextmanager
def receiver(plan: Plan | None = None) -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    found = Receiver(port=server.server_address[1])
    if plan is not None:
        found.plan = plan
    server.RequestHandlerClass = _handler(found)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


async def local_resolver(_host: str, _port: int) -> list[str]:
    """Every name is 127.0.0.1: lets tests use host names with no DNS."""
    return ["127.0.0.1"]
