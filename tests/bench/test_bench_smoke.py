"""The benchmark's own arithmetic and load generator, on pure functions and a tiny in-process
server. No timed assertions: only counts, orders and parsed values."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest

from api.schemas.referrals import ReferralCreate
from bench import dbceiling, loadgen, payload, profile, report
from bench.run import FULL, QUICK, Plan

# --- percentiles and schedules ----------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 99.9) == 100
    assert loadgen.percentile(values, 100) == 100
    assert loadgen.percentile(values, 0) == 1
    assert loadgen.percentile([7.0], 99.9) == 7
    assert math.isnan(loadgen.percentile([], 50))
    with pytest.raises(ValueError):
        loadgen.percentile(values, 101)


def test_percentiles_of_a_thousand_values_pick_the_tail() -> None:
    values = [0.001] * 990 + [0.5] * 9 + [2.0]  # seconds
    summary = loadgen.summarise(values)
    assert summary["p50_ms"] == pytest.approx(1.0)
    assert summary["p99_ms"] == pytest.approx(1.0)  # the 990th value
    assert summary["p99.9_ms"] == pytest.approx(500.0)  # the 999th
    assert summary["max_ms"] == pytest.approx(2000.0)


def test_summarise_ignores_input_order() -> None:
    forward = loadgen.summarise([0.003, 0.001, 0.002])
    assert forward == loadgen.summarise([0.001, 0.002, 0.003])
    assert forward["p50_ms"] == pytest.approx(2.0)


def test_constant_rate_schedule() -> None:
    assert loadgen.schedule_size(100, 2.0) == 200
    assert loadgen.schedule_size(0.5, 3.0) == 1
    assert loadgen.schedule_size(0, 3.0) == 0
    times = [loadgen.scheduled_time(10.0, 4.0, i) for i in range(5)]
    assert times == [10.0, 10.25, 10.5, 10.75, 11.0]


def test_unsent_requests_are_censored_with_their_wait_so_far() -> None:
    # Rate 10/s from t=0: requests 7..9 were due at 0.7, 0.8, 0.9 and never sent by t=1.0.
    waits = loadgen.censored_latencies(0.0, 10.0, 7, 10, 1.0)
    assert waits == pytest.approx([0.3, 0.2, 0.1])
    assert loadgen.censored_latencies(0.0, 10.0, 10, 10, 1.0) == []


# --- HTTP parsing and requests ----------------------------------------------------------------


def test_parse_content_length_response_in_pieces() -> None:
    raw = b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\ncontent-type: x\r\n\r\nhelloHTTP/1.1"
    assert loadgen.parse_response(bytearray(raw[:30])) is None
    assert loadgen.parse_response(bytearray(raw[:60])) is None
    status, close, body, used = loadgen.parse_response(bytearray(raw))  # type: ignore[misc]
    assert (status, close, body) == (201, False, b"hello")
    assert raw[used:] == b"HTTP/1.1"


def test_parse_chunked_and_closing_responses() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert loadgen.parse_response(bytearray(chunked[:-3])) is None
    assert loadgen.parse_response(bytearray(chunked)) == (200, True, b"abcde", len(chunked))
    assert loadgen.parse_response(bytearray(b"HTTP/1.1 204 No Content\r\n\r\n"))[:3] == (  # type: ignore[index]
        204,
        False,
        b"",
    )


def test_request_factory_rotates_and_never_repeats_a_key() -> None:
    factory = loadgen.RequestFactory(
        host="127.0.0.1",
        port=8000,
        path="/v1/referrals",
        tokens=["t1", "t2", "t3"],
        bodies=[b'{"a":1}', b'{"bb":22}'],
        key_prefix="run-",
    )
    requests = [factory.next() for _ in range(6)]
    keys = [r.split(b"Idempotency-Key: ")[1].split(b"\r\n")[0] for r in requests]
    assert len(set(keys)) == 6 and factory.made == 6
    assert [r.split(b"Bearer ")[1].split(b"\r\n")[0] for r in requests[:4]] == [
        b"t1",
        b"t2",
        b"t3",
        b"t1",
    ]
    for request in requests:
        head, body = request.split(b"\r\n\r\n", 1)
        assert f"Content-Length: {len(body)}".encode() in head


def test_bodies_are_valid_two_kilobyte_referrals() -> None:
    bodies = payload.bodies(4)
    for body in bodies:
        assert 1800 <= len(body) <= 2200
        referral = ReferralCreate.model_validate_json(body)
        assert len(referral.caregivers) == 2
        assert 900 <= len(referral.concerns.description or "") <= 1100
    assert len(set(bodies)) == 4


def test_nhs_numbers_pass_modulus_11() -> None:
    import random

    from service.referrals.validation import normalise_nhs_number

    rng = random.Random(1)
    for _ in range(50):
        number = payload.nhs_number(rng)
        assert normalise_nhs_number(number) == number


# --- the generator against a tiny in-process server ------------------------------------------


async def _tiny_server(
    answer_first: int, handlers: set[asyncio.Task[None]]
) -> tuple[asyncio.Server, list[int]]:
    """Answers 201 to the first `answer_first` requests, then holds every later one."""
    answered = [0]
    stalled = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if answered[0] >= answer_first:
                    await stalled.wait()  # never set: the client gives up
                answered[0] += 1
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, answered


@pytest.fixture
async def tiny() -> AsyncIterator[Callable[[int], asyncio.Future[tuple[int, list[int]]]]]:
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[None]] = set()

    async def start(answer_first: int) -> tuple[int, list[int]]:
        server, answered = await _tiny_server(answer_first, handlers)
        servers.append(server)
        return server.sockets[0].getsockname()[1], answered

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)


def _factory(port: int) -> loadgen.RequestFactory:
    return loadgen.RequestFactory(
        host="127.0.0.1",
        port=port,
        path="/v1/referrals",
        tokens=["token"],
        bodies=[b'{"x": 1}'],
        key_prefix="t-",
    )


async def test_closed_loop_stops_at_its_request_budget(tiny: Callable[..., object]) -> None:
    port, answered = await tiny(10_000)  # type: ignore[misc]
    result = await loadgen.run_closed(
        "127.0.0.1", port, _factory(port).next, connections=3, duration=5.0, max_requests=25
    )
    assert result.sent == 25 and result.completed == 25 and answered[0] == 25
    assert result.statuses == {201: 25} and result.ok == 25
    assert len(result.latencies) == 25 and result.errors == 0


async def test_open_loop_sends_the_whole_schedule(tiny: Callable[..., object]) -> None:
    port, answered = await tiny(10_000)  # type: ignore[misc]
    result = await loadgen.run_open(
        "127.0.0.1", port, _factory(port).next, rate=200, duration=0.2, connections=4, drain=2.0
    )
    assert result.sent == loadgen.schedule_size(200, 0.2) == 40
    assert result.completed == 40 and result.censored == 0 and answered[0] == 40
    assert len(result.latencies) == len(result.send_lag) == 40


async def test_open_loop_charges_a_stalled_server_for_every_scheduled_request(
    tiny: Callable[..., object],
) -> None:
    # The server answers 5 requests then stalls: the 3 connections each hold one unanswered
    # request, and the rest of the 30 never get sent. All 25 still count (censored), so the
    # tail shows the stall instead of being omitted.
    port, answered = await tiny(5)  # type: ignore[misc]
    result = await loadgen.run_open(
        "127.0.0.1",
        port,
        _factory(port).next,
        rate=100,
        duration=0.3,
        connections=3,
        drain=0.1,
        grace=0.1,
    )
    assert answered[0] == 5 and result.completed == 5
    assert result.sent == 8  # 5 answered + 3 held
    assert result.unknown == 3  # sent, never answered: the server may have acted on them
    assert result.censored == 25
    assert len(result.latencies) == 30
    summary = result.summary()
    assert summary["censored"] == 25 and summary["completed"] == 5


# --- the rest of the harness ------------------------------------------------------------------


def test_quick_plan_fits_in_ninety_seconds() -> None:
    phases = (
        3 * (QUICK.warmup_s + QUICK.closed_s)
        + 4 * (QUICK.open_s + QUICK.drain_s)
        + QUICK.db_s
        + 2 * QUICK.reads_s
    )
    assert phases < 55  # leaves time for three server starts, a migration and the checks
    assert QUICK.scale_rows == 0 and FULL.scale_rows == 200_000  # the scale phase: full only
    assert isinstance(QUICK, Plan) and QUICK.open_fractions == (0.5, 0.8)


def test_rotation_sends_its_requests_in_turn() -> None:
    rotation = loadgen.Rotation([b"a", b"b"])
    assert [rotation.next() for _ in range(5)] == [b"a", b"b", b"a", b"b", b"a"]
    assert rotation.made == 5
    with pytest.raises(ValueError):
        loadgen.Rotation([])
    request = loadgen.get_request("127.0.0.1", 80, "/v1/referrals?limit=20", "tok")
    assert request.startswith(b"GET /v1/referrals?limit=20 HTTP/1.1\r\n")
    assert b"Authorization: Bearer tok\r\n" in request and request.endswith(b"\r\n\r\n")


# --- E_db: the pgbench script generated from captured statements -------------------------------


def _intake(seed: int, chain: int) -> list[dbceiling.Statement]:
    """Two statements shaped like the service's: a store that answers an audit head, and an
    audit append that uses it (chain, chain_seq + 1, hash) with the referral's id again."""
    referral_id = f"id-{seed}"
    store = dbceiling.Statement(
        "INSERT INTO t (id, payload, at, org, note) VALUES ($1, $2, $3, $4, $5) "
        "RETURNING chain, chain_seq, hash",
        (referral_id, "{" + "x" * 200 + str(seed) + "}", datetime(2026, 1, seed), "RX1", None),
        ["chain", "chain_seq", "hash"],
        [(chain, 1000 + chain, f"h{chain}")],
    )
    append = dbceiling.Statement(
        "INSERT INTO a (chain, chain_seq, prev, resource, kind) VALUES ($1, $2, $3, $4, $5)",
        (chain, 1001 + chain, f"h{chain}", referral_id, 1),
        [],
        [],
    )
    return [store, append]


def test_pgbench_script_wires_answers_draws_keys_and_keeps_documents() -> None:
    captured = dbceiling.Captured([_intake(1, 11), _intake(2, 23)])
    generated = dbceiling.script(captured)
    lines = generated.text.splitlines()
    assert lines[0].startswith("\\set r0_1 random(") and lines[1] == "BEGIN;"
    assert lines[-1] == "COMMIT;"
    # The referral id is drawn once and used by both statements; None is NULL.
    assert lines[2] == (
        "INSERT INTO t (id, payload, at, org, note) VALUES (:r0_1, :c0_2, :c0_3, :c0_4, NULL) "
        "RETURNING chain, chain_seq, hash \\gset s0_"
    )
    assert "\\set s0_chain_seq_p1 :s0_chain_seq + 1" in lines
    assert lines[-2] == (
        "INSERT INTO a (chain, chain_seq, prev, resource, kind) "
        "VALUES (:s0_chain, :s0_chain_seq_p1, :s0_hash, :r0_1, :c1_5);"
    )
    # The long document and the other values are sent as the second intake captured them.
    assert generated.constants["c0_2"].endswith("2}") and generated.constants["c0_4"] == "RX1"
    assert (
        generated.constants["c0_3"] == "2026-01-02T00:00:00" and generated.constants["c1_5"] == "1"
    )
    assert (generated.statements, generated.randomised, generated.wired) == (2, 1, 3)


def test_pgbench_script_refuses_intakes_that_differ() -> None:
    other = _intake(2, 23)[:1]
    with pytest.raises(ValueError, match="different statements"):
        dbceiling.script(dbceiling.Captured([_intake(1, 11), other]))
    with pytest.raises(ValueError):
        dbceiling.script(dbceiling.Captured([_intake(1, 11)]))


def test_profile_summary_of_collapsed_stacks() -> None:
    worker = 'process 1:"uvicorn";process 2:"spawn_main"'
    raw = "\n".join(
        [
            f"{worker};run (asyncio/runners.py:118);verify (jose/jws.py:10) 30",
            f"{worker};run (asyncio/runners.py:118);execute (sqlalchemy/orm/session.py:5) 60",
            f"{worker};run (asyncio/runners.py:118) 500",  # the event loop waiting: idle
            'process 1:"uvicorn";wait (threading.py:327) 900',  # the supervisor: not a worker
            f"{worker};run (anyio/_backends/_asyncio.py:1);get (queue.py:171);"
            "wait (threading.py:327) 700",  # an idle pool thread
            f"{worker};create_referral (/work/main/service/referrals.py:80) 10",
        ]
    )
    summary = profile.summarise(raw)
    assert summary.startswith("100 samples")
    assert "60.0%  sqlalchemy" in summary
    assert "30.0%  jose / cryptography (token)" in summary
    assert "10.0%  service/" in summary


def test_report_table_renders_a_result() -> None:
    phase = {
        "ok_rps": 10.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "p99.9_ms": 3.0,
        "max_ms": 4.0,
        "censored": 0,
        "errors": 0,
        "completed": 10,
        "statuses": {"201": 10},
        "generator_cpu_pct": 1.0,
        "generator_us_per_request": 20.0,
    }
    results = {
        "machine": {"nproc": 2, "cpu_model": "x", "python": "3.11"},
        "mode": "quick",
        "database": "sqlite",
        "database_version": "3",
        "workers": 2,
        "phases": {"service": {"capacity": phase, "_rss_mb": {"workers": [1.0]}}},
        "rss_mb_per_worker": {"service": [100.0, 101.0]},
        "consistency": {},
        "consistent": False,
        "targets": {
            "service_ge_30pct_of_ceiling": False,
            "service_ge_3x_naive": False,
            "service_p99_le_25ms_at_50pct": True,
        },
        "service_vs_ceiling": None,
        "service_vs_naive": None,
        "service_p99_ms": 2.0,
        "db_ceiling": {
            "clients": 32,
            "statements": 4,
            "tps": 4000.0,
            "db_cpu_ms": 0.4,
            "failed": 0,
        },
        "service_vs_db": 0.1,
        "service_cpu_ms": 2.0,
        "status_rps": 900.0,
        "list_rps": 400.0,
        "deep_page_ratio": 1.1,
        "machine_busy_pct_max": 90.0,
        "elapsed_s": 1.0,
        "warnings": [],
    }
    text = report.table(json.loads(json.dumps(results)))
    assert "E2 service  capacity" in text and "NOT CONSISTENT" in text
    assert "4,000.0 tps" in text and "E2 ÷ E_db 0.100" in text
    assert "status 900.0/s" in text and "deep page p50 / first page p50 = 1.10" in text
    results["db_ceiling"] = {"tps": None, "error": "ValueError: different statements"}
    assert "E_db: not measured (ValueError: different statements)" in report.table(results)
