"""Where the contract tests find the generators and linters, and how they run them.

The Python generator comes with the `dev` extra; the npm tools are pinned by
tests/contract/clients/package-lock.json and installed by `make test` (`npm ci`). A tool that
is missing fails its test with the command that installs it: it is never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi" / "openapi.json"
CLIENTS = ROOT / "tests" / "contract" / "clients"
NODE_BIN = CLIENTS / "node_modules" / ".bin"
VENV_BIN = Path(sys.executable).parent
TIMEOUT_SECONDS = 300


def tool(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.exists():
        install = (
            "make test (npm ci in tests/contract/clients)"
            if directory == NODE_BIN
            else ("pip install -e '.[dev]'")
        )
        pytest.fail(f"{name} is not installed at {path}: run {install}")
    return path


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The venv's bin first: openapi-python-client formats what it generates with ruff.
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
