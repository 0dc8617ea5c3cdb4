"""The committed openapi/openapi.json is exactly what the app serves (`make openapi-check`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from api import openapi_export
from tests.contract.conftest import COMMITTED_DOCUMENT


def test_committed_document_is_what_the_export_renders() -> None:
    served = openapi_export.render(openapi_export.build_document())
    committed = COMMITTED_DOCUMENT.read_text(encoding="utf-8")
    if committed != served:
        diff = "".join(openapi_export.diff(committed, served, "openapi/openapi.json")[:80])
        raise AssertionError(f"run `make openapi` and commit the result:\n{diff}")


async def test_running_app_serves_the_committed_document(
    client: httpx.AsyncClient, committed_document: dict[str, Any]
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == committed_document


def test_check_mode_exits_1_with_a_diff_when_the_file_differs(tmp_path: Any, capsys: Any) -> None:
    stale = tmp_path / "openapi.json"
    document = json.loads(COMMITTED_DOCUMENT.read_text(encoding="utf-8"))
    document["info"]["version"] = "0.0.0-stale"
    stale.write_text(openapi_export.render(document), encoding="utf-8")
    assert openapi_export.main(["--check", str(stale)]) == 1
    out = capsys.readouterr()
    assert '-    "version": "0.0.0-stale"' in out.out
    assert "make openapi" in out.err
    assert openapi_export.main(["--check", str(tmp_path / "missing.json")]) == 1


def test_export_writes_a_stable_file(tmp_path: Any) -> None:
    target = tmp_path / "out" / "openapi.json"
    assert openapi_export.main([str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert openapi_export.main(["--check", str(target)]) == 0
