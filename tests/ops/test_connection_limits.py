"""What one instance holds: silent connections cannot starve it of file descriptors, a body
that stops arriving is answered 408, and beyond the connection limit uvicorn answers 503."""

from __future__ import annotations

import json
import resource
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import AUDIENCE, ISSUER
from tests.ops.servers import running_server, server_env

pytestmark = pytest.mark.slow

SILENT = 3000


def _low_fd_limit() -> None:
    # In the server process only: the common default soft limit, the hard one untouched.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


@contextmanager
def _own_fd_limit(needed: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _silent_sockets(stack: ExitStack, host: str, port: int, count: int) -> None:
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection((host, port), timeout=10))
        assert sock.fileno() >= 0


def _address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def test_a_request_is_served_while_many_silent_connections_are_open(
    database_url: str, signing_key
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env["REFERRAL_MAX_CONNECTIONS"] = str(SILENT * 2)
    with (
        _own_fd_limit(SILENT + 256),
        running_server(env, preexec_fn=_low_fd_limit) as (base, _process),
        ExitStack() as silent,
    ):
        _silent_sockets(silent, *_address(base), SILENT)
        # Without the soft limit raised at start, the server's accept() fails with EMFILE
        # after ~1,000 connections and this request waits in the backlog until it times out.
        response = httpx.get(f"{base}/health/live", timeout=10)
    assert response.status_code == 200


def test_beyond_the_connection_limit_uvicorn_answers_503(database_url: str, signing_key) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env["REFERRAL_MAX_CONNECTIONS"] = "10"
    with running_server(env) as (base, _process), ExitStack() as silent:
        _silent_sockets(silent, *_address(base), 10)
        response = httpx.get(f"{base}/health/live", timeout=10)
    assert response.status_code == 503


def test_a_body_that_stops_arriving_is_answered_408(database_url: str, signing_key, auth) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env["REFERRAL_BODY_READ_TIMEOUT_SECONDS"] = "0.5"
    with running_server(env) as (base, _process):
        host, port = _address(base)
        head = (
            "POST /v1/referrals HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            f"Authorization: {auth()['Authorization']}\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 500\r\n"
            "\r\n"
        )
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head.encode() + b'{"infant": {')  # and then nothing more
            received = b""
            while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.split()[1] == b"408"
    assert b"content-type: application/problem+json" in headers.lower()
    problem = json.loads(body)
    assert problem["status"] == 408
    assert problem["title"] == "Request Timeout"
