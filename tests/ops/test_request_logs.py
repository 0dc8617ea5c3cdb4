"""Every log record of a request carries its request_id, crash and database-error records too;
records logged outside a request carry none."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import DBAPIError

from service.core.logs import JsonFormatter, current_request_id
from tests.factories import make_referral_body
from tests.intake_patch import replace_intake


class _DriverError(Exception):
    sqlstate = "23505"  # a unique violation: a real fault, logged and answered 500


@pytest.fixture
def printed(app: FastAPI) -> Iterator[io.StringIO]:
    """What the service's own log handler (installed by create_app) prints, as JSON lines."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and isinstance(h.formatter, JsonFormatter)
    ]
    assert len(handlers) == 1, logging.getLogger().handlers
    stream = io.StringIO()
    previous = handlers[0].setStream(stream)
    yield stream
    handlers[0].setStream(previous)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_a_crashing_request_logs_only_records_with_its_id(
    client: httpx.AsyncClient, auth, printed: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(_request: object) -> None:
        logging.getLogger("service.referrals.intake").warning("about to fail")
        raise RuntimeError("boom")

    replace_intake(monkeypatch, crash)
    logging.getLogger("tests").info("before the request")
    response = await client.post("/v1/referrals", json=make_referral_body(), headers=auth())
    assert response.status_code == 500
    logging.getLogger("tests").info("after the request")

    records = lines(printed)
    request_id = response.headers["x-request-id"]
    by_message = {record["message"]: record for record in records}
    for during in ("about to fail", "unhandled error", "request"):
        assert by_message[during].get("request_id") == request_id, by_message[during]
    for outside in ("before the request", "after the request"):
        assert "request_id" not in by_message[outside], by_message[outside]
    # httpx logs the response in the test's own context, after the request is over.
    assert all("request_id" not in r for r in records if r["logger"] == "httpx")
    assert current_request_id() is None


async def test_a_database_error_is_logged_with_the_request_id(
    client: httpx.AsyncClient, auth, printed: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(_request: object) -> None:
        raise DBAPIError("INSERT INTO referrals ...", {}, _DriverError("driver text"))

    replace_intake(monkeypatch, fail)
    response = await client.post(
        "/v1/referrals", json=make_referral_body(), headers={**auth(), "X-Request-ID": "req-db-1"}
    )
    assert response.status_code == 500

    records = [r for r in lines(printed) if r["logger"].startswith(("api.", "service."))]
    assert [r["message"] for r in records if r["logger"] == "api.problems"] == ["database error"]
    ours = response.headers["x-request-id"]
    assert records and all(r.get("request_id") == ours for r in records), records
    assert all(r.get("correlation_id") == "req-db-1" for r in records), records


async def test_concurrent_requests_keep_their_own_ids(
    client: httpx.AsyncClient, auth, printed: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logging.getLogger("service.referrals.intake")

    async def interleaved(_request: object) -> None:
        # Every request logs, yields to the others, and logs again: a shared variable in place
        # of a context variable would label some of these lines with another request's id.
        log.info("start")
        await asyncio.sleep(0.01)
        log.info("end")
        raise RuntimeError("boom")

    replace_intake(monkeypatch, interleaved)
    ids = [f"req-{n}" for n in range(5)]
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/referrals", json=make_referral_body(), headers={**auth(), "X-Request-ID": i}
            )
            for i in ids
        )
    )
    assert [r.headers["x-correlation-id"] for r in responses] == ids

    records = [r for r in lines(printed) if r["message"] in ("start", "end")]
    assert len(records) == 10
    for response in responses:
        request_id = response.headers["x-request-id"]
        mine = [
            (r["message"], r["correlation_id"])
            for r in records
            if r.get("request_id") == request_id
        ]
        theirs = response.headers["x-correlation-id"]
        assert mine == [("start", theirs), ("end", theirs)], records


async def test_the_servers_own_record_of_a_crash_mid_response_carries_the_id(
    app: FastAPI, printed: io.StringIO
) -> None:
    # Once the response has started no 500 can be sent: the exception goes on to the server,
    # which logs it after our middleware has returned. A real uvicorn, in this event loop.
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise RuntimeError("boom")

    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks())

    app.add_api_route("/test-only/stream", stream)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            with pytest.raises(httpx.HTTPError):
                async with http.stream(
                    "GET", "/test-only/stream", headers={"X-Request-ID": "req-mid-stream"}
                ) as streamed:
                    ours = streamed.headers["x-request-id"]
                    await streamed.aread()
    finally:
        server.should_exit = True
        await serving

    records = lines(printed)
    crash = [r for r in records if r["logger"] == "uvicorn.error" and r["level"] == "error"]
    assert crash, records
    assert all(r.get("request_id") == ours for r in crash), crash
    assert all(r.get("correlation_id") == "req-mid-stream" for r in crash), crash
    started = [r for r in records if r["message"].startswith("Uvicorn running")]
    assert started and "request_id" not in started[0]


async def test_logs_carry_our_request_id_and_the_callers_correlation_id_apart(
    client: httpx.AsyncClient, auth, printed: io.StringIO
) -> None:
    response = await client.get("/v1/referrals", headers={**auth(), "X-Request-ID": "theirs-1"})
    assert response.status_code == 200
    [access] = [r for r in lines(printed) if r["logger"] == "api.access"]
    assert access["request_id"] == response.headers["x-request-id"]
    assert access["correlation_id"] == "theirs-1"

    plain = await client.get("/v1/referrals", headers=auth())
    [access] = [r for r in lines(printed) if r["logger"] == "api.access"][1:]
    assert access["request_id"] == plain.headers["x-request-id"]
    assert "correlation_id" not in access
