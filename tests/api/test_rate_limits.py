"""Limits on callers: per organisation, per organisation for submissions, per address before
authentication; 429 problem+json with Retry-After and the IETF RateLimit headers; counters in
memory or shared in Redis; a store that is down fails open.

Windows open at a key's first hit (fixed windows, not wall-clock minutes) and every test sends
its requests well inside one minute, so no test depends on when it runs.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import coredis
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from api.app import create_app
from service.core.settings import ConfigurationError, load_settings
from tests.conftest import AUDIENCE, ISSUER, SigningKey, make_settings
from tests.factories import make_referral_body
from tests.ops.servers import running_server, server_env

CHECK = "/v1/eligibility/check"
REDIS_URL = "redis://127.0.0.1:6379"
UNUSED_REDIS_URL = "redis://127.0.0.1:6390"
_RATE_LIMIT = re.compile(r'^"(\w+)";r=(\d+);t=(\d+)$')


@asynccontextmanager
async def serving(
    tmp_path: Path, signing_key: SigningKey, name: str = "a", **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app of its own (SQLite: the limits do not touch the database) and a client."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}", signing_key.public_file, **overrides
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


def assert_rate_limited(problem: Callable[..., dict[str, Any]], response: httpx.Response) -> None:
    body = problem(response, 429)
    assert body["type"].endswith("/problems/rate-limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert "ratelimit-policy" in response.headers
    assert "ratelimit" in response.headers


def remaining(response: httpx.Response) -> dict[str, tuple[int, int]]:
    """The RateLimit header as {policy: (remaining, seconds to reset)}."""
    found = {}
    for member in response.headers["ratelimit"].split(", "):
        match = _RATE_LIMIT.match(member)
        assert match, response.headers["ratelimit"]
        found[match[1]] = (int(match[2]), int(match[3]))
    return found


def store_errors() -> float:
    return REGISTRY.get_sample_value("referral_rate_limit_store_errors_total") or 0.0


async def test_61st_submission_in_a_minute_is_429_and_other_organisations_are_not_affected(
    tmp_path: Path, signing_key: SigningKey, auth, problem
) -> None:
    async with serving(tmp_path, signing_key) as (_app, client):
        for n in range(60):
            ok = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
            assert ok.status_code == 201, (n, ok.text)
        assert ok.headers["ratelimit-policy"] == '"org";q=600;w=60, "submit";q=60;w=60'
        assert remaining(ok)["submit"][0] == 0
        assert remaining(ok)["org"][0] == 540

        refused = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
        assert_rate_limited(problem, refused)
        assert remaining(refused)["submit"] == (0, int(refused.headers["retry-after"]))

        other = await client.post(
            "/v1/referrals", json=make_referral_body(), headers=auth(org="RY2")
        )
        assert other.status_code == 201, other.text
        assert remaining(other)["submit"][0] == 59
        # Reading is not a submission: the same organisation may still read.
        listed = await client.get("/v1/referrals", headers=auth())
        assert listed.status_code == 200
        assert listed.headers["ratelimit-policy"] == '"org";q=600;w=60'


async def test_the_organisation_wide_limit_covers_every_route(
    tmp_path: Path, signing_key: SigningKey, auth, problem
) -> None:
    async with serving(tmp_path, signing_key, rate_limits="3/minute") as (_app, client):
        body = make_referral_body()
        for n in range(3):
            ok = await client.post(CHECK, json=body, headers=auth())
            assert ok.status_code == 200, ok.text
            assert ok.headers["ratelimit-policy"] == '"org";q=3;w=60'
            assert remaining(ok)["org"][0] == 2 - n
        # The fourth, on another route, is over the organisation's limit.
        assert_rate_limited(problem, await client.get("/v1/referrals", headers=auth()))
        assert (await client.post(CHECK, json=body, headers=auth(org="RY2"))).status_code == 200


async def test_forged_tokens_hit_the_address_limit_then_are_refused_without_verification(
    tmp_path: Path, signing_key: SigningKey, auth, token, problem
) -> None:
    forged = token(org="RX1") + "x"  # the signature no longer matches
    async with serving(tmp_path, signing_key, rate_limits_anonymous="5/minute") as (app, client):
        verifier = app.state.services.verifier
        verify = verifier.verify
        calls = 0

        async def counting(raw: str) -> Any:
            nonlocal calls
            calls += 1
            return await verify(raw)

        verifier.verify = counting
        bad = {"Authorization": f"Bearer {forged}"}
        for n in range(5):
            refused = await client.get("/v1/referrals", headers=bad)
            problem(refused, 401)
            assert remaining(refused)["address"][0] == 4 - n
        assert calls == 5

        for _ in range(3):
            assert_rate_limited(problem, await client.get("/v1/referrals", headers=bad))
            assert_rate_limited(problem, await client.get("/v1/referrals"))
        assert calls == 5  # refused before the token was looked at

        # Health, readiness, metrics and the document are never limited.
        for path in ("/health/live", "/health/ready", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_valid_tokens_do_not_spend_the_address_budget(
    tmp_path: Path, signing_key: SigningKey, auth
) -> None:
    async with serving(tmp_path, signing_key, rate_limits_anonymous="2/minute") as (_app, client):
        for _ in range(5):
            ok = await client.get("/v1/referrals", headers=auth())
            assert ok.status_code == 200
            assert "address" not in remaining(ok)
        # The address's budget is still whole: two requests without a token are answered.
        assert (await client.get("/v1/referrals")).status_code == 401
        assert (await client.get("/v1/referrals")).status_code == 401
        assert (await client.get("/v1/referrals")).status_code == 429


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; only its keys are deleted afterwards."""
    prefix = f"test-limits-{uuid.uuid4().hex}"
    yield prefix
    redis = coredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis.delete(keys)


async def test_two_instances_share_the_counters_in_redis(
    tmp_path: Path, signing_key: SigningKey, auth, problem, redis_prefix: str
) -> None:
    shared = {
        "rate_limits": "4/minute",
        "rate_limit_storage_url": REDIS_URL,
        "rate_limit_key_prefix": redis_prefix,
    }
    body = make_referral_body()
    async with (
        serving(tmp_path, signing_key, "a", **shared) as (_a, first),
        serving(tmp_path, signing_key, "b", **shared) as (_b, second),
    ):
        for client in (first, second, first, second):
            assert (await client.post(CHECK, json=body, headers=auth())).status_code == 200
        # Each instance has seen two, but the organisation has spent four.
        assert_rate_limited(problem, await first.post(CHECK, json=body, headers=auth()))
        assert_rate_limited(problem, await second.post(CHECK, json=body, headers=auth()))


@pytest.mark.slow
async def test_two_service_processes_share_the_organisations_limit_in_redis(
    tmp_path: Path, signing_key: SigningKey, auth, problem, redis_prefix: str
) -> None:
    """Two `referral-service serve` processes, nothing shared but Redis (each has a database
    of its own: limits never touch it), submissions sent to each in turn."""
    limit = 5

    def env(name: str) -> dict[str, str]:
        database = f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}"
        return {
            **server_env(database, signing_key.public_file, ISSUER, AUDIENCE),
            "REFERRAL_RATE_LIMITS_SUBMIT": f"{limit}/minute",
            "REFERRAL_RATE_LIMIT_STORAGE_URL": REDIS_URL,
            "REFERRAL_RATE_LIMIT_KEY_PREFIX": redis_prefix,
        }

    with running_server(env("a")) as (first, _a), running_server(env("b")) as (second, _b):
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:

            async def submit(base: str, org: str = "RX1") -> httpx.Response:
                return await client.post(
                    f"{base}/v1/referrals", json=make_referral_body(), headers=auth(org=org)
                )

            for n in range(limit):
                ok = await submit((first, second)[n % 2])
                assert ok.status_code == 201, ok.text
                # What is left counts the organisation's submissions to both processes.
                assert remaining(ok)["submit"][0] == limit - 1 - n
            # Each process has seen at most three, but the organisation has spent five.
            for base in (first, second):
                refused = await submit(base)
                assert_rate_limited(problem, refused)
                assert refused.headers["ratelimit-policy"] == (
                    f'"org";q=600;w=60, "submit";q={limit};w=60'
                )
                assert remaining(refused)["submit"] == (0, int(refused.headers["retry-after"]))

            other = await submit(second, org="RY2")
            assert other.status_code == 201, other.text
            assert remaining(other)["submit"][0] == limit - 1


async def test_a_store_that_is_down_fails_open_logged_and_counted(
    tmp_path: Path, signing_key: SigningKey, auth, caplog: pytest.LogCaptureFixture
) -> None:
    before = store_errors()
    down = {"rate_limits": "1/minute", "rate_limit_storage_url": UNUSED_REDIS_URL}
    async with serving(tmp_path, signing_key, **down) as (_app, client):
        # create_app installs the service's own log handler on the root logger: put the
        # capturing one back beside it.
        logging.getLogger().addHandler(caplog.handler)
        caplog.set_level(logging.WARNING)
        body = make_referral_body()
        for _ in range(3):
            ok = await client.post(CHECK, json=body, headers=auth())
            assert ok.status_code == 200, ok.text
            assert "ratelimit" not in ok.headers  # nothing counted, so nothing to tell
        assert (await client.get("/v1/referrals")).status_code == 401
    # At least the first failure (later ones may fall in the store's back-off).
    assert store_errors() - before >= 1
    warnings = [r for r in caplog.records if r.name == "service.rate_limits"]
    assert warnings and warnings[0].levelno == logging.WARNING
    assert "RX1" not in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REFERRAL_RATE_LIMITS", "lots"),
        ("REFERRAL_RATE_LIMITS_SUBMIT", "60/fortnight"),
        ("REFERRAL_RATE_LIMITS_ANONYMOUS", "0/minute"),
        ("REFERRAL_RATE_LIMIT_STORAGE_URL", "memcached://secret@cache:11211"),
    ],
)
def test_a_bad_limit_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("REFERRAL_ENV", "development")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert f"{variable}:" in message
    assert "secret" not in message


def test_every_v1_answer_documents_the_rate_limit_headers(app: FastAPI) -> None:
    document = app.openapi()
    missing = [
        (path, method, status)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if status[0] in "24"
        and not {"RateLimit", "RateLimit-Policy"} <= set(response.get("headers", {}))
    ]
    assert not missing
    # The probes are not limited, and say nothing about limits.
    assert "RateLimit" not in document["paths"]["/health/live"]["get"]["responses"]["200"].get(
        "headers", {}
    )
