"""Load test of the Dash app: concurrent clients against a real server on 127.0.0.1.

Starts ``factorscope.dash_app.serve`` in a subprocess over a synthetic database (or
``--db``), then ``--clients`` threads each send ``--requests`` requests drawn (seeded)
from the app's real traffic: page GETs, Dash's layout/dependencies GETs, and POSTs to
``/_dash-update-component`` for the query-backed callbacks (the page router rendering
a factor page or the run page, paging the top contexts, validating a typed factor,
picking a random factor, a word search, an SQL console query). Callback payloads are
built from the server's own ``/_dash-dependencies``, so they match what the browser
sends. Any non-200 answer or a callback answer without ``response`` is an error.

    python bench/bench_app_load.py --out bench/results/app_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

SERVER_SCRIPT = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from factorscope.dash_app import serve
serve(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), lime_auto_contexts=0)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(db: Path, port: int, log_path: Path) -> subprocess.Popen:
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(db), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log_path.read_text()}")
        try:
            if requests.get(url + "/_dash-layout", timeout=2).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


class Payloads:
    """Builds ``/_dash-update-component`` bodies from the server's dependency list."""

    def __init__(self, dependencies: list[dict]) -> None:
        self.deps = dependencies

    def find(self, output_fragment: str, first_input: str) -> dict:
        for dep in self.deps:
            inputs = dep["inputs"]
            if (
                output_fragment in dep["output"]
                and inputs
                and (f"{inputs[0]['id']}.{inputs[0]['property']}" == first_input)
            ):
                return dep
        raise SystemExit(f"no callback with output {output_fragment!r} and input {first_input!r}")

    @staticmethod
    def _outputs(output: str) -> Any:
        def one(spec: str) -> dict:
            ident, prop = spec.rsplit(".", 1)
            return {"id": ident, "property": prop}

        if output.startswith(".."):
            return [one(s) for s in output.strip(".").split("...")]
        return one(output)

    def body(self, dep: dict, values: dict[str, Any]) -> dict:
        def fill(items: list[dict]) -> list[dict]:
            return [
                {**item, "value": values.get(f"{item['id']}.{item['property']}")} for item in items
            ]

        first = dep["inputs"][0]
        return {
            "output": dep["output"],
            "outputs": self._outputs(dep["output"]),
            "inputs": fill(dep["inputs"]),
            "state": fill(dep.get("state", [])),
            "changedPropIds": [f"{first['id']}.{first['property']}"],
        }


def build_mix(base: str, db: Path) -> list[tuple[str, str, str, dict | None]]:
    """(kind, method, url, json body) templates; factors and layers from the database."""
    from factorscope.dash_app import logic
    from factorscope.warehouse.queries import WarehouseReader
    from factorscope.warehouse.safe_sql import CONSOLE_EXAMPLES

    deps = requests.get(base + "/_dash-dependencies", timeout=10).json()
    p = Payloads(deps)
    n_factors = logic.dictionary_size(db)
    layers = logic.layer_list(db)
    WarehouseReader(db).close()  # hold no connection on the server's file
    rng = random.Random(0)
    factors = rng.sample(range(n_factors), min(40, n_factors))

    router = p.find("_pages_content.children", "_pages_location.pathname")
    contexts = p.find("factor-contexts-table.children", "factor-contexts-page.active_page")
    go = p.find("factor-feedback.children", "factor-go.n_clicks")
    rand = p.find("factor-random-feedback.children", "factor-random-low.n_clicks")
    sql = p.find("sql-table.children", "sql-run.n_clicks")
    search = p.find("search-word-output.children", "search-word-go.n_clicks")
    sql_text = CONSOLE_EXAMPLES["Top tokens of factor 0 at layer 0"]

    mix: list[tuple[str, str, str, dict | None]] = []
    for f in factors:
        layer = rng.choice(layers)
        page_url = f"/factor/{f}?layer={layer}"
        state = {"factor-state.data": {"factor": f, "layer": layer}}
        mix += [
            ("GET page", "GET", page_url, None),
            (
                "router: factor page",
                "POST",
                "/_dash-update-component",
                p.body(
                    router,
                    {
                        "_pages_location.pathname": f"/factor/{f}",
                        "_pages_location.search": f"?layer={layer}",
                    },
                ),
            ),
            (
                "contexts page",
                "POST",
                "/_dash-update-component",
                p.body(contexts, {"factor-contexts-page.active_page": rng.randint(2, 4), **state}),
            ),
            (
                "factor input",
                "POST",
                "/_dash-update-component",
                p.body(go, {"factor-go.n_clicks": 1, "factor-input.value": str(f)}),
            ),
        ]
    for level in ("low", "mid", "high"):
        mix.append(
            (
                "random factor",
                "POST",
                "/_dash-update-component",
                p.body(rand, {f"factor-random-{level}.n_clicks": 1}),
            )
        )
        mix[-1][3]["changedPropIds"] = [f"factor-random-{level}.n_clicks"]
    for path in ("/", "/run", "/sql", "/search", "/analyze"):
        mix.append(("GET page", "GET", path, None))
    mix += [
        ("GET layout", "GET", "/_dash-layout", None),
        ("GET dependencies", "GET", "/_dash-dependencies", None),
        (
            "router: run page",
            "POST",
            "/_dash-update-component",
            p.body(router, {"_pages_location.pathname": "/run", "_pages_location.search": ""}),
        ),
        (
            "sql query",
            "POST",
            "/_dash-update-component",
            p.body(sql, {"sql-run.n_clicks": 1, "sql-text.value": sql_text}),
        ),
    ]
    for word in ("the", "left", "water", "house"):
        mix.append(
            (
                "word search",
                "POST",
                "/_dash-update-component",
                p.body(
                    search,
                    {
                        "search-word-go.n_clicks": 1,
                        "search-word.value": word,
                        "search-word-layer.value": "all",
                    },
                ),
            )
        )
    return mix


def run_load(
    base: str, mix: list, *, clients: int, per_client: int, seed: int
) -> tuple[list[tuple[str, float, bool]], float, list[str]]:
    results: list[tuple[str, float, bool]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        session = requests.Session()
        local = []
        for _ in range(per_client):
            kind, method, url, body = rng.choice(mix)
            started = time.perf_counter()
            ok = True
            try:
                if method == "GET":
                    resp = session.get(base + url, timeout=60)
                else:
                    resp = session.post(base + url, json=body, timeout=60)
                ok = resp.status_code == 200
                if ok and method == "POST":
                    ok = "response" in resp.json()
                if not ok:
                    with lock:
                        errors.append(f"{kind} {url}: {resp.status_code} {resp.text[:200]}")
            except (requests.RequestException, ValueError) as e:
                ok = False
                with lock:
                    errors.append(f"{kind} {url}: {e}")
            local.append((kind, time.perf_counter() - started, ok))
        with lock:
            results.extend(local)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    return results, time.perf_counter() - started, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(latencies: list[float]) -> dict:
    ms = [1000 * x for x in latencies]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/app_load.json"))
    parser.add_argument("--db", type=Path, help="an existing database (default: synthetic)")
    parser.add_argument("--n-sentences", type=int, default=2000, help="synthetic database size")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100, help="requests per client")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        tmp_dir = Path(tmp)
        db = args.db
        build_seconds = None
        if db is None:
            from factorscope.warehouse.synthetic import build_synthetic_db

            started = time.perf_counter()
            db = build_synthetic_db(tmp_dir / "bench.duckdb", n_sentences=args.n_sentences)
            build_seconds = round(time.perf_counter() - started, 2)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(db, port, tmp_dir / "server.log")
        try:
            mix = build_mix(base, db)
            # Warm-up: every template once, not timed.
            for _kind, method, url, body in mix:
                if method == "GET":
                    requests.get(base + url, timeout=60)
                else:
                    requests.post(base + url, json=body, timeout=60)
            results, wall, errors = run_load(
                base, mix, clients=args.clients, per_client=args.requests, seed=args.seed
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    import dash

    by_kind: dict[str, list[float]] = {}
    for kind, seconds, _ok in results:
        by_kind.setdefault(kind, []).append(seconds)
    report = {
        "benchmark": "app_load",
        "clients": args.clients,
        "requests_per_client": args.requests,
        "total_requests": len(results),
        "errors": sum(1 for *_rest, ok in results if not ok),
        "error_samples": errors[:10],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 1) if wall else None,
        **summarise([s for _k, s, _ok in results]),
        "by_kind": {kind: summarise(values) for kind, values in sorted(by_kind.items())},
        "database": {
            "path": str(args.db) if args.db else "synthetic",
            "n_sentences": args.n_sentences if args.db is None else None,
            "build_seconds": build_seconds,
        },
        "server": "factorscope.dash_app.serve (Flask/werkzeug threaded dev server), 127.0.0.1",
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "dash": dash.__version__,
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"{report['total_requests']} requests, {report['errors']} errors, "
        f"p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, "
        f"{report['throughput_rps']} req/s -> {args.out}"
    )
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
