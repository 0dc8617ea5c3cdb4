"""Start real `referral-service serve` processes for tests that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVICE = str(Path(sys.executable).with_name("referral-service"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str, public_key: Path, issuer: str, audience: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_")}
    env.update(
        {
            "REFERRAL_ENV": "production",
            "REFERRAL_DATABASE_URL": database_url,
            "REFERRAL_JWT_PUBLIC_KEY_FILE": str(public_key),
            "REFERRAL_JWT_ISSUER": issuer,
            "REFERRAL_JWT_AUDIENCE": audience,
            "REFERRAL_JWT_ALGORITHMS": "RS256",
            "REFERRAL_LOG_FORMAT": "json",
        }
    )
    return env


@contextmanager
def running_server(
    env: dict[str, str],
    *,
    workers: int = 1,
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base_url, process) once /health/ready answers 200; stop it afterwards.

    The metrics server is off (REFERRAL_METRICS_PORT=0) unless `env` names a port: servers
    started side by side would otherwise all claim the default one."""
    port = free_port()
    env = {"REFERRAL_METRICS_PORT": "0", **env}
    # A file, not a pipe: a chatty server must never block on a full pipe buffer.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [SERVICE, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited early:\n{log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become ready in 30 s")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
