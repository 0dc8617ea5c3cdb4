"""`serve --workers N`: one SO_REUSEPORT listening socket per worker, a worker that dies is
replaced (and logged), an address already taken is refused, the start-up heap is frozen."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.core import workers
from service.core.settings import ConfigurationError
from tests.conftest import AUDIENCE, ISSUER
from tests.ops.servers import SERVICE, free_port, running_server, server_env

pytestmark = pytest.mark.slow


def spawned_workers(parent: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing children running spawn_main)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry))
    return sorted(found)


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            inodes.add(inode)
    return inodes


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def wait_for(condition, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_each_worker_listens_on_its_own_socket_and_a_dead_one_is_replaced(
    database_url: str, signing_key
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    with running_server(env, workers=2) as (base, process):
        port = int(base.rsplit(":", 1)[1])
        assert wait_for(lambda: len(spawned_workers(process.pid)) == 2)
        pids = spawned_workers(process.pid)
        assert wait_for(lambda: len(listening_inodes(port)) == 2)
        listening = listening_inodes(port)
        owned = [socket_inodes(pid) & listening for pid in pids]
        # Two listening sockets on one address, one in each worker; none in the supervisor.
        assert all(len(mine) == 1 for mine in owned) and owned[0] != owned[1]
        assert not socket_inodes(process.pid) & listening

        os.kill(pids[0], signal.SIGKILL)
        assert wait_for(lambda: len(set(spawned_workers(process.pid)) - {pids[0]}) == 2)
        assert pids[0] not in spawned_workers(process.pid)
        assert wait_for(lambda: len(listening_inodes(port)) == 2)
        for _ in range(5):
            assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
        assert not listening_inodes(port)


@pytest.mark.parametrize("count", [1, 2])
def test_an_address_already_taken_is_refused_with_status_3(
    database_url: str, signing_key, count: int
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env["REFERRAL_METRICS_PORT"] = "0"
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [SERVICE, "serve", "--port", str(port), "--workers", str(count)],
            env=env,
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == workers.STARTUP_FAILURE
    assert b"address already in use" in (result.stdout + result.stderr).lower()


def test_freezing_the_start_up_heap_moves_it_out_of_the_collectors_reach() -> None:
    try:
        workers.freeze_start_up_heap()
        assert gc.get_freeze_count() > 10_000  # modules, classes, the test session
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_a_worker_that_cannot_load_the_app_stops_the_instance_with_status_3(
    database_url: str, tmp_path: Path
) -> None:
    # A setting only the worker trips on (the key file is read when the app is built): every
    # replacement would fail alike, so the instance stops instead of replacing them for ever.
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("not a key")
    env = server_env(database_url, bad_key, ISSUER, AUDIENCE)
    env["REFERRAL_METRICS_PORT"] = "0"
    result = subprocess.run(
        [SERVICE, "serve", "--port", str(free_port()), "--workers", "2"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == workers.STARTUP_FAILURE
    output = result.stdout + result.stderr
    assert b"worker cannot load the app" in output
    assert b"worker died; starting another" not in output


def _run_python(
    code: str, env_extra: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=timeout
    )


def test_workers_that_keep_dying_as_they_start_are_given_up_on_with_status_3() -> None:
    # Killed while importing the app (not a status the worker chose): replaced after a
    # growing pause, then the supervisor stops with a message instead of spinning for ever.
    result = _run_python(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from service.core.workers import Supervisor\n"
        "sys.exit(Supervisor({'app': 'tests.ops.signalling_app:app', 'log_config': None},"
        " host='127.0.0.1', port=0, workers=2, grace_s=5).run())\n",
        {"SIGNAL_AT_IMPORT": "SIGKILL"},
        timeout=90,
    )
    assert result.returncode == workers.STARTUP_FAILURE
    output = result.stdout + result.stderr
    assert output.count(b"worker died; starting another") == 5
    assert b"workers keep dying as they start; stopping" in output


def test_a_stop_asked_for_while_the_app_is_imported_is_not_lost() -> None:
    # One process: SIGTERM arrives before uvicorn listens for it (the app is imported first,
    # to freeze the heap): it must stop the server, not be swallowed while it serves on.
    result = _run_python(
        "import signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)  # as `serve` does\n"
        "from service.core.workers import run\n"
        "sys.exit(run({'app': 'tests.ops.signalling_app:app', 'log_config': None},"
        " host='127.0.0.1', port=0, workers=1, grace_s=10))\n",
        {"SIGNAL_AT_IMPORT": "SIGTERM"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_workers_stop_when_their_supervisor_is_killed(database_url: str, signing_key) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    with running_server(env, workers=2) as (base, process):
        port = int(base.rsplit(":", 1)[1])
        assert wait_for(lambda: len(spawned_workers(process.pid)) == 2)
        pids = spawned_workers(process.pid)
        process.kill()
        process.wait(timeout=10)
        try:
            # Orphaned workers drain and exit instead of serving the port for ever.
            assert wait_for(lambda: not any(_alive(pid) for pid in pids), seconds=40)
            assert not listening_inodes(port)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_several_workers_without_so_reuseport_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(ConfigurationError, match="SO_REUSEPORT"):
        workers.run(
            {"app": "tests.ops.signalling_app:app"}, host="127.0.0.1", port=0, workers=2, grace_s=1
        )


def test_the_metrics_directory_serve_made_is_removed_when_it_stops(
    database_url: str, signing_key, tmp_path: Path
) -> None:
    env = server_env(database_url, signing_key.public_file, ISSUER, AUDIENCE)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["TMPDIR"] = str(tmp_path)
    with running_server(env, workers=2) as (_base, process):
        assert len(list(tmp_path.glob("referral-metrics-*"))) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    assert not list(tmp_path.glob("referral-metrics-*"))


def test_a_worker_whose_loop_is_stuck_is_killed_and_replaced() -> None:
    port = free_port()
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from service.core.workers import Supervisor\n"
            "sys.exit(Supervisor({'app': 'tests.ops.hanging_app:app', 'log_config': None},"
            f" host='127.0.0.1', port={port}, workers=2, grace_s=5, hung_after_s=2).run())\n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for(lambda: len(spawned_workers(supervisor.pid)) == 2)
        base = f"http://127.0.0.1:{port}"

        def answering_pid() -> int | None:
            with contextlib.suppress(httpx.HTTPError):
                return int(httpx.get(f"{base}/", timeout=1).headers["x-pid"])
            return None

        assert wait_for(lambda: answering_pid() is not None)
        before = set(spawned_workers(supervisor.pid))
        # Each new connection goes to one worker's socket: this one gets stuck.
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{base}/hang", timeout=1)
        # The stuck worker is killed and a new one takes its place; the other one is kept.
        assert wait_for(
            lambda: (
                len(set(spawned_workers(supervisor.pid)) - before) == 1
                and len(spawned_workers(supervisor.pid)) == 2
            ),
            seconds=30,
        )
        after = set(spawned_workers(supervisor.pid))
        assert len(before & after) == 1
        # Every worker answers again: none is left holding connections it cannot serve.
        seen = {answering_pid() for _ in range(40)}
        assert seen <= after and None not in seen
    finally:
        supervisor.send_signal(signal.SIGTERM)
        output, _ = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0
    assert output.count(b"worker stopped answering; killing it") == 1
    assert b"worker died; starting another" in output
