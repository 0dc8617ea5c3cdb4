"""eligibility/ stays pure: no web, database, network, clock, or upward imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "eligibility"

FORBIDDEN_MODULES = frozenset(
    {
        "fastapi",
        "starlette",
        "sqlmodel",
        "sqlalchemy",
        "httpx",
        "requests",
        "socket",
        "urllib",
        "asyncpg",
        "aiosqlite",
        "api",
        "service",
        "time",
    }
)
# Attribute calls that read the clock, whatever the receiver is called.
CLOCK_CALLS = frozenset({"today", "now", "utcnow", "fromtimestamp", "time", "monotonic"})
DYNAMIC_IMPORTS = frozenset({"__import__", "import_module"})


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Every forbidden import or clock read in `source`, as "file:line: what"."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    problems.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                problems.append(f"{where}: relative import above the package")
            elif node.level == 0 and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLOCK_CALLS:
                problems.append(f"{where}: clock read .{name}()")
            elif name in DYNAMIC_IMPORTS:
                problems.append(f"{where}: dynamic import {name}()")
    return problems


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_there_are_sources_to_check() -> None:
    assert {p.name for p in _sources()} >= {"engine.py", "ruleset.py", "facts.py", "dates.py"}


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.name)
def test_module_is_pure(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("import fastapi", id="import"),
        pytest.param("import sqlalchemy.orm as orm", id="import-submodule"),
        pytest.param("from service.models import Referral", id="from-service"),
        pytest.param("from api import main", id="from-api"),
        pytest.param("from urllib.request import urlopen", id="from-urllib"),
        pytest.param("import socket", id="socket"),
        pytest.param("from .. import service", id="relative-above-package"),
        pytest.param("from datetime import date\ndate.today()", id="date-today"),
        pytest.param("import datetime\ndatetime.datetime.now()", id="datetime-now"),
        pytest.param("from datetime import datetime as dt\ndt.utcnow()", id="aliased-utcnow"),
        pytest.param("import importlib\nimportlib.import_module('httpx')", id="import-module"),
        pytest.param("__import__('requests')", id="dunder-import"),
    ],
)
def test_checker_catches(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("from datetime import date, timedelta", id="datetime-types"),
        pytest.param("from eligibility.dates import reaches_months", id="own-package"),
        pytest.param("from .dates import reaches_months", id="relative-in-package"),
        pytest.param("import servicex", id="name-prefix-only"),
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source) == []


def test_importing_eligibility_loads_no_forbidden_package() -> None:
    # A fresh interpreter, so modules other tests imported do not count.
    heavy = ["fastapi", "starlette", "sqlmodel", "sqlalchemy", "httpx", "requests", "asyncpg"]
    heavy += ["aiosqlite", "api", "service"]
    code = (
        "import sys, eligibility; eligibility.default_ruleset(); "
        f"print(','.join(sorted(m for m in {heavy!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    )
    assert result.stdout.strip() == ""
