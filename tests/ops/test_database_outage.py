"""With the database gone, requests that need it get 503 + Retry-After, readiness fails,
liveness holds; when it returns the service recovers by itself, with no restart."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from tests.conftest import make_settings
from tests.factories import make_referral_body
from tests.ops.tcp_proxy import CuttableProxy

# An outage of a network database; SQLite has no server to lose.
pytestmark = pytest.mark.postgres_only


async def test_outage_gives_503_and_recovers_without_restart(
    database_url: str, signing_key, auth
) -> None:
    url = make_url(database_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(make_settings(proxied, signing_key.public_file))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        before = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
        assert before.status_code == 201

        await proxy.cut()
        down = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert int(down.headers["retry-after"]) > 0
        read = await client.get(before.headers["location"], headers=auth())
        assert read.status_code == 503
        assert (await client.get("/health/ready")).status_code == 503
        assert (await client.get("/health/live")).status_code == 200

        await proxy.start()
        after = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
        assert after.status_code == 201
        assert (await client.get("/health/ready")).status_code == 200
        listed = await client.get("/v1/referrals", headers=auth())
        assert len(listed.json()["items"]) == 2
    await proxy.cut()
