"""Metrics live on a port of their own: the API port never shows them (they need no token and
show global referral counts and safeguarding alerts as they happen)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.core import metrics
from tests.conftest import AUDIENCE, ISSUER
from tests.ops.servers import free_port, running_server, server_env


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


async def test_the_api_has_no_metrics_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "referral_" not in response.text
    document = (await client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]


async def test_the_metrics_server_serves_this_process_registry(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/health/live")).status_code == 200
    server, thread = metrics.serve("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    served = _value(
        response.text,
        "referral_http_requests_total",
        route="/health/live",
        method="GET",
        status="200",
    )
    assert served >= 1


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_serve_exposes_metrics_on_the_metrics_port_only(
    database_url: str, signing_key, workers: int
) -> None:
    metrics_port = free_port()
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env["REFERRAL_METRICS_PORT"] = str(metrics_port)
    with running_server(env, workers=workers) as (base, _process):
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(6):
                assert (await http.get(f"{base}/health/live")).status_code == 200
            on_api = await http.get(f"{base}/metrics")
            scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert on_api.status_code == 404
    assert scraped.status_code == 200
    # With two workers the six requests are spread over two processes: the count adds up
    # only if the one metrics server aggregates every worker's files.
    assert (
        _value(
            scraped.text,
            "referral_http_requests_total",
            route="/health/live",
            method="GET",
            status="200",
        )
        == 6
    )
