"""/docs and /redoc work with no internet: every asset they load is served by the service."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.docs import ASSETS

_REFERENCES = re.compile(
    r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|(?:Url|url)\s*:\s*['"]([^'"]+)['"]"""
)


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCES.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_page_loads_nothing_from_elsewhere(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html, "no external host of any kind"
    references = _references(html)
    assert "/openapi.json" in references
    assets = [ref for ref in references if ref != "/openapi.json"]
    assert assets, html
    for reference in assets:
        assert reference.startswith("/docs/static/") and "//" not in reference, reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        name = reference.rsplit("/", 1)[-1]
        assert asset.headers["content-type"] == ASSETS[name]
        assert int(asset.headers["content-length"]) > 0


async def test_swagger_ui_references_its_bundle_stylesheet_and_icon(
    client: httpx.AsyncClient,
) -> None:
    references = set(_references((await client.get("/docs")).text))
    assert {
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/swagger-ui.css",
        "/docs/static/favicon-32x32.png",
    } <= references


async def test_redoc_references_its_standalone_bundle(client: httpx.AsyncClient) -> None:
    html = (await client.get("/redoc")).text
    assert "/docs/static/redoc.standalone.js" in _references(html)
    assert "fonts.googleapis.com" not in html


@pytest.mark.parametrize("name", ["../app.py", "README.md", "nope.js", "redoc.LICENSE"])
async def test_only_listed_assets_are_served(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/docs/static/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_docs_routes_stay_out_of_the_contract(
    client: httpx.AsyncClient, committed_document: dict[str, Any]
) -> None:
    assert not [p for p in committed_document["paths"] if p.startswith(("/docs", "/redoc"))]
    assert (await client.get("/openapi.json")).status_code == 200
