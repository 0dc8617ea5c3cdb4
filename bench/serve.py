"""Start E0 or E1 with exactly the uvicorn settings `referral-service serve` gives E2.

`python -m bench.serve ceiling|naive --port P [--workers 2]`
"""

from __future__ import annotations

import argparse

from service.core import workers

APPS = {
    "ceiling": "bench.apps.ceiling:create_app",
    "naive": "bench.apps.naive:create_app",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    # The same keyword arguments and the same workers (one SO_REUSEPORT socket each, start-up
    # heap frozen) as service/cli.py's _serve; only the app (a factory) differs.
    raise SystemExit(
        workers.run(
            {
                "app": APPS[args.app],
                "factory": True,
                "access_log": False,
                "log_config": None,
                "proxy_headers": True,
                "server_header": False,
                "timeout_graceful_shutdown": 25,
            },
            host=args.host,
            port=args.port,
            workers=args.workers,
            grace_s=30,
        )
    )


if __name__ == "__main__":
    main()
