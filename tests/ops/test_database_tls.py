"""TLS to PostgreSQL with REFERRAL_DATABASE_SSL_ROOT_CERT: a real encrypted connection to the
test server, and a refusal (503, "refused") when the certificate is not the one we trust.

The server must have TLS on: Debian's cluster has `ssl = on` with its snakeoil certificate, and
CI runs on the same kind of machine. TLS off is a failure here, not a skip: the production
configuration would be untested. REFERRAL_TEST_DATABASE_SSL_ROOT_CERT names another CA file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.app import create_app
from service.core.database import create_engine
from tests.conftest import make_settings
from tests.ops.certificates import write_self_signed_ca

pytestmark = pytest.mark.postgres_only

SERVER_CA_VARIABLE = "REFERRAL_TEST_DATABASE_SSL_ROOT_CERT"
DEBIAN_SNAKEOIL = "/etc/ssl/certs/ssl-cert-snakeoil.pem"


async def require_server_tls(database_url: str) -> None:
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        setting = await connection.fetchval("SHOW ssl")
    finally:
        await connection.close()
    if setting != "on":
        pytest.fail(
            f"PostgreSQL at {url.host}:{url.port} has ssl = {setting}: TLS to the database cannot "
            "be tested. Turn it on (ssl = on, ssl_cert_file and ssl_key_file, e.g. Debian's "
            f"snakeoil pair) and point {SERVER_CA_VARIABLE} at the certificate if it is not "
            f"{DEBIAN_SNAKEOIL}."
        )


def server_ca() -> Path:
    path = Path(os.environ.get(SERVER_CA_VARIABLE, DEBIAN_SNAKEOIL))
    if not path.is_file():
        pytest.fail(f"the server's CA certificate {path} does not exist; set {SERVER_CA_VARIABLE}")
    return path


async def test_verify_ca_connection_is_encrypted(database_url: str, signing_key) -> None:
    await require_server_tls(database_url)
    settings = make_settings(
        database_url,
        signing_key.public_file,
        database_ssl_root_cert=server_ca(),
        # The snakeoil certificate names the machine, not 127.0.0.1: check the chain only.
        database_ssl_mode="verify-ca",
    )
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            encrypted = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
    finally:
        await engine.dispose()
    assert encrypted is True

    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text


async def test_untrusted_server_certificate_is_refused(
    database_url: str, signing_key, auth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await require_server_tls(database_url)
    settings = make_settings(
        database_url,
        signing_key.public_file,
        database_ssl_root_cert=write_self_signed_ca(tmp_path / "other-ca.pem"),
        database_ssl_mode="verify-ca",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        listed = await client.get("/v1/referrals", headers=auth())
        ready = await client.get("/health/ready")
    assert listed.status_code == 503, listed.text
    assert listed.headers["content-type"] == "application/problem+json"
    assert int(listed.headers["retry-after"]) > 0
    assert ready.status_code == 503
    assert ready.json() == {"status": "not_ready", "database": "refused", "schema": None}
    messages = [json.loads(line)["message"] for line in capsys.readouterr().out.splitlines()]
    assert (
        "database refused the connection: TLS certificate verification failed "
        "(check REFERRAL_DATABASE_SSL_ROOT_CERT)" in messages
    )


async def test_verify_full_checks_the_host_name(database_url: str, signing_key) -> None:
    await require_server_tls(database_url)
    # The server's certificate names the machine; we connect to it by IP address.
    assert make_url(database_url).host == "127.0.0.1"
    settings = make_settings(
        database_url, signing_key.public_file, database_ssl_root_cert=server_ca()
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["database"] == "refused"
