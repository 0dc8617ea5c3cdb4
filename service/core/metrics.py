"""Prometheus metrics. Labels are route templates, methods, statuses and outcome codes only:
never an id, a path with values in it, or anything personal.

Served on a port of their own (REFERRAL_METRICS_PORT, default 9100), never on the API's: the
exposition needs no token and shows global referral counts and safeguarding alerts as they
happen, so it is for the cluster's monitoring only, never behind the public ingress.

With several uvicorn workers, each is its own process: set PROMETHEUS_MULTIPROC_DIR (the
`serve` command does when workers > 1) and the metrics server, started once in the `serve`
parent process, aggregates across them.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

REQUESTS = Counter(
    "referral_http_requests_total", "HTTP requests answered.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "referral_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REFERRALS = Counter(
    "referral_referrals_created_total",
    "Referrals stored, by outcome and priority.",
    ["outcome", "priority"],
)
SAFEGUARDING_ALERTS = Counter(
    "referral_safeguarding_alerts_total",
    "Referrals stored with a safeguarding alert (immediate risk reported): each needs the "
    "referrer to have contacted children's social care or the police.",
)
MOVES = Counter(
    "referral_moves_total",
    "Referral moves after intake, by action and from/to status.",
    ["action", "from_status", "to_status"],
)
TRIAGE_AGREEMENT = Counter(
    "referral_triage_decisions_total",
    "Clinicians' triage decisions, by the rules' outcome, the clinician's outcome and whether "
    "they agreed with the rules (agree) or overrode them (override): the ruleset's feedback.",
    ["rules_outcome", "outcome", "agreement"],
)
RATE_LIMIT_STORE_ERRORS = Counter(
    "referral_rate_limit_store_errors_total",
    "Rate limit checks that could not reach the counter store; those requests were allowed.",
)
AUDIT_HEAD_SEQ = Gauge(
    "referral_audit_head_seq",
    "Highest audit sequence number this service has written.",
    multiprocess_mode="max",
)
POOL_IN_USE = Gauge(
    "referral_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
WEBHOOK_ATTEMPTS = Counter(
    "referral_webhook_attempts_total",
    "Webhook delivery attempts, by result (success, timeout, connection_error, http_status, "
    "redirect, address_refused, protocol_error): never by organisation or URL.",
    ["result"],
)
WEBHOOK_OUTBOX_DEPTH = Gauge(
    "referral_webhook_outbox_depth",
    "Webhook deliveries still to make (pending or being delivered), as a dispatcher last saw.",
    multiprocess_mode="livemax",
)
WEBHOOK_FAILED = Gauge(
    "referral_webhook_failed_deliveries",
    "Webhook deliveries given up on (retries exhausted, 410, or missed while the subscription "
    "was disabled), kept for the retention, by event type: alert on safeguarding alerts.",
    ["type"],
    multiprocess_mode="livemax",
)
WEBHOOK_OLDEST_PENDING = Gauge(
    "referral_webhook_oldest_pending_seconds",
    "Age of the longest-waiting webhook delivery still to make (0 when none).",
    multiprocess_mode="livemax",
)

_highest_seq = 0


def observe_audit_seq(seq: int) -> None:
    global _highest_seq
    if seq > _highest_seq:
        _highest_seq = seq
        AUDIT_HEAD_SEQ.set(seq)


def track_pool(engine: AsyncEngine) -> None:
    """Count checked-out connections with pool events: no query at scrape time."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkout")
    def _out(*_args: Any) -> None:
        POOL_IN_USE.inc()

    @event.listens_for(pool, "checkin")
    def _in(*_args: Any) -> None:
        POOL_IN_USE.dec()


def registry() -> CollectorRegistry:
    """What to expose: this process's metrics, or every worker's when they share a directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        aggregate = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregate)  # type: ignore[no-untyped-call]
        return aggregate
    return REGISTRY


def render() -> tuple[bytes, str]:
    """The exposition text, aggregated across worker processes when they share a directory."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def serve(host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve the exposition on host:port from a daemon thread of this process (port 0 picks a
    free port: read it from server.server_port). Stop it with server.shutdown() and then
    server.server_close(), which closes the listening socket."""
    server, thread = start_http_server(port, addr=host, registry=registry())
    return server, thread
