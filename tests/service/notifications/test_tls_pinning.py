"""HTTPS to the checked address: the connection is pinned to the IP that was checked, while TLS
still verifies the certificate against the URL's host name (SNI), as a by-name connection would."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.notifications import delivery, signing
from service.notifications.safety import UrlPolicy
from tests.webhooks import local_resolver

HOST = "receiver.test"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    cert, key = _certificate(tmp_path)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append(self.headers.get("host", ""))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert, seen
    finally:
        server.shutdown()
        server.server_close()


async def _attempt(url: str, trusted: Path) -> delivery.Result:
    # The production client, but trusting the test's certificate instead of the system's.
    context = ssl.create_default_context(cafile=str(trusted))
    policy = UrlPolicy(allow_insecure=True, resolver=local_resolver)
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False, verify=context) as c:
        return await delivery.attempt(
            c,
            policy,
            url=url,
            message_id="msg_1",
            secrets=(signing.new_secret(),),
            body=b"{}",
            timeout=5.0,
        )


async def test_https_goes_to_the_checked_address_and_verifies_the_host_name(
    https_receiver: tuple[int, Path, list[str]],
) -> None:
    port, cert, seen = https_receiver
    result = await _attempt(f"https://{HOST}:{port}/hook", cert)
    assert (result.ok, result.status_code) == (True, 204)
    assert seen == [f"{HOST}:{port}"]


async def test_a_certificate_for_another_name_is_refused(
    https_receiver: tuple[int, Path, list[str]],
) -> None:
    port, cert, seen = https_receiver
    # Resolves to the same address, but the certificate is not for this name.
    result = await _attempt(f"https://elsewhere.test:{port}/hook", cert)
    assert not result.ok
    assert result.error in {"connection_error", "protocol_error"}
    assert seen == []


def test_the_refusal_classes_are_what_they_say() -> None:
    from service.notifications.safety import refusal

    assert refusal(ipaddress.ip_address("8.8.8.8")) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111")) is None
    assert refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    assert refusal(ipaddress.ip_address("100.64.1.1")) == "shared (CGNAT)"
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"
