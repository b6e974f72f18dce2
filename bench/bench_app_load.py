"""Load test of the Dash app: ``factorscope serve`` (the real server) on 127.0.0.1.

Starts the ``factorscope serve`` command in a subprocess over a synthetic database (or
``--db``), then measures two things:

1. **Single user**: one client asks for factor pages one after another (the page
   router's ``/_dash-update-component`` POST, which carries the whole page: figures,
   contexts, neighbours, intervals). First every (factor, layer) once (``cold``: never
   asked before in this server), then the same ones again (``warm``). Target: p95 of
   the cold views <= 150 ms.
2. **Load**: ``--clients`` threads each send ``--requests`` requests drawn (seeded)
   from the app's real traffic: page GETs, Dash's layout/dependencies GETs, and POSTs
   to ``/_dash-update-component`` for the query-backed callbacks (the page router
   rendering a factor page at a layer drawn per request, or the run page, paging the
   top contexts, validating a typed factor, picking a random factor, a word search,
   an SQL console query). Callback payloads are built from the server's own
   ``/_dash-dependencies``, so they match what the browser sends. Any non-200 answer
   or a callback answer without ``response`` is an error. Targets: 0 errors, every
   route's p95 <= 500 ms.

The targets are written beside the figures (``targets``, ``meets_targets``); the
script exits 1 when there were errors, not when a latency target is missed (this is
a benchmark, not a timed test). Loopback only, bounded loops.

    python bench/bench_app_load.py --out bench/results/app_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
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

TARGETS = {
    "single_user_factor_page_p95_ms": 150.0,
    "load_errors": 0,
    "load_route_p95_ms": 500.0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_command() -> list[str]:
    """The ``factorscope`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("factorscope")
    if script.exists():
        return [str(script)]
    found = shutil.which("factorscope")
    if found is None:
        raise SystemExit("no `factorscope` command next to this Python or on PATH")
    return [found]


def start_server(
    db: Path, port: int, log_path: Path, extra: list[str]
) -> tuple[subprocess.Popen, str]:
    """``factorscope serve`` on 127.0.0.1:``port``; the process and its ``Server`` header."""
    log = log_path.open("w")
    command = [*cli_command(), "serve", "--db", str(db), "--port", str(port), *extra]
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log_path.read_text()}")
        try:
            resp = requests.get(url + "/_dash-layout", timeout=2)
            if resp.ok:
                return proc, resp.headers.get("Server", "")
        except requests.RequestException:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_server(proc: subprocess.Popen) -> dict:
    """SIGTERM, as a service manager would; how it ended."""
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        return {"signal": "SIGTERM", "exit_code": code, "clean": False}
    seconds = round(time.perf_counter() - started, 2)
    return {"signal": "SIGTERM", "exit_code": code, "clean": code == 0, "seconds": seconds}


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


Template = tuple[str, str, str, Any]  # kind, method, url, body (a dict, or rng -> dict)


def database_shape(db: Path) -> tuple[int, list[int]]:
    from factorscope.dash_app import logic
    from factorscope.warehouse.queries import WarehouseReader

    n_factors = logic.dictionary_size(db)
    layers = logic.layer_list(db)
    WarehouseReader(db).close()  # hold no connection on the server's file
    return n_factors, layers


def factor_page_body(p: Payloads, factor: int, layer: int) -> dict:
    router = p.find("_pages_content.children", "_pages_location.pathname")
    return p.body(
        router,
        {
            "_pages_location.pathname": f"/factor/{factor}",
            "_pages_location.search": f"?layer={layer}",
        },
    )


def build_mix(p: Payloads, n_factors: int, layers: list[int]) -> list[Template]:
    """Request templates; factors from the database, a factor page's layer drawn per request."""
    from factorscope.warehouse.safe_sql import CONSOLE_EXAMPLES

    rng = random.Random(0)
    factors = rng.sample(range(n_factors), min(40, n_factors))

    contexts = p.find("factor-contexts-table.children", "factor-contexts-page.active_page")
    go = p.find("factor-feedback.children", "factor-go.n_clicks")
    rand = p.find("factor-random-feedback.children", "factor-random-low.n_clicks")
    sql = p.find("sql-table.children", "sql-run.n_clicks")
    search = p.find("search-word-output.children", "search-word-go.n_clicks")
    router = p.find("_pages_content.children", "_pages_location.pathname")
    sql_text = CONSOLE_EXAMPLES["Top tokens of factor 0 at layer 0"]

    mix: list[Template] = []
    for f in factors:
        layer = rng.choice(layers)
        state = {"factor-state.data": {"factor": f, "layer": layer}}

        def page_body(r: random.Random, f: int = f) -> dict:
            return factor_page_body(p, f, r.choice(layers))

        mix += [
            ("GET page", "GET", f"/factor/{f}?layer={layer}", None),
            ("router: factor page", "POST", "/_dash-update-component", page_body),
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
        body = p.body(rand, {f"factor-random-{level}.n_clicks": 1})
        body["changedPropIds"] = [f"factor-random-{level}.n_clicks"]
        mix.append(("random factor", "POST", "/_dash-update-component", body))
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


def send(session: requests.Session, base: str, method: str, url: str, body: Any) -> str | None:
    """One request; None when it succeeded, else what went wrong."""
    try:
        if method == "GET":
            resp = session.get(base + url, timeout=60)
        else:
            resp = session.post(base + url, json=body, timeout=60)
        if resp.status_code != 200:
            return f"{resp.status_code} {resp.text[:200]}"
        if method == "POST" and "response" not in resp.json():
            return f"no response in {resp.text[:200]}"
    except (requests.RequestException, ValueError) as e:
        return str(e)
    return None


def single_user(base: str, p: Payloads, n_factors: int, layers: list[int], *, views: int) -> dict:
    """One client, factor pages one after another: cold (first asks), then warm (repeats)."""
    rng = random.Random(1)
    pairs = rng.sample([(f, layer) for f in range(n_factors) for layer in layers], views)
    session = requests.Session()
    out: dict[str, Any] = {"views": len(pairs)}
    errors = []
    for phase in ("cold", "warm"):
        latencies = []
        sizes = []
        for factor, layer in pairs:
            body = factor_page_body(p, factor, layer)
            started = time.perf_counter()
            resp = session.post(base + "/_dash-update-component", json=body, timeout=60)
            latencies.append(time.perf_counter() - started)
            sizes.append(len(resp.content))
            if resp.status_code != 200 or "response" not in resp.json():
                errors.append(f"{factor}/{layer}: {resp.status_code}")
        out[phase] = summarise(latencies)
        out[phase]["mean_bytes"] = round(statistics.fmean(sizes))
    out["errors"] = len(errors)
    return out


def run_load(
    base: str, mix: list[Template], *, clients: int, per_client: int, seed: int
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
            if callable(body):
                body = body(rng)
            started = time.perf_counter()
            problem = send(session, base, method, url, body)
            local.append((kind, time.perf_counter() - started, problem is None))
            if problem is not None:
                with lock:
                    errors.append(f"{kind} {url}: {problem}")
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
    parser.add_argument("--views", type=int, default=60, help="single-user factor page views")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--serve-args", default="", help="extra `factorscope serve` flags, e.g. '--threads 4'"
    )
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]

    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        tmp_dir = Path(tmp)
        db = args.db
        build_seconds = None
        if db is None:
            from factorscope.warehouse.synthetic import build_synthetic_db

            started = time.perf_counter()
            db = build_synthetic_db(tmp_dir / "bench.duckdb", n_sentences=args.n_sentences)
            build_seconds = round(time.perf_counter() - started, 2)
        n_factors, layers = database_shape(db)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc, server_header = start_server(
            db, port, tmp_dir / "server.log", args.serve_args.split()
        )
        try:
            p = Payloads(requests.get(base + "/_dash-dependencies", timeout=10).json())
            mix = build_mix(p, n_factors, layers)
            # Warm-up, not timed: one request of every kind (imports, first queries), and
            # the home page, a high-level factor whose LIME card loads the analyzer (once
            # per process, in the background: give it a few seconds).
            warm = random.Random(2)
            seen = set()
            for kind, method, url, body in mix:
                if kind in seen:
                    continue
                seen.add(kind)
                send(requests.Session(), base, method, url, body(warm) if callable(body) else body)
            router = p.find("_pages_content.children", "_pages_location.pathname")
            home = {"_pages_location.pathname": "/", "_pages_location.search": ""}
            send(requests.Session(), base, "POST", "/_dash-update-component", p.body(router, home))
            time.sleep(5)
            alone = single_user(base, p, n_factors, layers, views=args.views)
            server_cpu = cpu_seconds(proc.pid)
            client_cpu = time.process_time()
            results, wall, errors = run_load(
                base, mix, clients=args.clients, per_client=args.requests, seed=args.seed
            )
            client_cpu = time.process_time() - client_cpu
            if server_cpu is not None:
                server_cpu = cpu_seconds(proc.pid) - server_cpu
        finally:
            stopped = stop_server(proc)
        server_log = (tmp_dir / "server.log").read_text()[-2000:]

    import dash

    by_kind: dict[str, list[float]] = {}
    for kind, seconds, _ok in results:
        by_kind.setdefault(kind, []).append(seconds)
    routes = {kind: summarise(values) for kind, values in sorted(by_kind.items())}
    n_errors = sum(1 for *_rest, ok in results if not ok) + alone["errors"]
    worst = max(routes.items(), key=lambda item: item[1]["p95_ms"])
    headline = {
        "single_user_factor_page_p95_ms": alone["cold"]["p95_ms"],
        "single_user_factor_page_warm_p95_ms": alone["warm"]["p95_ms"],
        "load_errors": n_errors,
        "load_worst_route": worst[0],
        "load_worst_route_p95_ms": worst[1]["p95_ms"],
        "load_factor_page_p95_ms": routes.get("router: factor page", {}).get("p95_ms"),
    }
    meets = {
        "single_user_factor_page_p95_ms": headline["single_user_factor_page_p95_ms"]
        <= TARGETS["single_user_factor_page_p95_ms"],
        "load_errors": n_errors <= TARGETS["load_errors"],
        "load_route_p95_ms": headline["load_worst_route_p95_ms"] <= TARGETS["load_route_p95_ms"],
    }
    report = {
        "benchmark": "app_load",
        "headline": headline,
        "targets": TARGETS,
        "meets_targets": meets,
        "server": {
            "command": "factorscope serve " + args.serve_args,
            "server_header": server_header,
            "stop": stopped,
            "address": "127.0.0.1",
        },
        "single_user": alone,
        "load": {
            "clients": args.clients,
            "requests_per_client": args.requests,
            "total_requests": len(results),
            "errors": n_errors,
            "error_samples": errors[:10],
            "wall_s": round(wall, 2),
            "throughput_rps": round(len(results) / wall, 1) if wall else None,
            # Where the cores went during the load: the server's CPU per request, and
            # the load generator's own (it runs on the same machine).
            "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
            "server_cpu_ms_per_request": (
                round(1000 * server_cpu / len(results), 2) if server_cpu and results else None
            ),
            "client_cpu_s": round(client_cpu, 2),
            **summarise([s for _k, s, _ok in results]),
            "by_kind": routes,
        },
        "database": {
            "path": str(args.db) if args.db else "synthetic",
            "n_sentences": args.n_sentences if args.db is None else None,
            "n_factors": n_factors,
            "layers": layers,
            "build_seconds": build_seconds,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "dash": dash.__version__,
            "platform": platform.platform(),
            # Other work on the machine moves every figure here: 1/5/15-minute load averages.
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    if not stopped.get("clean"):
        report["server"]["log_tail"] = server_log
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"single user: factor page p95 {headline['single_user_factor_page_p95_ms']} ms cold, "
        f"{headline['single_user_factor_page_warm_p95_ms']} ms warm "
        f"(target <= {TARGETS['single_user_factor_page_p95_ms']:g}); "
        f"load: {len(results)} requests, {n_errors} errors, worst route p95 "
        f"{headline['load_worst_route_p95_ms']} ms ({worst[0]}; target <= "
        f"{TARGETS['load_route_p95_ms']:g}) -> {args.out}"
    )
    return 1 if n_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
