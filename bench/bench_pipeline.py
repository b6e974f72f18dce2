"""End-to-end pipeline throughput and peak memory at two corpus sizes.

Run: ``python bench/bench_pipeline.py --out bench/results/pipeline.json``

Each stage runs as its own `factorscope` process (as a user runs it) under a tiny
wrapper that reports the child's peak RSS, so the figures are per stage and not
polluted by this script. Encode streams the corpus chunk by chunk, so its peak RSS
must not grow with the corpus: the ratio of peak RSS between the two sizes is
reported (target: close to 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRAPPER = (
    "import resource, subprocess, sys, json, time;"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode;"
    "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t,"
    " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
)


def measured(args: list[str]) -> dict:
    cli = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cli, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "FACTORSCOPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"factorscope {' '.join(args)} failed")
    return result


def run_size(work: Path, n_sentences: int, n_factors: int) -> dict:
    db = work / f"bench-{n_sentences}.duckdb"
    common = ["--db", str(db)]
    ingest = measured(
        ["ingest", *common, "--max-sentences", str(n_sentences), "--sample-size", "20000"]
    )
    learn = measured(["learn", *common, "-m", str(n_factors), "--max-vectors", "20000"])
    encode = measured(["encode", *common])
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    n_tokens, n_layers = con.execute("SELECT n_tokens, n_layers FROM runs").fetchall()[0]
    n_codes = con.execute("SELECT count(*) FROM codes").fetchall()[0][0]
    con.close()
    return {
        "sentences": n_sentences,
        "tokens": n_tokens,
        "layers": n_layers,
        "codes": n_codes,
        "ingest": ingest,
        "learn": learn,
        "encode": encode,
        "ingest_tokens_per_s": n_tokens / ingest["seconds"],
        "encode_tokens_per_s": n_tokens / encode["seconds"],
        "encode_vectors_per_s": n_tokens * n_layers / encode["seconds"],
        "ingest_plus_encode_tokens_per_s": n_tokens / (ingest["seconds"] + encode["seconds"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    parser.add_argument("--sizes", type=int, nargs=2, default=(300, 1200))
    parser.add_argument("--n-factors", type=int, default=512)
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        small, large = (run_size(Path(tmp), n, args.n_factors) for n in args.sizes)
    result = {
        "benchmark": "pipeline",
        "n_factors": args.n_factors,
        "small": small,
        "large": large,
        "encode_peak_rss_ratio_large_over_small": large["encode"]["peak_rss_mb"]
        / small["encode"]["peak_rss_mb"],
        "corpus_ratio": large["tokens"] / small["tokens"],
        "wall_seconds": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"{'size':>6} {'tokens':>8} {'ingest tok/s':>13} {'encode tok/s':>13} "
        f"{'ingest+encode':>14} {'encode RSS MB':>14}"
    )
    for row in (small, large):
        print(
            f"{row['sentences']:>6} {row['tokens']:>8} {row['ingest_tokens_per_s']:>13,.0f} "
            f"{row['encode_tokens_per_s']:>13,.0f} "
            f"{row['ingest_plus_encode_tokens_per_s']:>14,.0f} "
            f"{row['encode']['peak_rss_mb']:>14,.0f}"
        )
    print(
        f"encode peak RSS ratio {result['encode_peak_rss_ratio_large_over_small']:.2f} "
        f"for a {result['corpus_ratio']:.1f}x corpus"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
