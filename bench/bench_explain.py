"""Evidence on the demo run: a Gaussian control and `explain` of the dictionary with it.

    python bench/bench_explain.py --db factorscope.duckdb --out bench/results/explain.json

Needs a finished run of configs/default.toml (``make demo``'s database; it is copied,
never written). On the copy it times, each as the CLI runs it: ``learn --control
gaussian`` (the lambda bisection), ``encode`` of the control, and ``explain`` of the
learned dictionary with its control (tagging, fitting and scoring every factor at every
layer). Issue 20's target: explaining and scoring every factor at every layer of the
demo run, controls included, in at most 10 minutes on 2 cores. The run's per-layer
evidence (mean held-out detection, learned against control) is recorded beside it.
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
import time
from pathlib import Path

import duckdb

CLI = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
TARGET_EXPLAIN_S = 600


def _timed(args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "FACTORSCOPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed: {done.stderr.strip()[-500:]}")
    return seconds, done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("factorscope.duckdb"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/explain.json"))
    args = parser.parse_args()
    if not args.db.is_file():
        print(
            f"bench_explain: {args.db} not found: run `make demo` (or give --db)", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "run.duckdb"
        shutil.copyfile(args.db, db)
        con = duckdb.connect(str(db), read_only=True)
        parent = con.execute(
            "SELECT max(dictionary_id) FROM dictionaries WHERE status = 'encoded'"
        ).fetchall()[0][0]
        con.close()
        control_s, control_line = _timed(
            ["learn", "--db", str(db), "--control", "gaussian", "--parent", str(parent)]
        )
        con = duckdb.connect(str(db), read_only=True)
        control = con.execute(
            "SELECT max(dictionary_id) FROM dictionaries WHERE kind = 'control' AND parent_id = ?",
            [parent],
        ).fetchall()[0][0]
        con.close()
        encode_s, _ = _timed(["encode", "--db", str(db), "--dictionary", str(control)])
        explain_s, explain_line = _timed(["explain", "--db", str(db), "--dictionary", str(parent)])
        con = duckdb.connect(str(db), read_only=True)
        run = con.execute("SELECT n_sentences, n_tokens, n_layers FROM runs").fetchall()[0]
        per_layer = con.execute(
            """
            SELECT s.layer, d.kind, count(s.detection) AS scored,
                   round(avg(s.detection), 4) AS mean_detection
            FROM explanation_scores s JOIN dictionaries d USING (dictionary_id)
            GROUP BY ALL ORDER BY s.layer, d.kind
            """
        ).fetchall()
        n_factors = con.execute(
            "SELECT n_factors FROM dictionaries WHERE dictionary_id = ?", [parent]
        ).fetchall()[0][0]
        con.close()
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "run": {"sentences": run[0], "tokens": run[1], "layers": run[2], "factors": n_factors},
        "seconds": {
            "learn_control": round(control_s, 1),
            "encode_control": round(encode_s, 1),
            "explain": round(explain_s, 1),
        },
        "lines": {"learn_control": control_line, "explain": explain_line},
        "per_layer": [
            {"layer": r[0], "kind": r[1], "scored": r[2], "mean_detection": r[3]} for r in per_layer
        ],
        "headline": {"explain_seconds": round(explain_s, 1)},
        "targets": {"explain_seconds": TARGET_EXPLAIN_S},
        "meets_targets": {"explain_seconds": explain_s <= TARGET_EXPLAIN_S},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
