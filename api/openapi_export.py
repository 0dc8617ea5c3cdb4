"""Write or check the committed OpenAPI document: `python -m api.openapi_export [--check] PATH`.

The app is built with fixed, non-secret settings and the bundled default ruleset, whatever the
environment says, so the output depends on the code alone. Building it touches neither the
network nor a database (the engine connects lazily) and writes nothing but a throwaway public
key in a temporary directory.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

MAX_DIFF_LINES = 200


def build_document() -> dict[str, Any]:
    """The document the service serves at /openapi.json with the default ruleset."""
    from api.app import create_app
    from service.core.settings import Settings

    with tempfile.TemporaryDirectory(prefix="openapi-export-") as directory:
        # Only verification needs a key, and only a public one: a fresh throwaway will do.
        public_key = Path(directory) / "public.pem"
        key = ec.generate_private_key(ec.SECP256R1())
        public_key.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # Every setting that could change the document is passed explicitly: init arguments
        # win over REFERRAL_* variables, so a developer's environment cannot leak in.
        settings = Settings(
            env="production",
            database_url="sqlite+aiosqlite:///:memory:",
            jwt_public_key_file=public_key,
            jwt_jwks_url=None,
            jwt_hs256_secret=None,
            jwt_algorithms=("ES256",),
            ruleset_path=None,
            log_format="json",
        )
        app = create_app(settings)
        return app.openapi()


def render(document: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, UTF-8 as is, one trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def diff(committed: str, served: str, path: str) -> list[str]:
    return list(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            served.splitlines(keepends=True),
            fromfile=f"{path} (committed)",
            tofile=f"{path} (served by the app)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.openapi_export", description=__doc__)
    parser.add_argument("path", type=Path, help="where the committed document lives")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff when the file differs from what the app serves",
    )
    args = parser.parse_args(argv)
    served = render(build_document())
    path: Path = args.path

    if not args.check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(served, encoding="utf-8")
        print(f"wrote {path}")
        return 0

    try:
        committed = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        print(f"{path} does not exist: run `make openapi` and commit it.", file=sys.stderr)
        return 1
    if committed == served:
        print(f"{path} matches what the app serves.")
        return 0
    lines = diff(committed, served, str(path))
    changed = sum(1 for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    sys.stdout.writelines(lines[:MAX_DIFF_LINES])
    if len(lines) > MAX_DIFF_LINES:
        print(f"… {len(lines) - MAX_DIFF_LINES} more diff lines")
    print(
        f"\n{path} is out of date ({changed} changed lines): run `make openapi` and commit it.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
