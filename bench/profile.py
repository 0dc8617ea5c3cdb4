"""Profile E2 under load with py-spy: `python -m bench.profile [--seconds 20] [--out DIR]`.

Starts the service exactly as the benchmark does, loads it (closed loop) while
`py-spy record --subprocesses` samples both workers, and prints where the workers' CPU goes:
by leaf function (self time), by function including callees, and by library. The raw
collapsed stacks and a speedscope file are kept in --out for a closer look
(https://www.speedscope.app opens the file locally in the browser; nothing is uploaded).

py-spy is not a project dependency: `pip install py-spy` (it needs ptrace, so root or
CAP_SYS_PTRACE). `--summarise FILE` only summarises an earlier raw file.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import db as dbs
from bench import loadgen, payload, reads, servers
from bench.run import service_env, started_service

# py-spy --subprocesses prefixes each stack with its process chain: process 1:"cmdline";…
_PROCESSES = re.compile(r'^(?:process \d+:"[^"]*"(?:;|$))+')
# "function (path/to/module.py:123)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

LIBRARIES = (
    ("jose / cryptography (token)", ("jose/", "cryptography/", "ecdsa/", "rsa/")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("asyncpg", ("asyncpg/",)),
    ("sqlmodel", ("sqlmodel/",)),
    ("fastapi", ("fastapi/",)),
    ("starlette", ("starlette/",)),
    ("uvicorn / httptools / uvloop", ("uvicorn/", "httptools/", "uvloop/")),
    ("json (stdlib)", ("json/",)),
    ("logging (stdlib)", ("logging/",)),
    ("asyncio (stdlib)", ("asyncio/",)),
    ("eligibility (rules)", ("eligibility/",)),
    ("service/", ("service/",)),
    ("api/", ("api/",)),
)


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _library(path: str) -> str:
    short = _short(path)
    for name, prefixes in LIBRARIES:
        if short.startswith(prefixes):
            return name
    top = short.split("/", 1)[0]
    return top.removesuffix(".py") + (" (stdlib)" if "/" not in short else "")


def parse_frame(frame: str) -> tuple[str, str, int | None]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "", None
    line = match.group("line")
    return match.group("func"), match.group("file"), int(line) if line else None


def is_idle(func: str, path: str) -> bool:
    """A thread waiting, not working: a pool thread blocked on its queue, or the event loop
    inside uvloop's C code (py-spy shows that as the Python frame that entered it)."""
    short = _short(path)
    name = func.rsplit(".", 1)[-1]
    if short in ("threading.py", "queue.py") and name in ("wait", "get", "_wait_for_tstate_lock"):
        return True
    if short.endswith(("selectors.py", "asyncio/base_events.py")) and name in (
        "select",
        "_run_once",
        "run_forever",
    ):
        return True
    return short.startswith("asyncio/runners.py") and name == "run"


def summarise(raw: str, top: int = 25) -> str:
    """Self, inclusive and per-library shares of the busy samples in py-spy's raw (collapsed)
    output. Stacks of the supervisor process (not a worker) and of idle threads are left
    out; the idle share is reported on its own."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    lines_self: Counter[str] = Counter()
    total = idle = 0
    for row in raw.splitlines():
        stack, _, count_text = row.strip().rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        prefix = _PROCESSES.match(stack)
        if prefix and prefix.group(0).count("process ") == 1:
            continue  # the uvicorn supervisor itself
        rest = stack[prefix.end() :] if prefix else stack
        frames = [parse_frame(f) for f in rest.split(";") if f]
        if not frames:
            idle += count  # a worker thread with no Python frame: waiting in C
            continue
        func, path, line = frames[-1]
        if is_idle(func, path):
            idle += count
            continue
        total += count
        seen: set[str] = set()
        for f, p, _ in frames:
            name = f"{f} ({_short(p)})"
            if name not in seen and p != "<string>":
                seen.add(name)
                inclusive[name] += count
                if _short(p).startswith(("service/", "api/", "eligibility/")):
                    project[name] += count
        self_time[f"{func} ({_short(path)})"] += count
        lines_self[f"{_short(path)}:{line}"] += count
        libraries[_library(path)] += count
    if not total:
        return "no samples"

    def block(title: str, counter: Counter[str], n: int) -> list[str]:
        out = [f"\n{title}"]
        out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in counter.most_common(n)]
        return out

    lines = [
        f"{total} samples of the workers' busy time ({idle} more were idle: pool threads "
        "waiting, the event loop in uvloop; not counted below)"
    ]
    lines += block("By library (self time of the innermost frame):", libraries, 20)
    lines += block("Top functions by self time:", self_time, top)
    lines += block("Project functions including callees:", project, top)
    lines += block("All functions including callees:", inclusive, top)
    lines += block("Top lines by self time:", lines_self, 15)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--out", type=Path, default=Path("var/profile"), help="output folder")
    parser.add_argument("--sqlite", action="store_true", help="profile on SQLite")
    parser.add_argument(
        "--phase",
        choices=("intake", "status", "list"),
        default="intake",
        help="what to load while sampling: intakes, or status reads / list pages (as the "
        "benchmark's read phases send them, after the warm-up's intakes)",
    )
    parser.add_argument("--summarise", type=Path, metavar="RAW", help="only summarise RAW")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise.read_text()))
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    seconds = min(max(args.seconds, 2.0), 120.0)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    databases = dbs.choose(work, force_sqlite=args.sqlite)
    keys = payload.make_keypair(work)
    env = service_env(databases.service_url, keys)
    databases.create()
    try:
        with started_service(
            databases, env, work, payload.tokens(keys), payload.bodies(), secrets.token_hex(4)
        ) as e2:
            send: Callable[[], bytes] = e2.factory.next
            load = lambda duration: loadgen.run(  # noqa: E731
                loadgen.run_closed(
                    servers.HOST,
                    e2.server.port,
                    send,
                    connections=args.connections,
                    duration=duration,
                    max_requests=int(50_000 * duration),
                )
            )
            load(2.0)  # warm up, and referrals for the reads to read
            tokens = payload.tokens(keys)
            if args.phase == "status":
                send = loadgen.Rotation(
                    reads.status_requests(databases, e2.server.port, tokens)
                ).next
            elif args.phase == "list":
                send = loadgen.Rotation(reads.list_requests(e2.server.port, tokens)).next
            raw = args.out / f"e2.{args.phase}.raw.txt"
            record = [
                py_spy, "record", "--pid", str(e2.server.process.pid), "--subprocesses",
                "--rate", str(args.rate), "--duration", str(int(seconds)), "--nonblocking",
                "--format", "raw", "--output", str(raw),
            ]  # fmt: skip
            spy = subprocess.Popen(record, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            output: list[bytes] = []
            reader = threading.Thread(target=lambda: output.append(spy.stdout.read()))  # type: ignore[union-attr]
            reader.start()
            result = load(seconds + 1.0)
            spy.wait(timeout=seconds + 30)
            reader.join(timeout=5)
            print(
                f"load: {result.ok / result.wall_s:.1f} ok/s, p50 "
                f"{loadgen.summarise(result.latencies)['p50_ms']:.1f} ms while sampling "
                f"(py-spy slows the workers a little)"
            )
            if spy.returncode != 0 or not raw.exists():
                print(b"".join(output).decode(errors="replace"), file=sys.stderr)
                return 1
        summary = summarise(raw.read_text())
        summary_path = args.out / f"e2.{args.phase}.summary.txt"
        summary_path.write_text(summary + "\n")
        print(summary)
        print(f"\nraw stacks: {raw}; summary: {summary_path}")
    finally:
        databases.drop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
