"""The readable table printed at the end of a run."""

from __future__ import annotations

import math
from typing import Any

_NAMES = {"ceiling": "E0 ceiling", "naive": "E1 naive", "service": "E2 service"}


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: Any) -> str:
    text = _num(value, 2)
    return text if text == "-" else f"{text}ms"


def table(results: dict[str, Any]) -> str:
    lines = []
    m = results["machine"]
    lines.append(
        f"\nReferral intake benchmark ({results['mode']}) — {m['nproc']} cores "
        f"({m['cpu_model']}), Python {m['python']}, {results['database']} "
        f"{results['database_version']}"
        f"{' (TLS on loopback)' if results.get('database_tls') else ''}, "
        f"uvicorn × {results['workers']} workers"
    )
    header = (
        f"{'engine':<11} {'phase':<9} {'target/s':>9} {'ok/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'p99.9 ms':>9} {'max ms':>8} {'cens.':>6} {'err':>5} {'srv CPU':>8} {'db CPU':>7} "
        f"{'gen CPU':>8} {'gen µs':>7} {'box busy':>8}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for key in ("ceiling", "service", "naive"):
        phases = results["phases"].get(key, {})
        for name, p in phases.items():
            if name.startswith("_") or name == "warmup":
                continue
            non_ok = p["completed"] - sum(
                n for s, n in p["statuses"].items() if 200 <= int(s) < 300
            )
            lines.append(
                f"{_NAMES[key]:<11} {name:<9} {_num(p.get('target_rps')):>9} "
                f"{_num(p['ok_rps']):>9} {_num(p['p50_ms'], 2):>8} {_num(p['p99_ms'], 2):>8} "
                f"{_num(p['p99.9_ms'], 2):>9} {_num(p['max_ms'], 1):>8} {p['censored']:>6} "
                f"{p['errors'] + non_ok:>5} "
                f"{_ms(p.get('server_cpu_ms_per_request')):>8} "
                f"{_ms(p.get('db_cpu_ms_per_request')):>7} "
                f"{_num(p['generator_cpu_pct'], 0):>7}% "
                f"{_num(p['generator_us_per_request'], 0):>7} "
                f"{_num(p.get('machine_busy_pct'), 0):>7}%"
            )
    lines.append(
        "  srv/db CPU: CPU time of the server's workers / its PostgreSQL backends per "
        "response; gen: the load generator's own CPU (% of one core, µs per request); box "
        "busy: whole machine, other users included."
    )
    d = results.get("db_ceiling")
    if d and d.get("tps") is None:
        lines.append(f"E_db: not measured ({(d.get('error') or '?')[:200]})")
    elif d:
        lines.append(
            f"E_db (PostgreSQL alone, pgbench -M prepared, {d['clients']} clients, the service's "
            f"{d['statements']} intake statements + BEGIN/COMMIT): {_num(d['tps'])} tps, "
            f"{_ms(d['db_cpu_ms'])} of PostgreSQL CPU per intake (pgbench's own: "
            f"{_ms(d.get('pgbench_cpu_ms'))}), {d['failed']} failed"
            + (f"; ERROR {d['error'][:200]}" if d.get("error") else "")
        )
    if results.get("status_rps") is not None:
        lines.append(
            f"Reads (E2, each writes its audit event): status {_num(results['status_rps'])}/s, "
            f"list (20 summaries) {_num(results['list_rps'])}/s"
            + (
                f"; deep page p50 / first page p50 = {_num(results['deep_page_ratio'], 2)}"
                if results.get("deep_page_ratio") is not None
                else ""
            )
        )
    rss = results["rss_mb_per_worker"]
    lines.append(
        "RSS per worker after load (MB): "
        + "; ".join(f"{_NAMES[k]} {', '.join(_num(v) for v in rss[k])}" for k in rss)
    )
    c = results["consistency"]
    lines.append(
        f"Consistency (E2): {c.get('referral_rows')} referral rows, {c.get('idempotency_rows')} "
        f"idempotency rows for {c.get('responses_201')} 201s; audit verify exit "
        f"{c.get('audit_verify_exit')} over {c.get('audit_events_checked')} events -> "
        f"{'CONSISTENT' if results['consistent'] else 'NOT CONSISTENT'}"
    )
    n = results.get("naive_consistency") or {}
    if n:
        lines.append(
            f"E1 for comparison: {n['referral_rows']} rows for {n['responses_201']} 201s, "
            f"{n['audit_chain_forks']} audit events sharing a previous hash (chain forks)"
        )
    t = results["targets"]
    lines.append(
        f"E2 = {_num(100 * (results['service_vs_ceiling'] or 0), 1)}% of E0 (target ≥ 30%: "
        f"{'met' if t['service_ge_30pct_of_ceiling'] else 'NOT met'}); "
        f"{_num(results['service_vs_naive'], 2)}× E1 (target ≥ 3×: "
        f"{'met' if t['service_ge_3x_naive'] else 'NOT met'}); p99 at 50% "
        f"{_num(results['service_p99_ms'], 2)} ms (target ≤ 25 ms: "
        f"{'met' if t['service_p99_le_25ms_at_50pct'] else 'NOT met'})"
    )
    lines.append(
        f"E2 ÷ E_db {_num(results.get('service_vs_db'), 3)} (target ≥ 0.5); E2 ÷ E0 "
        f"{_num(results['service_vs_ceiling'], 3)}; E2 ÷ E1 {_num(results['service_vs_naive'], 2)}"
        f"; E2 server CPU per intake {_ms(results.get('service_cpu_ms'))} (target ≤ 0.8 ms); "
        f"busiest phase's box load {_num(results.get('machine_busy_pct_max'), 0)}%"
    )
    for warning in results.get("warnings", []):
        lines.append(f"warning: {warning}")
    lines.append(f"Elapsed {results['elapsed_s']} s.")
    return "\n".join(lines)
