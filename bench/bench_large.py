"""A million-word-piece run on this machine, end to end (issue 15): ``configs/large.toml``.

Run: ``python bench/bench_large.py --out bench/results/large.json`` (``make bench-large``;
about 40 minutes on 2 cores). ``make bench`` keeps the last recorded result in its summary
without running it again.

One ``factorscope pipeline --config configs/large.toml`` process runs as a user runs it,
watched from here: its resident memory is sampled every 0.2 s and each stage's peak is
the highest sample between the lines that end the stages. Then, on the finished file:

- each stage's throughput (ingest tokens/s; the encode loop's vectors/s, from the
  chunks' wall-clock shares, and the whole encode stage's, sort and summaries included);
- the bare solver's rate on the same vectors: ``spams.lasso`` (all cores, as SPAMS runs
  by default) on the run's stored hidden-state sample, preprocessed with the run's
  dictionary; the target is the encode loop at >= 0.8x of it;
- the file: size, free share, bytes per code row and per token (``factorscope status``);
- peak RSS per stage (``peak_rss_mb`` in MiB; ``peak_rss_gb`` in GiB);
- the summary refresh time (``summary_meta``);
- query latency on the real data: top-200 contexts and the IS curve of random
  (factor, layer) pairs through the warehouse's query functions, p50 and p95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "large.toml"
STAGES = ("ingest", "learn", "encode")
TARGETS = {
    "encode_over_bare_solver": 0.8,
    "peak_rss_gb": 3.0,
    "whole_run_minutes": 60.0,
    "top200_p95_ms": 50.0,
    "importance_p95_ms": 50.0,
}
HIGHER_IS_BETTER = {"encode_over_bare_solver"}


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_pipeline(db: Path) -> dict:
    """The pipeline as a subprocess; per stage: seconds (wall) and peak RSS."""
    cli = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
    env = {**os.environ, "FACTORSCOPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*cli, "pipeline", "--db", str(db), "--config", str(CONFIG)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), _rss_kb(proc.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ends: dict[str, float] = {}
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        print(line.rstrip(), flush=True)
        for stage in STAGES:
            if line.startswith(f"{stage}:") and stage not in ends:
                ends[stage] = time.perf_counter()
    rc = proc.wait()
    done.set()
    sampler.join()
    if rc != 0:
        raise SystemExit(f"the large pipeline failed (exit {rc})")
    out: dict = {"whole_run_seconds": time.perf_counter() - started, "lines": lines}
    begin = started
    for stage in STAGES:
        end = ends.get(stage, time.perf_counter())
        peak = max((kb for t, kb in samples if begin <= t <= end), default=0)
        out[stage] = {"wall_seconds": end - begin, "peak_rss_mb": peak / 1024}
        begin = end
    return out


def bare_solver_rate(db: Path, n_vectors: int) -> dict:
    """``spams.lasso`` alone on the run's stored sample, with the run's dictionary."""
    import spams

    from factorscope.sparse import SparseEncoder
    from factorscope.stages.learn import load_learner
    from factorscope.warehouse import store
    from factorscope.warehouse.connection import connect

    con = connect(db, read_only=True)
    try:
        X, layers, _ = store.read_hidden_sample(con)
        record = store.load_dictionary(con, None)
    finally:
        con.close()
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(X.shape[0], min(n_vectors, X.shape[0]), replace=False))
    encoder = SparseEncoder(load_learner(record))
    Xp = encoder.preprocess(X[keep], layers=layers[keep])
    comp = encoder.components_
    D = np.asfortranarray(comp.T)
    Xf = np.asfortranarray(Xp.T)
    lam = record.lambda1
    t0 = time.perf_counter()
    spams.lasso(Xf, D=D, lambda1=lam, mode=2, pos=True, numThreads=-1)
    seconds = time.perf_counter() - t0
    return {"vectors": int(Xp.shape[0]), "seconds": seconds, "vectors_per_s": Xp.shape[0] / seconds}


def query_latency(db: Path, n: int) -> dict:
    """p50/p95 (ms) of top-200 contexts and IS curves of random (factor, layer) pairs."""
    from factorscope.warehouse import queries
    from factorscope.warehouse.connection import connect

    con = connect(db, read_only=True)
    try:
        n_factors = queries.dictionary_size(con)
        all_layers = queries.layers(con)
        rng = np.random.default_rng(0)
        pairs = [(int(rng.integers(n_factors)), int(rng.choice(all_layers))) for _ in range(n)]
        queries.top_contexts(con, *pairs[0])  # open the file's caches once
        top, curve, page = [], [], []
        for factor, layer in pairs:
            t0 = time.perf_counter()
            queries.top_contexts(con, factor, layer, k=200)
            t1 = time.perf_counter()
            queries.importance_curve(con, factor)
            t2 = time.perf_counter()
            queries.factor_page(con, factor, layer)
            t3 = time.perf_counter()
            top.append(t1 - t0)
            curve.append(t2 - t1)
            page.append(t3 - t2)
    finally:
        con.close()

    def pct(values: list[float]) -> dict:
        ms = np.array(values) * 1000
        return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}

    return {"queries": n, "top200": pct(top), "importance": pct(curve), "factor_page": pct(page)}


def file_facts(db: Path) -> dict:
    from factorscope.warehouse.connection import connect
    from factorscope.warehouse.status import storage

    con = connect(db, read_only=True)
    try:
        run = con.execute(
            "SELECT n_sentences, n_tokens, n_layers, ingest_seconds FROM runs"
        ).fetchall()[0]
        fit_seconds = con.execute("SELECT max(fit_seconds) FROM dictionaries").fetchall()[0][0]
        loop_seconds, n_codes = con.execute(
            "SELECT sum(seconds), sum(n_codes) FROM encode_chunks"
        ).fetchall()[0]
        summary_seconds = con.execute(
            "SELECT max(TRY_CAST(value AS DOUBLE)) FROM summary_meta WHERE key = 'seconds'"
        ).fetchall()[0][0]
        facts = {
            "sentences": int(run[0]),
            "tokens": int(run[1]),
            "layers": int(run[2]),
            "ingest_seconds": float(run[3]),
            "learn_fit_seconds": float(fit_seconds or 0.0),
            "encode_loop_seconds": float(loop_seconds),
            "codes": int(n_codes),
            "summary_refresh_seconds": float(summary_seconds or 0.0),
            "storage": storage(con, db),
        }
    finally:
        con.close()
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "large.json")
    parser.add_argument("--db", type=Path, help="Keep the run here (default: a temp folder).")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--solver-vectors", type=int, default=20000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fs-large-"))
    db = args.db or work / "large.duckdb"
    try:
        pipeline = run_pipeline(db)
        facts = file_facts(db)
        bare = bare_solver_rate(db, args.solver_vectors)
        latency = query_latency(db, args.queries)
    finally:
        if args.db is None:
            shutil.rmtree(work, ignore_errors=True)
    n_vectors = facts["tokens"] * facts["layers"]
    loop_rate = n_vectors / facts["encode_loop_seconds"]
    st = facts["storage"]
    headline = {
        "tokens": facts["tokens"],
        "vectors": n_vectors,
        "ingest_tokens_per_s": facts["tokens"] / facts["ingest_seconds"],
        "learn_seconds": pipeline["learn"]["wall_seconds"],
        "encode_loop_vectors_per_s": loop_rate,
        "encode_stage_vectors_per_s": n_vectors / pipeline["encode"]["wall_seconds"],
        "bare_solver_vectors_per_s": bare["vectors_per_s"],
        "encode_over_bare_solver": loop_rate / bare["vectors_per_s"],
        "summary_refresh_seconds": facts["summary_refresh_seconds"],
        "peak_rss_gb": max(pipeline[s]["peak_rss_mb"] for s in STAGES) / 1024,
        "whole_run_minutes": pipeline["whole_run_seconds"] / 60,
        "file_mb": st["file_bytes"] / 2**20,
        "free_share": st["free_share"],
        "bytes_per_code_row": st["bytes_per_code_row"],
        "bytes_per_token": st["bytes_per_token"],
        "top200_p95_ms": latency["top200"]["p95_ms"],
        "importance_p95_ms": latency["importance"]["p95_ms"],
        "factor_page_p95_ms": latency["factor_page"]["p95_ms"],
    }
    meets = {
        name: (headline[name] >= target if name in HIGHER_IS_BETTER else headline[name] <= target)
        for name, target in TARGETS.items()
    }
    result = {
        "benchmark": "large",
        "config": str(CONFIG.relative_to(ROOT)),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "written": time.strftime("%Y-%m-%d %H:%M"),
        "headline": headline,
        "targets": TARGETS,
        "meets_targets": meets,
        "stages": {s: pipeline[s] for s in STAGES},
        "pipeline_lines": pipeline["lines"],
        "facts": facts,
        "bare_solver": bare,
        "latency": latency,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(headline, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
