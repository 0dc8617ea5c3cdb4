"""Dependencies point one way: api -> service -> eligibility, and inside service/ the domains
import each other only in the direction architecture.md gives. Nothing imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "eligibility": {"api", "service", "bench", "tests"},
    "service": {"api", "bench", "tests"},
    "api": {"bench", "tests"},
}
# What each domain of service/ may import from service/ (besides itself). `models` is the one
# module of table definitions; the command line composes everything.
SERVICE_DOMAINS: dict[str, set[str]] = {
    "core": set(),
    "auth": {"core"},
    "audit": {"core", "models"},
    "referrals": {"core", "audit", "auth", "models"},
    "notifications": {"core", "models"},
    "models": set(),
    "migrations": {"models", "referrals"},
    "cli": {"core", "auth", "audit", "referrals", "notifications", "models"},
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from service import audit` names the domain in the alias, not the module.
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imports(path)}


def service_domains_imported(path: Path) -> set[str]:
    return {
        name.split(".")[1]
        for name in _imports(path)
        if name.startswith("service.") and len(name.split(".")) > 1
    }


def domain_of(path: Path) -> str:
    relative = path.relative_to(ROOT / "service")
    return relative.parts[0].removesuffix(".py")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_upward(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_service_domains_import_only_in_the_documented_direction() -> None:
    offenders: dict[str, list[str]] = {}
    for path in (ROOT / "service").rglob("*.py"):
        if path.name == "__init__.py" and path.parent == ROOT / "service":
            continue
        domain = domain_of(path)
        assert domain in SERVICE_DOMAINS, f"{path}: a new domain? add it to architecture.md"
        wrong = service_domains_imported(path) - SERVICE_DOMAINS[domain] - {domain}
        if wrong:
            offenders[str(path.relative_to(ROOT))] = sorted(wrong)
    assert offenders == {}


def test_the_layout_has_the_domains_of_the_architecture() -> None:
    for domain in ("core", "auth", "audit", "referrals"):
        assert (ROOT / "service" / domain / "__init__.py").is_file(), domain
    assert (ROOT / "service" / "models.py").is_file()


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from api.deps import Caller\nimport service.core.database\n")
    assert imported_packages(module) >= {"api", "service"}


def test_the_check_sees_a_domain_imported_against_the_direction(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from service.referrals import intake\nfrom service import audit\nimport service.auth\n"
    )
    assert service_domains_imported(module) == {"referrals", "audit", "auth"}
