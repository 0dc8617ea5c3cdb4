"""Swagger UI at /docs and ReDoc at /redoc, served with their assets from api/static/.

Nothing is fetched from a CDN, so the documentation works on an air-gapped network. The assets
are vendored unmodified (versions and checksums in api/static/README.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/docs/static"

# An allow-list: only these files are served, whatever else sits in the folder.
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_CACHE = "public, max-age=86400"

router = APIRouter(include_in_schema=False)


def _asset(name: str) -> str:
    return f"{STATIC_PREFIX}/{name}"


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    """Swagger UI for the served document."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Parent-infant referral pathway API",
        swagger_js_url=_asset("swagger-ui-bundle.js"),
        swagger_css_url=_asset("swagger-ui.css"),
        swagger_favicon_url=_asset("favicon-32x32.png"),
        # No call to the public validator service either.
        swagger_ui_parameters={"validatorUrl": None, "displayOperationId": True},
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    """ReDoc for the served document."""
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Parent-infant referral pathway API",
        redoc_js_url=_asset("redoc.standalone.js"),
        redoc_favicon_url=_asset("favicon-32x32.png"),
        with_google_fonts=False,
    )


@router.get(STATIC_PREFIX + "/{name}")
async def static_asset(name: str) -> FileResponse:
    """One vendored asset, with its content type and a day's caching."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers={"Cache-Control": _CACHE})


def install(app: FastAPI) -> None:
    """Serve the documentation pages and their assets (kept out of the OpenAPI document)."""
    app.include_router(router)
