"""Static checks of the Dockerfile and .dockerignore (no Docker engine needed)."""

from __future__ import annotations

import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

from service.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
APP_UID = 10001
APP_PORT = 8000

BUILD_TOOLS = re.compile(
    r"^(gcc|g\+\+|cc|c\+\+|clang|make|cmake|build-essential|git|cargo|rustc|.*-dev)(=.*)?$"
)


# --- a small Dockerfile parser -------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: not exec (JSON) form"
        return [str(item) for item in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def parse_instructions(text: str) -> list[Instruction]:
    """Join continuation lines, drop comments and blank lines; keywords upper-cased."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if stripped.endswith("\\"):
            buffer += stripped[:-1].rstrip() + " "
            start = start or number
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start or number))
        buffer, start = "", 0
    assert not buffer, "the Dockerfile ends inside a continuation line"
    return instructions


def substitute(value: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in variables, f"${name} has no default"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, value)


def parse_stages(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            tokens = [t for t in instruction.args.split() if not t.startswith("--")]
            name = tokens[2] if len(tokens) == 3 and tokens[1].upper() == "AS" else None
            stages.append(Stage(substitute(tokens[0], global_args), name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: before FROM"
            key, _, default = instruction.args.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(instruction)
    return stages


@cache
def stages() -> tuple[Stage, ...]:
    return tuple(parse_stages(DOCKERFILE.read_text(encoding="utf-8")))


def final() -> Stage:
    return stages()[-1]


def builder() -> Stage:
    return stages()[0]


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    tokens = shlex.split(args)
    while tokens and tokens[0].startswith("--"):
        key, _, value = tokens.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, tokens


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for token in shlex.split(instruction.args):
            key, sep, value = token.partition("=")
            assert sep, f"line {instruction.line}: use ENV KEY=value"
            env[key] = value
    return env


def venv_path() -> str:
    """Where the builder stage creates the virtualenv."""
    for instruction in builder().all("RUN"):
        match = re.search(r"-m venv(?:\s+--[\w-]+)*\s+(\S+)", instruction.args)
        if match:
            return match.group(1)
    raise AssertionError("the builder stage creates no virtualenv")


def run_commands(stage: Stage) -> list[list[str]]:
    """Each shell command of each RUN, as tokens (split on && ; |)."""
    commands = []
    for instruction in stage.all("RUN"):
        for part in re.split(r"&&|\|\||;|\|", instruction.args):
            if part.strip():
                commands.append(shlex.split(part))
    return commands


# --- .dockerignore -------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@cache
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        rules.append((negate, _glob_to_regex(pattern)))
    return tuple(rules)


def excluded_from_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or any parent of it wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in dockerignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


# --- tests: stages -------------------------------------------------------------------------


def test_build_is_multi_stage() -> None:
    assert len(stages()) >= 2
    assert builder().name, "name the builder stage so COPY --from is readable"
    assert final().name != builder().name


def test_every_stage_uses_the_same_slim_python_311_base() -> None:
    bases = {stage.base for stage in stages()}
    assert len(bases) == 1, f"the venv's interpreter symlink needs one base: {bases}"
    (base,) = bases
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = final().last("USER").args.partition(":")
    assert user.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(user) == APP_UID
    assert not group or (group.isdigit() and int(group) != 0)


def test_entrypoint_is_the_console_script_and_serves_by_default() -> None:
    assert final().last("ENTRYPOINT").exec_form() == ["referral-service"]
    assert final().last("CMD").exec_form() == ["serve"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "referral-service" in pyproject["project"]["scripts"]


def test_runtime_environment() -> None:
    env = env_of(final())
    assert env["REFERRAL_HOST"] == "0.0.0.0"
    assert env["REFERRAL_LOG_FORMAT"] == "json"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert int(env["REFERRAL_PORT"]) == APP_PORT
    assert int(env["REFERRAL_WORKERS"]) >= 1
    assert env["PATH"].startswith(f"{venv_path()}/bin:")
    prefix = str(Settings.model_config.get("env_prefix", ""))
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    assert {k for k in env if k.startswith(prefix)} <= fields


def test_port_and_stop_signal() -> None:
    assert str(APP_PORT) in final().last("EXPOSE").args.split()
    assert final().last("STOPSIGNAL").args == "SIGTERM"


def test_the_metrics_port_is_not_exposed() -> None:
    # `docker run -P` publishes every EXPOSEd port; the metrics need no token.
    exposed = {port for i in final().all("EXPOSE") for port in i.args.split()}
    assert not {"9100", "9100/tcp"} & exposed


def test_final_stage_installs_no_build_tools_and_no_packages() -> None:
    for command in run_commands(final()):
        if command[:2] in (["apt-get", "install"], ["apt", "install"], ["apk", "add"]):
            tools = [t for t in command[2:] if not t.startswith("-") and BUILD_TOOLS.match(t)]
            assert not tools, f"build tools in the runtime image: {tools}"
        if "pip" in command or "pip3" in command:
            assert "install" not in command, f"pip install in the runtime stage: {command}"
    assert not final().all("ADD"), "use COPY --from=builder"


def test_final_stage_copies_only_the_built_venv() -> None:
    copies = final().all("COPY")
    assert copies, "the runtime stage copies nothing"
    stage_names = {stage.name for stage in stages()[:-1]}
    for instruction in copies:
        flags, paths = split_flags(instruction.args)
        assert flags.get("from") in stage_names, f"line {instruction.line}: copies the context"
        *sources, destination = paths
        assert sources == [venv_path()], f"line {instruction.line}: copies {sources}"
        assert destination.rstrip("/") == venv_path()


def pip_installs(stage: Stage) -> list[list[str]]:
    return [c for c in run_commands(stage) if "pip" in c and "install" in c]


def test_builder_installs_the_project_non_editably() -> None:
    installs = pip_installs(builder())
    assert installs, "the builder stage installs nothing with pip"
    for command in installs:
        assert "-e" not in command and "--editable" not in command, command
    assert any("." in c or any(t.endswith(".whl") for t in c) for c in installs), installs


def test_builder_copies_every_package_and_nothing_else() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in include}
    packages = {name for name in packages if (REPO / name).is_dir()}
    copied: set[str] = set()
    for instruction in builder().all("COPY"):
        flags, (*sources, _) = split_flags(instruction.args)
        assert "from" not in flags
        copied.update(PurePosixPath(source).parts[0].rstrip("*") for source in sources)
    assert packages, "no packages found from pyproject.toml"
    assert packages | {"pyproject.toml", "requirements.lock"} <= copied, sorted(packages - copied)
    assert not copied - packages - {"pyproject.toml", "README.md", "requirements.lock"}, sorted(
        copied
    )


# --- tests: healthcheck ---------------------------------------------------------------------


def healthcheck_argv() -> list[str]:
    instruction = final().last("HEALTHCHECK")
    options, _, command = instruction.args.partition("CMD")
    assert "--timeout" in options and "--interval" in options
    return Instruction("CMD", command.strip(), instruction.line).exec_form()


def test_healthcheck_uses_python_not_curl() -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python"
    assert "/health/live" in " ".join(argv)
    assert not {"curl", "wget"} & set(argv)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/live" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def health_server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# A proxy that does not exist: the check must go straight to the local port regardless.
DEAD_PROXY = {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}


@pytest.mark.parametrize("proxy", [{}, DEAD_PROXY], ids=["no-proxy", "proxy-set"])
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_really_checks_liveness(
    status: int, healthy: bool, proxy: dict[str, str]
) -> None:
    argv = [sys.executable, *healthcheck_argv()[1:]]
    with health_server(status) as port:
        result = subprocess.run(
            argv,
            env={"REFERRAL_PORT": str(port), **proxy},
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert (result.returncode == 0) is healthy, result.stderr.decode()


def test_healthcheck_fails_when_nothing_listens() -> None:
    with health_server(200) as port:
        pass  # closed again: nothing listens on the port now
    argv = [sys.executable, *healthcheck_argv()[1:]]
    result = subprocess.run(
        argv, env={"REFERRAL_PORT": str(port)}, capture_output=True, timeout=30, check=False
    )
    assert result.returncode != 0


# --- tests: .dockerignore ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "var/referrals.db",
        "var/dev-keys/private.pem",
        "tests/service/test_settings.py",
        "deploy/dev-keys/private.pem",
        "api/__pycache__/main.cpython-311.pyc",
        "service/.ruff_cache/content",
        ".pytest_cache/v/cache/lastfailed",
        ".env",
        "referral_service.egg-info/PKG-INFO",
        "openapi/openapi.json",
        "bench/run.py",
        "requirements-dev.lock",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded_from_context(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "api/main.py",
        "service/settings.py",
        "service/migrations/versions/0001_initial.py",
        "eligibility/rulesets/default.toml",
        "requirements.lock",
    ],
)
def test_dockerignore_lets_in(path: str) -> None:
    assert not excluded_from_context(path)


def test_everything_the_builder_copies_is_in_the_context() -> None:
    for instruction in builder().all("COPY"):
        _, (*sources, _) = split_flags(instruction.args)
        for source in sources:
            assert not excluded_from_context(source.rstrip("*")), source
