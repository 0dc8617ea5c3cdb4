"""A small HTTP/1.1 load generator on raw asyncio protocols: closed loop and open loop.

Why not an HTTP client library: on a 2-core machine the generator competes with the server for
CPU, so each request must cost it as little as possible. A request here is one pre-built byte
string written to a kept-alive connection, and a response is parsed only as far as its status
line and length.

Closed loop (`run_closed`): `connections` workers send back to back for `duration` seconds; the
completions per second are the capacity.

Open loop (`run_open`): request *i* is scheduled at `start + i / rate`, whatever happened to the
requests before it, and its latency is timed from that scheduled time, not from when a
connection became free to send it. So a server that stalls is charged for every request that
queued behind the stall (no coordinated omission). Requests still unanswered at the hard
deadline are *censored*: they count with the time they had waited so far, a lower bound, and the
result says how many there were.

Every loop is bounded by a request count and a hard deadline, and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# A run never waits longer than this for a connection to open.
CONNECT_TIMEOUT_S = 5.0


# --- percentiles and scheduling (pure, tested in tests/bench) -------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values: the smallest value that at least
    p% of the values are less than or equal to. NaN for no values."""
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    # round() first: 99.9 / 100 * 1000 is 999.0000000000001 in floating point, not 999.
    rank = max(1, math.ceil(round(p / 100 * n, 9)))
    return float(sorted_values[rank - 1])


def summarise(
    latencies_s: Sequence[float], ps: Sequence[float] = (50, 90, 99, 99.9)
) -> dict[str, float]:
    """Percentiles (and max and mean) of latencies in seconds, as milliseconds."""
    ordered = sorted(latencies_s)
    out = {f"p{p:g}_ms": percentile(ordered, p) * 1000 for p in ps}
    out["max_ms"] = (ordered[-1] * 1000) if ordered else math.nan
    out["mean_ms"] = (sum(ordered) / len(ordered) * 1000) if ordered else math.nan
    return out


def scheduled_time(start: float, rate: float, index: int) -> float:
    """When request `index` (from 0) of a constant-rate schedule is due."""
    return start + index / rate


def schedule_size(rate: float, duration: float) -> int:
    """How many requests a constant-rate schedule sends in `duration` seconds."""
    if rate <= 0 or duration <= 0:
        return 0
    return max(1, math.floor(rate * duration + 1e-9))


def censored_latencies(
    start: float, rate: float, first_unsent: int, total: int, deadline: float
) -> list[float]:
    """Lower-bound latencies of the requests never sent before the deadline: their wait so far."""
    return [max(0.0, deadline - scheduled_time(start, rate, i)) for i in range(first_unsent, total)]


# --- HTTP/1.1 over an asyncio protocol --------------------------------------------------------


class ResponseError(Exception):
    """The connection failed or the response could not be parsed."""


def parse_response(buf: bytearray) -> tuple[int, bool, bytes, int] | None:
    """Parse one response from the start of `buf`: (status, close, body, bytes consumed), or
    None when it is not complete yet. Handles Content-Length and chunked bodies."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    if not head.startswith(b"http/1."):
        raise ResponseError("not an HTTP/1.x response")
    status = int(head[9:12])
    close = b"\r\nconnection: close" in head
    start = end + 4
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 17)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
        total = start + length
        if len(buf) < total:
            return None
        return status, close, bytes(buf[start:total]), total
    if b"\r\ntransfer-encoding: chunked" in head:
        body = bytearray()
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            chunk_start = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                return status, close, bytes(body), trailer_end + 4
            if len(buf) < chunk_start + size + 2:
                return None
            body += buf[chunk_start : chunk_start + size]
            pos = chunk_start + size + 2
    if status in (204, 304) or 100 <= status < 200:
        return status, close, b"", start
    # No length: the body runs to the end of the connection (not used by our servers).
    return status, True, bytes(buf[start:]), len(buf)


class Connection(asyncio.Protocol):
    """One kept-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = parse_response(self.buffer)
        except (ResponseError, ValueError) as exc:
            self.waiter = None
            waiter.set_exception(ResponseError(str(exc)))
            return
        if parsed is not None:
            status, close, body, used = parsed
            del self.buffer[:used]
            self.waiter = None
            waiter.set_result((status, close, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ResponseError("connection lost"))

    async def request(self, data: bytes) -> tuple[int, bool, bytes]:
        if self.closed or self.transport is None:
            raise ResponseError("connection closed")
        waiter: asyncio.Future[tuple[int, bool, bytes]] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.transport.write(data)
        return await waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        _, protocol = await loop.create_connection(Connection, host, port)
    return protocol


# --- the requests ---------------------------------------------------------------------------


class RequestFactory:
    """Pre-built POST requests: tokens and bodies rotate, each request gets a fresh
    Idempotency-Key. Counts every request it makes across a whole run."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        tokens: Sequence[str],
        bodies: Sequence[bytes],
        key_prefix: str,
    ) -> None:
        if not tokens or not bodies:
            raise ValueError("need at least one token and one body")
        self._heads = [
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {t}\r\n"
                "Idempotency-Key: "
            ).encode()
            for t in tokens
        ]
        self._tails = [f"\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
        self._key_prefix = key_prefix.encode()
        self.made = 0

    def next(self) -> bytes:
        n = self.made
        self.made = n + 1
        return b"".join(
            (
                self._heads[n % len(self._heads)],
                self._key_prefix,
                str(n).encode(),
                self._tails[n % len(self._tails)],
            )
        )


def get_request(host: str, port: int, path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode()


class Rotation:
    """A fixed list of pre-built requests (reads), sent in turn."""

    def __init__(self, requests: Sequence[bytes]) -> None:
        if not requests:
            raise ValueError("need at least one request")
        self._requests = list(requests)
        self.made = 0

    def next(self) -> bytes:
        n = self.made
        self.made = n + 1
        return self._requests[n % len(self._requests)]


# --- results ----------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class PhaseResult:
    mode: str  # "closed" or "open"
    wall_s: float
    sent: int = 0
    completed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    censored: int = 0
    unknown: int = 0  # sent, but no answer ever came: the server may or may not have acted
    latencies: array = field(default_factory=lambda: array("d"))
    send_lag: array = field(default_factory=lambda: array("d"))  # open loop: send - scheduled
    generator_cpu_s: float = 0.0
    target_rate: float | None = None
    connections: int = 0
    sample_error: str | None = None

    @property
    def rps(self) -> float:
        """Completed responses per second of the phase's wall time."""
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def generator_cpu_pct(self) -> float:
        return 100 * self.generator_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def generator_us_per_request(self) -> float:
        return 1e6 * self.generator_cpu_s / self.sent if self.sent else math.nan

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "connections": self.connections,
            "wall_s": round(self.wall_s, 3),
            "sent": self.sent,
            "completed": self.completed,
            "rps": round(self.rps, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "censored": self.censored,
            "unknown_outcome": self.unknown,
            "generator_cpu_s": round(self.generator_cpu_s, 3),
            "generator_cpu_pct": round(self.generator_cpu_pct, 1),
            "generator_us_per_request": round(self.generator_us_per_request, 1),
        }
        if self.target_rate is not None:
            out["target_rps"] = round(self.target_rate, 1)
        out.update({k: round(v, 3) for k, v in summarise(self.latencies).items()})
        if self.send_lag:
            lag = sorted(self.send_lag)
            out["send_lag_p99_ms"] = round(percentile(lag, 99) * 1000, 3)
        if self.sample_error:
            out["sample_error"] = self.sample_error
        return out


# --- closed loop ------------------------------------------------------------------------------


async def run_closed(
    host: str,
    port: int,
    make_request: Callable[[], bytes],
    *,
    connections: int,
    duration: float,
    max_requests: int,
    grace: float = 5.0,
) -> PhaseResult:
    """Each connection sends back to back until `duration` or `max_requests`; any request still
    unanswered `grace` seconds after the end is abandoned (counted as an error)."""
    result = PhaseResult("closed", wall_s=0.0, connections=connections)
    perf = time.perf_counter
    budget = [max_requests]
    in_flight = [0]  # sent and not yet answered
    cpu0 = _cpu_seconds()
    start = perf()
    end = start + duration

    async def worker() -> None:
        conn: Connection | None = None
        try:
            while perf() < end and budget[0] > 0:
                budget[0] -= 1
                if conn is None or conn.closed:
                    conn = await connect(host, port)
                data = make_request()
                result.sent += 1
                t0 = perf()
                in_flight[0] += 1
                try:
                    status, close, body = await conn.request(data)
                except ResponseError as exc:
                    result.errors += 1
                    result.unknown += 1
                    result.sample_error = result.sample_error or str(exc)
                    conn.close()
                    continue
                finally:
                    in_flight[0] -= 1
                result.latencies.append(perf() - t0)
                result.completed += 1
                result.statuses[status] += 1
                if status >= 300 and result.sample_error is None:
                    result.sample_error = f"{status}: {body[:300]!r}"
                if close:
                    conn.close()
        finally:
            if conn is not None:
                conn.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=duration + grace)
    for task in pending:
        task.cancel()
        result.errors += 1
    abandoned = in_flight[0]
    await asyncio.gather(*tasks, return_exceptions=True)
    result.unknown += abandoned
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            result.errors += 1
            result.sample_error = result.sample_error or repr(task.exception())
    result.wall_s = min(perf(), end + grace) - start
    # Throughput over the nominal window: the last responses land just after `end`.
    result.wall_s = max(result.wall_s, duration) if result.completed else result.wall_s
    result.generator_cpu_s = _cpu_seconds() - cpu0
    return result


# --- open loop --------------------------------------------------------------------------------


async def run_open(
    host: str,
    port: int,
    make_request: Callable[[], bytes],
    *,
    rate: float,
    duration: float,
    connections: int,
    drain: float = 2.0,
    grace: float = 5.0,
) -> PhaseResult:
    """Send `rate` requests per second for `duration` seconds over at most `connections`
    connections, timing each from its scheduled send time.

    A request that waited for a free connection is still sent, until `drain` seconds after
    the schedule ends; what was due but never sent by then is censored (counted with its wait
    so far). Requests in flight then get `grace` more seconds to be answered (their latencies
    are real), and whatever is still unanswered after that is censored too, its outcome
    unknown."""
    total = schedule_size(rate, duration)
    result = PhaseResult("open", wall_s=0.0, target_rate=rate, connections=connections)
    perf = time.perf_counter
    cpu0 = _cpu_seconds()
    start = perf() + 0.05  # a moment for every worker to connect first
    send_deadline = start + duration + drain
    next_index = [0]
    # worker id -> (scheduled time, sent yet?) of the request it has claimed
    claimed: dict[int, tuple[float, bool]] = {}

    async def worker(wid: int) -> None:
        conn = await connect(host, port)
        try:
            while True:
                i = next_index[0]
                if i >= total:
                    return
                next_index[0] = i + 1
                due = scheduled_time(start, rate, i)
                claimed[wid] = (due, False)  # from here on: answered or censored
                wait = due - perf()
                if wait > 0:
                    await asyncio.sleep(wait)
                if perf() >= send_deadline:
                    return  # too late to send: censored below, with the unclaimed
                if conn.closed:
                    conn = await connect(host, port)
                data = make_request()
                sent_at = perf()
                claimed[wid] = (due, True)
                result.sent += 1
                result.send_lag.append(max(0.0, sent_at - due))
                try:
                    status, close, body = await conn.request(data)
                except ResponseError as exc:
                    del claimed[wid]
                    result.errors += 1
                    result.unknown += 1
                    result.sample_error = result.sample_error or str(exc)
                    conn.close()
                    continue
                del claimed[wid]
                result.latencies.append(perf() - due)
                result.completed += 1
                result.statuses[status] += 1
                if status >= 300 and result.sample_error is None:
                    result.sample_error = f"{status}: {body[:300]!r}"
                if close:
                    conn.close()
        finally:
            conn.close()

    tasks = [asyncio.ensure_future(worker(w)) for w in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, send_deadline + grace - perf()))
    stopped_at = perf()
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Censor what was claimed but not answered, and what was due but never claimed.
    for due, sent in claimed.values():
        if sent:
            result.latencies.append(max(0.0, stopped_at - due))
            result.unknown += 1
        else:
            result.latencies.append(max(0.0, min(stopped_at, send_deadline) - due))
        result.censored += 1
    unsent = censored_latencies(start, rate, next_index[0], total, min(stopped_at, send_deadline))
    for lower_bound in unsent:
        result.latencies.append(lower_bound)
    result.censored += len(unsent)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            result.errors += 1
            result.sample_error = result.sample_error or repr(task.exception())
    result.wall_s = max(duration, min(stopped_at, send_deadline) - start)
    result.generator_cpu_s = _cpu_seconds() - cpu0
    return result


# --- small helpers for the orchestrator -------------------------------------------------------


async def probe(host: str, port: int, path: str, timeout: float) -> int | None:
    """GET `path` once; the status, or None if nothing answered within `timeout`."""
    with contextlib.suppress(OSError, ResponseError, TimeoutError):
        async with asyncio.timeout(timeout):
            conn = await connect(host, port)
            try:
                status, _, _ = await conn.request(get_request(host, port, path))
                return status
            finally:
                conn.close()
    return None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (uvicorn[standard] brings it): a cheaper loop for the generator."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)
