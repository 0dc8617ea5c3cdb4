"""Spectral (spectral:oas and the OWASP API security ruleset) finds no error in the document.

Rules switched off are named in tests/contract/clients/spectral.yaml, each with its reason.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.contract.toolchain import CLIENTS, DOCUMENT, NODE_BIN, run, tool

RULESET = CLIENTS / "spectral.yaml"
ERROR = 0  # Spectral's severities: 0 error, 1 warning, 2 information, 3 hint


@pytest.mark.slow
def test_spectral_finds_no_error() -> None:
    spectral = tool(NODE_BIN, "spectral")
    result = run(
        [
            spectral,
            "lint",
            "--ruleset",
            RULESET,
            "--format",
            "json",
            "--quiet",
            "--fail-severity",
            "error",
            DOCUMENT,
        ],
        cwd=CLIENTS,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [
        f"{'/'.join(str(p) for p in f['path'])}: {f['code']}: {f['message']}"
        for f in findings
        if f["severity"] == ERROR
    ]
    assert not errors, "\n".join(errors)
    # Spectral exits non-zero on errors and on a ruleset it cannot load.
    assert result.returncode == 0, result.stderr


def test_every_rule_switched_off_says_why() -> None:
    text = RULESET.read_text(encoding="utf-8")
    blocks = re.split(r"\n\s*\n", text)
    switched_off = re.findall(r"^\s+([\w:.-]+): \"off\"$", text, flags=re.MULTILINE)
    assert switched_off, "expected the server-to-server CORS rule at least"
    for rule in switched_off:
        block = next(b for b in blocks if f'{rule}: "off"' in b)
        reason = [line for line in block.splitlines() if line.strip().startswith("#")]
        assert reason, f"{rule} is switched off without a reason"
