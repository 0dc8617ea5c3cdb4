"""`referral-service worker`: a process of its own that sends what the outbox holds."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile

from tests.conftest import AUDIENCE, ISSUER, SigningKey
from tests.ops.servers import SERVICE, server_env
from tests.service.notifications.conftest import Hooks
from tests.webhooks import receiver


async def test_the_worker_delivers_and_stops_cleanly_on_sigterm(
    hooks: Hooks, database_url: str, signing_key: SigningKey
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env.update(
        REFERRAL_METRICS_PORT="0",
        REFERRAL_WEBHOOK_ALLOW_INSECURE="true",
        REFERRAL_WEBHOOK_POLL_SECONDS="0.1",
    )
    with receiver() as hook, tempfile.TemporaryFile() as log:
        made = await hooks.subscribe(hook.url)
        await hooks.publish("r-1")
        process = subprocess.Popen([SERVICE, "worker"], env=env, stdout=log, stderr=log)
        try:
            [message] = await hook.wait_for(1, timeout=30)
            # The receiver has the request before the worker has its answer: a SIGTERM now
            # would hand the delivery back (pending) instead of recording it.
            async with asyncio.timeout(30):  # a bound, not a timing assertion
                while [r.status for r in await hooks.deliveries()] != ["succeeded"]:
                    await asyncio.sleep(0.05)
        finally:
            process.terminate()
            code = await asyncio.to_thread(process.wait, 30)
        log.seek(0)
        output = log.read().decode()
    assert message.verify(made.secret)["data"]["id"] == "r-1"
    assert code == 0, output
    assert "webhook attempt" in output
    assert "ALLOW_INSECURE" in output  # the start-up warning
    [row] = await hooks.deliveries()
    assert row.status == "succeeded"
