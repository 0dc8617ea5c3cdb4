"""Real server processes: graceful shutdown, and two instances sharing one PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import AUDIENCE, ISSUER
from tests.factories import make_referral_body
from tests.ops.servers import running_server, server_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_stop_signal_lets_the_request_in_flight_finish_and_exits_0(
    database_url: str, signing_key, auth, workers: int, stop: signal.Signals
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    with running_server(env, workers=workers) as (base, process):
        body = httpx.Request("POST", "/", json=make_referral_body()).content
        released = asyncio.Event()

        async def slow_body():
            yield body[:100]
            await released.wait()  # the request is in flight while SIGTERM arrives
            yield body[100:]

        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            in_flight = asyncio.create_task(
                client.post(
                    "/v1/referrals",
                    content=slow_body(),
                    headers={**auth(), "Content-Type": "application/json"},
                )
            )
            await asyncio.sleep(0.5)
            process.send_signal(stop)
            await asyncio.sleep(0.5)
            assert process.poll() is None, "the server must wait for the request in flight"
            released.set()
            response = await in_flight
        assert response.status_code == 201
        assert await asyncio.to_thread(process.wait, 30) == 0


@pytest.mark.postgres_only
async def test_two_instances_share_idempotency_and_one_valid_audit_trail(
    database_url: str, signing_key, auth, tmp_path: Path
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    with running_server(env) as (first, _), running_server(env) as (second, _):
        async with httpx.AsyncClient(timeout=30) as client:

            async def submit(base: str, key: str) -> httpx.Response:
                return await client.post(
                    f"{base}/v1/referrals",
                    json=make_referral_body(),
                    headers={**auth(), "Idempotency-Key": key},
                )

            # Each of 10 keys is sent 4 times, alternating between the two instances.
            calls = [submit((first, second)[i % 2], f"key-{i % 10}") for i in range(40)]
            responses = await asyncio.gather(*calls)
            assert {r.status_code for r in responses} <= {201, 409}
            ids_by_key: dict[str, set[str]] = {}
            for i, response in enumerate(responses):
                if response.status_code == 201:
                    ids_by_key.setdefault(f"key-{i % 10}", set()).add(response.json()["id"])
            assert all(len(ids) == 1 for ids in ids_by_key.values())

            triage = auth(scopes=("referrals:triage",))
            listed = await client.get(f"{first}/v1/referrals?limit=100", headers=triage)
            assert len(listed.json()["items"]) == 10

            verified = await client.get(
                f"{second}/v1/audit-events/verify", headers=auth(scopes=("audit:read_all",))
            )
            assert verified.json()["valid"] is True
            # One event per 201 (created or replayed) and one for the listing; a 409 stores
            # nothing. The verification's own event is written after it has counted.
            created_or_replayed = sum(r.status_code == 201 for r in responses)
            assert verified.json()["events_checked"] == created_or_replayed + 1

    cli = subprocess.run(
        [str(Path(sys.executable).with_name("referral-service")), "audit", "verify", "--full"],
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr
