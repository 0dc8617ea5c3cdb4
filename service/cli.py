"""The `referral-service` command line: serve, worker, migrate, dev-token, example-referral,
audit."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eligibility import RulesetError, load_ruleset
from service.core.settings import ConfigurationError, Settings, load_settings
from service.referrals.examples import example_referral

DEFAULT_DEV_SCOPES = "referrals:submit referrals:read"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigurationError as exc:
        print(f"referral-service: {exc}", file=sys.stderr)
        return 2
    except RulesetError as exc:
        # The message names the file and every bad key; a traceback would only bury it.
        print(f"referral-service: REFERRAL_RULESET_PATH: {exc}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="referral-service", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    serve = commands.add_parser("serve", help="run the HTTP service (uvicorn, api.main:app)")
    serve.add_argument("--host", help="default REFERRAL_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default REFERRAL_PORT (8000)")
    serve.add_argument("--workers", type=int, help="default REFERRAL_WORKERS (1)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker",
        help="deliver webhooks from the outbox (with REFERRAL_WEBHOOK_DISPATCHER=false on the API)",
    )
    worker.set_defaults(handler=_worker)

    migrate = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser("dev-token", help="print a token signed with the local dev key")
    token.add_argument("--org", default="RX1", help="organisation code (default RX1)")
    token.add_argument("--sub", default="dev-client", help="subject (default dev-client)")
    token.add_argument("--scope", default=DEFAULT_DEV_SCOPES, help="space-separated scopes")
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="seconds until it expires (at most REFERRAL_JWT_MAX_LIFETIME_SECONDS)",
    )
    token.set_defaults(handler=_dev_token)

    example = commands.add_parser("example-referral", help="print a valid referral body")
    example.set_defaults(handler=_example_referral)

    audit_cmd = commands.add_parser("audit", help="verify the audit trail or print its head")
    audit_sub = audit_cmd.add_subparsers(required=True, metavar="action")
    verify = audit_sub.add_parser(
        "verify",
        help="exit 1 and name the first bad event if invalid",
        description="Verify the audit chains. Without --full (and --anchor), only the events "
        "appended since each chain's last verified checkpoint are checked, as the HTTP endpoint "
        "does. Either way the checkpoints of the chains found clean move forward, unless "
        "--read-only.",
    )
    verify.add_argument(
        "--full",
        action="store_true",
        help="re-derive every chain from its first event and check every checkpoint against "
        "its event (the auditor's run: trusts nothing an earlier verification recorded)",
    )
    verify.add_argument(
        "--anchor", type=Path, help="a head saved earlier by `audit head` (implies --full)"
    )
    verify.add_argument(
        "--read-only",
        action="store_true",
        help="record no checkpoint: for an auditor's role that may only read (SELECT)",
    )
    verify.set_defaults(handler=_audit_verify)
    head = audit_sub.add_parser("head", help="print the head to anchor outside the database")
    head.set_defaults(handler=_audit_head)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from service.core import workers as serving
    from service.core.logs import configure_logging

    settings = load_settings()
    configure_logging(settings)
    # Uvicorn builds the app from its import string, in a worker: a bad ruleset found there
    # ends in a traceback. Loading it here first turns that into one line (and exit status 2).
    if settings.ruleset_path is not None:
        load_ruleset(settings.ruleset_path)
    workers = args.workers or settings.workers
    host = args.host or settings.host
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker is a process: metrics must be shared through files to add up.
        metrics_dir = tempfile.mkdtemp(prefix="referral-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    _raise_fd_limit()
    # Started once, here in the parent: with workers it reads every worker's files; with one
    # worker the app runs in this very process, so its own registry is the whole story.
    metrics_server = _start_metrics(host, settings.metrics_port)
    # Uvicorn re-raises the SIGTERM it handled once the graceful shutdown is done, so that the
    # exit status says "killed". For an orchestrator a SIGTERM is the normal way to stop us:
    # after in-flight requests have finished, that is a clean exit (0).
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        status = serving.run(
            {
                "app": "api.main:app",  # by import string, so that `service` never imports `api`
                "access_log": False,
                "log_config": None,
                "proxy_headers": True,
                "server_header": False,
                "timeout_graceful_shutdown": _GRACE_S,
                # What one worker holds: beyond this many connections uvicorn answers 503
                # instead of opening file descriptors until accept() fails for everyone.
                "limit_concurrency": settings.max_connections,
                "timeout_keep_alive": settings.keep_alive_seconds,
            },
            host=host,
            port=args.port or settings.port,
            workers=workers,
            # Workers finish their requests within uvicorn's grace, then exit: a margin on top.
            grace_s=_GRACE_S + 5,
        )
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        if metrics_dir is not None:
            # Ours alone (a directory set by the deployer is theirs): one per start otherwise
            # piles up in the temporary directory.
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


_GRACE_S = 25


def _raise_fd_limit() -> None:
    """Every connection costs a file descriptor: take the soft limit up to the hard one (the
    default soft limit, often 1,024, is far below what the concurrency limit allows)."""
    import logging
    import resource

    logger = logging.getLogger("service.serve")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        logger.info("file descriptor limit", extra={"soft": soft, "hard": hard})
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        # An unlimited hard limit may exceed the kernel's nr_open: keep what we have.
        logger.warning(
            "file descriptor limit not raised",
            extra={"soft": soft, "hard": hard, "error": type(exc).__name__},
        )
        return
    logger.info("file descriptor limit raised", extra={"from": soft, "soft": hard, "hard": hard})


def _start_metrics(host: str, port: int) -> Any:
    if port == 0:
        return None
    from service.core import metrics

    try:
        server, _thread = metrics.serve(host, port)
    except OSError as exc:
        raise ConfigurationError(
            f"REFERRAL_METRICS_PORT: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    return server


def _worker(_args: argparse.Namespace) -> int:
    """Run a webhook dispatcher until SIGTERM or SIGINT; any number may share a PostgreSQL."""
    from service.audit.refusals import record_refusal
    from service.core.database import create_engine, make_sessionmaker
    from service.core.logs import configure_logging
    from service.core.unit_of_work import UnitOfWork
    from service.notifications import dispatcher, outbox

    settings = load_settings()
    configure_logging(settings)
    metrics_server = _start_metrics(settings.host, settings.metrics_port)

    async def run() -> None:
        engine = create_engine(settings)
        units = UnitOfWork(
            make_sessionmaker(engine), record_refusal=record_refusal, listeners=(outbox.write,)
        )
        webhooks = dispatcher.from_settings(settings, units)
        task = asyncio.create_task(webhooks.run())
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        try:
            await asyncio.wait(
                {task, asyncio.create_task(stopped.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            await webhooks.shut_down(task)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from service.core.database import create_engine, refusal_cause
    from service.core.migrate import head_revision, upgrade

    settings = load_settings()

    async def run() -> None:
        engine = create_engine(settings)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        cause = refusal_cause(exc)
        if cause is None:
            raise
        # Not an outage but a setting to fix; the driver's message would name the role.
        raise ConfigurationError(
            f"REFERRAL_DATABASE_URL: the database refused the connection: {cause}"
        ) from None
    print(f"database at revision {head_revision()}")
    return 0


def _dev_token(args: argparse.Namespace) -> int:
    from service.auth.devkeys import ensure_dev_keypair, mint_token

    settings = _dev_settings()
    # A token the service would refuse is no use to anyone: say so now, not at the first 401.
    if not 0 < args.ttl <= settings.jwt_max_lifetime_seconds:
        raise ConfigurationError(
            f"--ttl {args.ttl}: must be from 1 to REFERRAL_JWT_MAX_LIFETIME_SECONDS "
            f"({settings.jwt_max_lifetime_seconds}), the longest lifetime the service accepts"
        )
    private_path, _ = ensure_dev_keypair(settings.dev_key_dir)
    print(
        mint_token(
            private_key_pem=private_path.read_bytes(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            sub=args.sub,
            org=args.org,
            scopes=args.scope.split(),
            ttl_seconds=args.ttl,
        )
    )
    return 0


def _dev_settings() -> Settings:
    # The dev key is trusted only in development; minting needs no other setting.
    try:
        return load_settings()
    except ConfigurationError:
        return load_settings(env="development")


def _example_referral(_args: argparse.Namespace) -> int:
    print(json.dumps(example_referral(datetime.now(UTC).date()), indent=2))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from service.audit import chain, checkpoints, verification

    anchor = None
    if args.anchor:
        saved = json.loads(args.anchor.read_text())
        anchor = [chain.ChainHead(**h) for h in saved["heads"]]
    # An anchor may pin positions before a checkpoint: only a full run reads them.
    full = args.full or anchor is not None

    async def run(session: Any) -> verification.Verification:
        result = await verification.verify(session, anchor, incremental=not full)
        if not args.read_only:
            await checkpoints.advance(await session.connection(), result.reached, datetime.now(UTC))
        return result

    result = _with_session(run)
    print(json.dumps(result.to_dict(), indent=2))
    if not result.valid:
        print(
            f"audit trail INVALID at seq {result.first_invalid_seq}: {result.problem}",
            file=sys.stderr,
        )
        return 1
    if not full:
        # Said every time, so that nobody takes an incremental run for the auditor's one.
        print(
            f"checked the {result.events_checked} events after the verified checkpoints; the "
            f"{result.events_before_checkpoints} before them were not re-checked "
            "(--full re-derives the whole trail)",
            file=sys.stderr,
        )
    return 0


def _audit_head(_args: argparse.Namespace) -> int:
    from service.audit import chain

    async def run(session: Any) -> dict[str, Any]:
        heads = await chain.read_heads(session)
        return {
            "head_hash": chain.head_digest(heads),
            "heads": [h.to_dict() for h in heads],
            "at": datetime.now(UTC).isoformat(),
        }

    print(json.dumps(_with_session(run), indent=2))
    return 0


def _with_session(work: Any) -> Any:
    from service.audit.refusals import record_refusal
    from service.core.database import create_engine, make_sessionmaker
    from service.core.unit_of_work import UnitOfWork

    settings = load_settings()

    async def run() -> Any:
        engine = create_engine(settings)
        units = UnitOfWork(make_sessionmaker(engine), record_refusal=record_refusal)
        try:
            async with units.begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except Exception as exc:
        cause = _connection_failure(exc)
        if cause is None:
            raise
        raise ConfigurationError(f"REFERRAL_DATABASE_URL: {cause}") from None


def _connection_failure(error: BaseException) -> str | None:
    """One line for a database that refused or could not be reached; None for anything else
    (a bug should still show its traceback)."""
    from service.core.database import refusal_cause

    cause = refusal_cause(error)
    if cause is not None:
        return f"the database refused the connection: {cause}"
    for candidate in (error, getattr(error, "orig", None), error.__cause__):
        if isinstance(candidate, (OSError, TimeoutError)):
            # The class name, not the message: the message may quote the host and port, and
            # says nothing a deployer needs beyond which kind of failure it was.
            return f"cannot connect to the database ({type(candidate).__name__})"
    return None


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
