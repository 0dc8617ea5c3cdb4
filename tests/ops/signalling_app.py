"""A minimal ASGI app whose import sends its own process the signal named in
SIGNAL_AT_IMPORT (e.g. SIGTERM, SIGKILL): a stop asked for, or a death, during start-up."""

from __future__ import annotations

import os
import signal
from typing import Any

_at_import = os.environ.get("SIGNAL_AT_IMPORT")
if _at_import:
    os.kill(os.getpid(), getattr(signal, _at_import))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
