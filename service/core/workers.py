"""Running uvicorn: one process, or N worker processes that each listen on their own socket.

Uvicorn's own multi-worker mode hands every worker one shared listening socket: whichever
worker wakes first accepts, and since clients keep connections alive, one busy worker can end
up holding most of them while another idles (the benchmark saw the framework ceiling drop by a
third and the intake tail grow tenfold when that happened). Here each worker binds its own
socket to the same address with SO_REUSEPORT, and the Linux kernel spreads new connections
evenly over the workers' sockets.

The supervisor (this process) reserves the address first with a socket of its own that is
bound and never listened on, so it never takes a connection; then it starts the workers,
forwards SIGTERM/SIGINT to them for uvicorn's graceful shutdown, and exits 0 once they have
finished their requests. A worker that dies on its own is logged with its exit status and
replaced, as uvicorn's supervisor does; one that fails before it could serve (a bad setting,
an address in use) stops the whole instance with status 3, since a replacement would fail the
same way. So does a worker that dies by itself within seconds of its start five times in a
minute (killed while importing the app, say): its replacements are started after a growing
pause (1, 2, 4, 8 s), then the instance gives up with status 3 instead of spinning for ever.

A worker whose event loop stops turning (a request stuck in a blocking call, a deadlock) is
killed and replaced: each worker stamps a heartbeat shared with the supervisor from uvicorn's
tick, every 0.1 s on its event loop, and the supervisor kills one that has been silent for
HUNG_AFTER_S. Its sibling would otherwise go on answering the health checks, so nothing else
would notice that every connection the kernel hands the stuck one waits for ever.

A worker watches its supervisor: if the supervisor dies without stopping it (`kill -9`, an
out-of-memory kill), the worker drains its requests and exits instead of serving on, orphaned,
for ever (uvicorn's own workers do not notice that their parent is gone).

Each worker collects and freezes its start-up heap (`gc.freeze()`) once the app is imported:
the collector then never scans the ~100 MB of modules, schemas and compiled statements again,
so a full collection costs milliseconds instead of a stall of 100 ms or more under load.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any

from service.core.settings import ConfigurationError

logger = logging.getLogger("service.serve")

STARTUP_FAILURE = 3  # uvicorn's exit status for a worker that could not start serving
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A worker that dies within _EARLY_S of its start died starting up; _MAX_EARLY_DEATHS of those
# within _EARLY_WINDOW_S is a crash loop.
_EARLY_S = 10.0
_EARLY_WINDOW_S = 60.0
_MAX_EARLY_DEATHS = 5
# A serving worker whose loop has not ticked for this long is stuck: no request of ours blocks
# the loop (database and HTTP calls are awaited, statements time out within 15 s), so this is
# far beyond anything that can happen while it works.
HUNG_AFTER_S = 30.0


def freeze_start_up_heap() -> None:
    """Move everything alive now out of the collector's reach (imports, app, statements)."""
    gc.collect()
    gc.freeze()


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other SO_REUSEPORT sockets may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Record SIGTERM/SIGINT while the app is imported (before uvicorn listens for them), so
    that a stop asked for during start-up is not lost: the caller then does not serve."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _f: received.append(signum)) for s in _SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _serve(server: Any, sockets: list[socket.socket] | None = None) -> None:
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        # Uvicorn re-raises the SIGINT it handled after its graceful shutdown: that was a
        # stop asked for (Ctrl-C), finished like a SIGTERM, as `uvicorn.run` treats it.
        pass


def run_single(options: dict[str, Any]) -> int:
    """One process: uvicorn serves here (options are uvicorn.Config's keyword arguments)."""
    import uvicorn

    config = uvicorn.Config(**options)
    server = uvicorn.Server(config)
    with _stop_requests() as received:
        config.load()
    if received:
        return 0
    freeze_start_up_heap()
    _serve(server)
    return 0 if server.started else STARTUP_FAILURE


def _watch_parent() -> None:  # pragma: no cover - child
    """Stop this worker (gracefully: uvicorn handles SIGTERM) once its supervisor is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        # The sentinel is the read end of a pipe whose write end only the supervisor holds:
        # it becomes readable when the supervisor exits, however it exits.
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-supervisor", daemon=True).start()


def _beating_server(config: Any, heartbeat: Any) -> Any:  # pragma: no cover - child
    """A uvicorn server that stamps `heartbeat` (a shared double) with the monotonic clock at
    each tick of its main loop, which runs on the event loop: a stuck loop stops stamping."""
    import uvicorn

    class BeatingServer(uvicorn.Server):
        async def on_tick(self, counter: int) -> bool:
            heartbeat.value = time.monotonic()
            return await super().on_tick(counter)

    return BeatingServer(config)


def _worker(
    options: dict[str, Any], host: str, port: int, heartbeat: Any
) -> None:  # pragma: no cover - child
    import uvicorn

    _watch_parent()
    log = logging.getLogger("service.serve")
    try:
        sock = reuse_port_socket(host, port)
    except OSError as exc:
        log.error("worker cannot listen", extra={"host": host, "port": port, "error": exc.strerror})
        sys.exit(STARTUP_FAILURE)
    config = uvicorn.Config(**options, host=host, port=port)
    server = _beating_server(config, heartbeat)
    try:
        with _stop_requests() as received:
            config.load()
    except Exception as exc:
        # The app could not even be built (a key file that does not parse, say): every
        # replacement would fail the same way, so say so with the status that stops them all.
        log.exception("worker cannot load the app", extra={"error": type(exc).__name__})
        sys.exit(STARTUP_FAILURE)
    if received:
        return
    freeze_start_up_heap()
    _serve(server, [sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Starts `workers` processes serving `options` on host:port; see the module docstring."""

    def __init__(
        self,
        options: dict[str, Any],
        *,
        host: str,
        port: int,
        workers: int,
        grace_s: float,
        hung_after_s: float = HUNG_AFTER_S,
    ) -> None:
        self.options = options
        self.hung_after_s = hung_after_s
        # index -> its current worker's last tick (monotonic; 0 until it serves)
        self.heartbeats: dict[int, Any] = {}
        self.host = host
        self.port = port
        self.count = workers
        self.grace_s = grace_s
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.started_at: dict[int, float] = {}  # index -> when its current worker started
        self.early_deaths: collections.deque[float] = collections.deque()
        self.stopping = False

    def _start(self, index: int) -> BaseProcess:
        # One writer (the worker) and one reader (here), a double written whole: no lock needed.
        heartbeat = self.context.Value("d", 0.0, lock=False)
        self.heartbeats[index] = heartbeat
        process = self.context.Process(
            target=_worker, args=(self.options, self.host, self.port, heartbeat), daemon=False
        )
        process.start()
        self.started_at[index] = time.monotonic()
        return process

    def _reserve(self) -> socket.socket:
        """Reserve the address (and learn the port when 0 was asked for); never listened on.

        Bound once without SO_REUSEPORT first: an address some other server already holds,
        another instance of this service included, is refused as it always was, instead of
        being silently shared with it."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((self.host, self.port))
            self.port = probe.getsockname()[1]
        return reuse_port_socket(self.host, self.port)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        try:
            reserved = self._reserve()
        except OSError as exc:
            logger.error(
                "cannot listen", extra={"host": self.host, "port": self.port, "error": exc.strerror}
            )
            return STARTUP_FAILURE
        previous = {s: signal.signal(s, self._on_signal) for s in _SIGNALS}
        try:
            self.processes = [self._start(index) for index in range(self.count)]
            logger.info(
                "workers started",
                extra={
                    "workers": [p.pid for p in self.processes],
                    "host": self.host,
                    "port": self.port,
                },
            )
            status = self._watch()
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)
            reserved.close()
        return status

    def _watch(self) -> int:
        while not self.stopping:
            multiprocessing.connection.wait([p.sentinel for p in self.processes], timeout=0.5)
            self._kill_the_stuck()
            for index, process in enumerate(self.processes):
                if self.stopping or process.is_alive():
                    continue
                code = process.exitcode
                _forget_metrics(process.pid)
                if code == STARTUP_FAILURE:
                    logger.error("worker failed to start; stopping", extra={"pid": process.pid})
                    return STARTUP_FAILURE
                logger.error(
                    "worker died; starting another",
                    extra={"pid": process.pid, "exit_status": code},
                )
                if not self._pause_after_early_death(index):
                    logger.error(
                        "workers keep dying as they start; stopping",
                        extra={"deaths": len(self.early_deaths), "within_s": _EARLY_WINDOW_S},
                    )
                    return STARTUP_FAILURE
                if self.stopping:
                    break
                self.processes[index] = self._start(index)
        return 0

    def _kill_the_stuck(self) -> None:
        """Kill a serving worker whose loop has been silent too long; it is then replaced like
        any worker that dies (a stuck loop cannot drain, so it is not asked to)."""
        now = time.monotonic()
        for index, process in enumerate(self.processes):
            last = self.heartbeats[index].value
            if last and now - last > self.hung_after_s and process.is_alive():
                logger.error(
                    "worker stopped answering; killing it",
                    extra={"pid": process.pid, "silent_s": round(now - last, 1)},
                )
                process.kill()
                process.join(5)

    def _pause_after_early_death(self, index: int) -> bool:
        """Back off before replacing a worker that died starting up; False: a crash loop."""
        now = time.monotonic()
        if now - self.started_at[index] >= _EARLY_S:
            return True
        self.early_deaths.append(now)
        while self.early_deaths and now - self.early_deaths[0] > _EARLY_WINDOW_S:
            self.early_deaths.popleft()
        if len(self.early_deaths) >= _MAX_EARLY_DEATHS:
            return False
        deadline = now + 2.0 ** (len(self.early_deaths) - 1)
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        return True

    def _stop_all(self) -> None:
        """SIGTERM every worker (uvicorn drains its requests), then wait; kill what outlives
        the grace period."""
        alive = [p for p in self.processes if p.is_alive()]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                logger.error("worker did not stop in time; killing it", extra={"pid": process.pid})
                process.kill()
                process.join(5)
            _forget_metrics(process.pid)


def _forget_metrics(pid: int | None) -> None:
    # Live gauges of a process that is gone must stop counting in the aggregate.
    if pid is None or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def run(options: dict[str, Any], *, host: str, port: int, workers: int, grace_s: float) -> int:
    """Serve `options` (uvicorn.Config keyword arguments, host and port excluded) with
    `workers` processes; returns the exit status."""
    if workers <= 1:
        return run_single({**options, "host": host, "port": port})
    if not hasattr(socket, "SO_REUSEPORT"):
        # Without it the workers' sockets cannot share the address: say so, not a traceback.
        raise ConfigurationError(
            f"REFERRAL_WORKERS={workers}: this platform has no SO_REUSEPORT for the workers to "
            "share the port; run one worker per instance (REFERRAL_WORKERS=1)"
        )
    return Supervisor(options, host=host, port=port, workers=workers, grace_s=grace_s).run()
