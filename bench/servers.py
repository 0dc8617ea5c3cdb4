"""Starting and stopping the servers under test, and reading their processes in /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import loadgen

HOST = "127.0.0.1"
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 15.0
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# --- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of these processes so far (gone processes count as 0)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / _TICK


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in parts[:8]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: int

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes: the multiprocessing children of the server process."""
        return [p for p in children(self.process.pid) if "spawn_main" in cmdline(p)]

    def worker_rss_mb(self) -> list[float]:
        return [round(r, 1) for p in self.worker_pids() if (r := rss_mb(p)) is not None]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers), then SIGKILL to its own process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        # The server was started in a session of its own: its group id is its pid, and the
        # group holds only its workers. Kill any that outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def start(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log_dir: Path,
    workers: int,
    ready_path: str,
    cwd: Path,
) -> Server:
    """Start a server and wait until it answers and all its workers are up."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, port, process, log_path, workers)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        status = loadgen.run(loadgen.probe(HOST, port, ready_path, timeout=1.0))
        if status is not None and len(server.worker_pids()) >= workers:
            _wait_until_idle(server.worker_pids(), deadline)
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(
        f"{name} did not become ready in {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )


def _wait_until_idle(pids: Sequence[int], deadline: float) -> None:
    # A worker that is still importing burns CPU and does not accept yet; an idle event loop
    # burns none. Wait until every worker has been idle for a moment.
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        after = cpu_seconds(pids)
        if after - before < 0.02:
            return
        before = after


def python() -> str:
    return sys.executable
