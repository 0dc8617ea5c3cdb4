"""A minimal ASGI app that names the worker answering (X-Pid), and whose /hang blocks its
event loop for good, as a request stuck in a blocking call would."""

from __future__ import annotations

import os
import time
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/hang":
        time.sleep(3600)  # blocks the loop: no await, nothing else runs in this worker
    headers = [(b"x-pid", str(os.getpid()).encode())]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
