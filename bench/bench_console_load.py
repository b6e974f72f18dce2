"""Hostile SQL console queries while factor pages are under load (issue 23).

Serves a synthetic database with the real ``factorscope serve`` (started, warmed and
driven with :mod:`bench_app_load`'s helpers), then:

1. **Pages alone**: ``--clients`` threads each ask ``--requests`` factor pages (the page
   router's ``/_dash-update-component`` POST, a factor and layer drawn per request).
2. **Pages under attack**: the same load while ``--attackers`` clients post hostile
   queries to the SQL page's Run callback (the way the browser does), each sending its
   next query as soon as the last one was answered: queries that need gigabytes
   (``list_resize``, ``repeat``, a list-valued ``range``, ``string_agg``) or run until
   the timeout (a recursive CTE; a ``list_sort`` that never checks DuckDB's interrupt).
   A query refused because the console is busy is sent again after ``--retry-s``.

Meanwhile the RSS of the server and of every process under it (the console's workers)
is sampled from ``/proc`` every 50 ms. The stated limit is the server's own peak RSS in
phase 1 plus ``SQL_CONSOLE_SLOTS`` x (the console's memory limit + the 16 MB result
cap): what ``factorscope/limits.py`` says the console can add. Targets: factor page p95
under attack <= 1 s, 0 page errors, peak RSS (server and workers) <= the stated limit.
The script exits 1 when a page request failed, not when a target is missed (this is a
benchmark, not a timed test). Loopback only, bounded loops.

    python bench/bench_console_load.py --out bench/results/console_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from bench_app_load import (
    Payloads,
    build_mix,
    database_shape,
    factor_page_body,
    free_port,
    run_load,
    send,
    start_server,
    stop_server,
    summarise,
)
from bench_large import _rss_kb

HOSTILE = [
    "SELECT length(list_resize([]::INT[], 300000000))",
    "SELECT length(repeat('x', 1500000000))",
    "SELECT length(range(300000000))",
    "SELECT length(string_agg('xxxxxxxxxxxxxxxxxxxx', ',')) FROM range(100000000)",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
    "SELECT sum(length(list_sort(list_reverse(range(3000000))))) FROM range(20)",
    "SELECT length(list_resize([]::INT[], 100000000))",
    "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range * b.range = 7",
]
"""One query per attacker: each needs gigabytes, or runs until the timeout."""

TARGETS = {
    "attack_factor_page_p95_ms": 1000.0,
    "page_errors": 0,
    "peak_rss_within_limit": True,
}


def _descendants(root: int) -> list[int]:
    """Every process under ``root`` (its console workers), from /proc's parent ids."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class RssSampler(threading.Thread):
    """Peak RSS (MB) of a process alone and with its descendants, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.peak_server_mb = 0.0
        self.peak_total_mb = 0.0
        self.peak_workers = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            server = _rss_kb(self.pid) / 1024
            workers = _descendants(self.pid)
            total = server + sum(_rss_kb(pid) for pid in workers) / 1024
            self.peak_server_mb = max(self.peak_server_mb, server)
            self.peak_total_mb = max(self.peak_total_mb, total)
            self.peak_workers = max(self.peak_workers, len(workers))
            self.samples += 1
            self.stop.wait(0.05)

    def result(self) -> dict:
        return {
            "peak_server_mb": round(self.peak_server_mb, 1),
            "peak_server_and_workers_mb": round(self.peak_total_mb, 1),
            "peak_workers": self.peak_workers,
            "samples": self.samples,
        }


def _outcome(text: str) -> str:
    for word, name in (
        ("is busy with", "refused: busy"),
        ("needed more than", "stopped: memory"),
        ("died of", "stopped: worker died"),
        ("ran longer than", "stopped: timeout"),
        ("query failed", "failed"),
        ("row", "ran"),
    ):
        if word in text:
            return name
    return "other"


def attack(base: str, body_of, stop: threading.Event, retry_s: float, index: int) -> list:
    """Post hostile query ``index`` again and again until ``stop``: (outcome, seconds)."""
    session = requests.Session()
    sql = HOSTILE[index % len(HOSTILE)]
    out = []
    while not stop.is_set():
        started = time.perf_counter()
        try:
            resp = session.post(base + "/_dash-update-component", json=body_of(sql), timeout=120)
            kind = _outcome(resp.text) if resp.status_code == 200 else f"http {resp.status_code}"
        except requests.RequestException as e:
            kind = f"error {type(e).__name__}"
        out.append((kind, time.perf_counter() - started))
        if kind == "refused: busy":
            stop.wait(retry_s)
    return out


def page_mix(p: Payloads, n_factors: int, layers: list[int]) -> list:
    def page_body(r: random.Random) -> dict:
        return factor_page_body(p, r.randrange(n_factors), r.choice(layers))

    return [("router: factor page", "POST", "/_dash-update-component", page_body)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/console_load.json"))
    parser.add_argument("--n-sentences", type=int, default=2000, help="synthetic database size")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100, help="requests per client")
    parser.add_argument(
        "--mix",
        choices=("app", "cold-pages"),
        default="app",
        help="app: the 20-client load test of bench_app_load (pages, callbacks and routes; "
        "the serving target's load); cold-pages: factor pages only, a random factor each",
    )
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--retry-s", type=float, default=0.5, help="wait after a busy refusal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from factorscope.limits import SQL_CONSOLE_SLOTS, SQL_MAX_MB, SQL_TIMEOUT_S
    from factorscope.warehouse.safe_sql import console_memory_mb
    from factorscope.warehouse.synthetic import build_synthetic_db

    memory_mb = console_memory_mb()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        tmp_dir = Path(tmp)
        started = time.perf_counter()
        db = build_synthetic_db(tmp_dir / "bench.duckdb", n_sentences=args.n_sentences)
        build_seconds = round(time.perf_counter() - started, 2)
        n_factors, layers = database_shape(db)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc, server_header = start_server(db, port, tmp_dir / "server.log", [])
        try:
            p = Payloads(requests.get(base + "/_dash-dependencies", timeout=10).json())
            mix = (
                build_mix(p, n_factors, layers)
                if args.mix == "app"
                else page_mix(p, n_factors, layers)
            )
            page = next(t for t in mix if t[0] == "router: factor page")
            run_sql = p.find("sql-table.children", "sql-run.n_clicks")

            def sql_body(sql: str) -> dict:
                return p.body(run_sql, {"sql-run.n_clicks": 1, "sql-text.value": sql})

            # Warm-up, not timed: a few pages and one console query (imports, first reads).
            warm = random.Random(2)
            for _ in range(5):
                send(requests.Session(), base, "POST", page[2], page[3](warm))
            send(requests.Session(), base, "POST", page[2], sql_body("SELECT 1"))

            sampler = RssSampler(proc.pid)
            sampler.start()
            alone, alone_wall, alone_errors = run_load(
                base, mix, clients=args.clients, per_client=args.requests, seed=args.seed
            )
            sampler.stop.set()
            sampler.join()
            phase1 = sampler.result()

            sampler = RssSampler(proc.pid)
            sampler.start()
            stop = threading.Event()
            attacks: list[list] = [[] for _ in range(args.attackers)]

            def attacker(i: int) -> None:
                attacks[i] = attack(base, sql_body, stop, args.retry_s, i)

            threads = [threading.Thread(target=attacker, args=(i,)) for i in range(args.attackers)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # the first hostile queries are running
            under, under_wall, under_errors = run_load(
                base, mix, clients=args.clients, per_client=args.requests, seed=args.seed + 1
            )
            stop.set()
            for thread in threads:
                thread.join()
            time.sleep(0.5)
            sampler.stop.set()
            sampler.join()
            phase2 = sampler.result()
        finally:
            stopped = stop_server(proc)
        server_log = (tmp_dir / "server.log").read_text()[-2000:]

    limit_mb = phase1["peak_server_mb"] + SQL_CONSOLE_SLOTS * (memory_mb + SQL_MAX_MB)
    outcomes = Counter(kind for per in attacks for kind, _s in per)
    by_query = {
        HOSTILE[i % len(HOSTILE)]: dict(Counter(kind for kind, _s in per))
        for i, per in enumerate(attacks)
    }
    answered = [s for per in attacks for kind, s in per if kind != "refused: busy"]
    # The factor page's own latency (the router's POST), whatever else the mix holds.
    pages_alone = summarise([s for k, s, _ok in alone if k == "router: factor page"])
    pages_under = summarise([s for k, s, _ok in under if k == "router: factor page"])
    all_alone = summarise([s for _k, s, _ok in alone])
    all_under = summarise([s for _k, s, _ok in under])
    page_errors = sum(1 for *_r, ok in alone + under if not ok)
    headline = {
        "alone_factor_page_p50_ms": pages_alone["p50_ms"],
        "alone_factor_page_p95_ms": pages_alone["p95_ms"],
        "attack_factor_page_p50_ms": pages_under["p50_ms"],
        "attack_factor_page_p95_ms": pages_under["p95_ms"],
        "page_errors": page_errors,
        "peak_server_and_workers_mb": phase2["peak_server_and_workers_mb"],
        "stated_limit_mb": round(limit_mb, 1),
        "peak_rss_within_limit": phase2["peak_server_and_workers_mb"] <= limit_mb,
        "hostile_queries_answered": len(answered),
        "hostile_queries_refused_busy": outcomes.get("refused: busy", 0),
    }
    meets = {
        "attack_factor_page_p95_ms": headline["attack_factor_page_p95_ms"]
        <= TARGETS["attack_factor_page_p95_ms"],
        "page_errors": page_errors <= TARGETS["page_errors"],
        "peak_rss_within_limit": headline["peak_rss_within_limit"],
    }
    import dash

    report = {
        "benchmark": "console_load",
        "headline": headline,
        "targets": TARGETS,
        "meets_targets": meets,
        "limits": {
            "console_memory_mb_per_query": memory_mb,
            "result_cap_mb": SQL_MAX_MB,
            "console_slots": SQL_CONSOLE_SLOTS,
            "timeout_s": SQL_TIMEOUT_S,
            "stated_limit": "phase-1 server peak RSS + slots x (memory limit + result cap)",
        },
        "pages_alone": {
            **pages_alone,
            "wall_s": round(alone_wall, 2),
            "errors": len(alone_errors),
            "rss": phase1,
        },
        "pages_under_attack": {
            **pages_under,
            "wall_s": round(under_wall, 2),
            "errors": len(under_errors),
            "error_samples": under_errors[:10],
            "rss": phase2,
        },
        "hostile": {
            "attackers": args.attackers,
            "outcomes": dict(outcomes),
            "by_query": by_query,
            "answered_seconds": summarise(answered) if answered else None,
        },
        "server": {"server_header": server_header, "stop": stopped, "address": "127.0.0.1"},
        "database": {
            "n_sentences": args.n_sentences,
            "n_factors": n_factors,
            "layers": layers,
            "build_seconds": build_seconds,
        },
        "load": {
            "clients": args.clients,
            "requests_per_client": args.requests,
            "mix": args.mix,
            "all_requests_alone": all_alone,
            "all_requests_under_attack": all_under,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "dash": dash.__version__,
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    if not stopped.get("clean"):
        report["server"]["log_tail"] = server_log
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"factor page p95 {headline['alone_factor_page_p95_ms']} ms alone, "
        f"{headline['attack_factor_page_p95_ms']} ms under {args.attackers} hostile console "
        f"clients (target <= {TARGETS['attack_factor_page_p95_ms']:g}); {page_errors} page "
        f"errors; peak RSS {headline['peak_server_and_workers_mb']} MB (server and workers) "
        f"against the stated {headline['stated_limit_mb']} MB; hostile: {dict(outcomes)} "
        f"-> {args.out}"
    )
    return 1 if page_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
