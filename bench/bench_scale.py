"""Scale-out: Ray encode throughput with 1 vs 2 workers, and merge time vs shard count.

    python bench/bench_scale.py --out bench/results/scale.json [--sentences 300]

Builds (once, into bench/.cache) a run of the packaged MiniLM-L6 over the first
``--sentences`` fortunes with a dictionary of the default size learned on a small
sample, then:

- encodes it with ``--engine ray`` on a local Ray instance with 1 and with 2 actors
  (vectors/s each, and their ratio: on 2 cores the ideal is 2.0);
- encodes it locally as 2, 4 and 8 shards and times ``factorscope merge`` of each set
  (copied and attached);
- reports the measured L0 (non-zero codes per vector) and the bytes per code in
  Parquet (zstd) and in DuckDB, for the cost model in docs/SCALE.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FACTORSCOPE_PROGRESS", "0")

CACHE = Path(__file__).resolve().parent / ".cache"


def _base_db(n_sentences: int) -> Path:
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.stages.ingest import IngestConfig, run_ingest
    from factorscope.stages.learn import LearnConfig, run_learn

    db = CACHE / f"scale_minilm_{n_sentences}.duckdb"
    if not db.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        run_ingest(
            db,
            IngestConfig(
                corpus=CorpusConfig(source="fortunes", max_sentences=n_sentences),
                sample_size=8_000,
            ),
        )
        run_learn(db, LearnConfig(seed=0))
    return db


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--sentences", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    from factorscope.stages.encode import EncodeConfig
    from factorscope.stages.merge import run_merge
    from factorscope.stages.ray_engine import run_ray_encode
    from factorscope.stages.shard_encode import run_shard_encode
    from factorscope.stages.sharding import ShardSpec

    db = _base_db(args.sentences)
    work = CACHE / "scale_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": "packaged MiniLM-L6 (7 layers x 384)",
        "sentences": args.sentences,
    }

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    result["ray"] = {"note": "includes actor start (model + dictionary load) and Ray scheduling"}
    try:
        # threads=None: each actor's torch/spams use every core (1 actor already saturates
        # a 2-core machine); threads=1: one core per actor, the per-worker scaling figure.
        for label, threads in (("threads_default", None), ("threads_1", 1)):
            runs = {}
            for workers in (1, 2):
                out = work / f"ray-{label}-{workers}"
                s = run_ray_encode(
                    db,
                    out,
                    workers=workers,
                    batch_sentences=32,
                    config=EncodeConfig(threads=threads),
                )
                runs[f"workers_{workers}"] = {
                    "seconds": round(s.seconds, 2),
                    "vectors": s.n_vectors,
                    "tokens": s.n_tokens,
                    "vectors_per_s": round(s.n_vectors / s.seconds, 1),
                    "tokens_per_s": round(s.n_tokens / s.seconds, 1),
                }
            runs["speedup_2_vs_1"] = round(
                runs["workers_2"]["vectors_per_s"] / runs["workers_1"]["vectors_per_s"], 2
            )
            result["ray"][label] = runs
    finally:
        ray.shutdown()

    manifest = json.loads((work / "ray-threads_1-1" / "shard.json").read_text())
    n_codes, n_vectors = manifest["counts"]["codes"], manifest["counts"]["vectors"]
    result["l0_codes_per_vector"] = round(n_codes / n_vectors, 2)
    result["parquet_bytes_per_code"] = round(_size(work / "ray-threads_1-1" / "codes") / n_codes, 2)

    merges = []
    for n in (2, 4, 8):
        dirs = []
        t0 = time.perf_counter()
        for i in range(n):  # one after another: the figure is merge time, not encode
            d = work / f"local-{n}" / f"shard-{i}"
            run_shard_encode(db, d, shard=ShardSpec(i, n))
            dirs.append(d)
        encode_s = time.perf_counter() - t0
        row = {"shards": n, "encode_all_shards_seconds": round(encode_s, 2)}
        for attach in (False, True):
            target = work / f"merged-{n}-{'attached' if attach else 'copied'}.duckdb"
            t0 = time.perf_counter()
            run_merge(target, dirs, attach=attach)
            key = "merge_attached_seconds" if attach else "merge_copied_seconds"
            row[key] = round(time.perf_counter() - t0, 3)
            if not attach:
                row["duckdb_file_bytes"] = target.stat().st_size
        merges.append(row)
    result["merge"] = merges
    result["codes"] = n_codes
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
