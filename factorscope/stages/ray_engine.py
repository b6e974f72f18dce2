"""`factorscope encode --engine ray`: the shard encode as a Ray Data pipeline.

``ray.data`` over this shard's sentences -> ``map_batches`` with an actor pool: each
actor loads the model and the dictionary once, then codes batches of sentences with
:class:`factorscope.stages.encode_loop.ChunkEncoder` (the local encode's per-chunk
function, so codes are identical) -> ``write_parquet`` partitioned by layer. One GPU per actor when
CUDA is present. Each batch's per-layer sums go to ``stats/`` as a side output (a few
rows per batch). The driver then writes the same partial summaries and manifest as
the local engine, so ``factorscope merge`` takes either engine's folders.

Ray is an optional dependency (``pip install 'factorscope[scale]'``). Connect to a
cluster with ``ray_address`` (or ``RAY_ADDRESS``); without one a local instance is
started. On a cluster, ``out_dir`` must be a path every node can write (a shared
file system or an object store URI that pyarrow understands).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factorscope.errors import InputError
from factorscope.stages.encode_loop import EncodeConfig
from factorscope.stages.shard_encode import (
    DEFAULT_IMPORTANCE_K,
    DEFAULT_PARTIAL_K,
    ShardSummary,
    check_k,
    finish_shard,
    prepare_shard,
)
from factorscope.stages.sharding import ShardSpec
from factorscope.warehouse.parquet import ShardLayout, write_json

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise InputError(
            "--engine ray needs Ray Data: pip install 'factorscope[scale]' (or 'ray[data]')"
        ) from e
    return ray


class _BatchChunk:
    """One Ray batch of sentences as a one-chunk
    :class:`~factorscope.stages.encode_loop.ChunkSource` (token counts are checked by
    the actor, ids are not)."""

    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self.rows = rows

    def where(self, chunk: int) -> str:
        return f"sentences from {chunk}"

    def sentences(self, chunk: int) -> list[tuple[int, str]]:
        return self.rows

    def stored_ids(self, chunk: int) -> None:
        return None

    def states(self, chunk: int):
        raise InputError("the Ray engine runs the model; it reads no stored states")


class EncodeActor:
    """A Ray actor: the model and the dictionary, loaded once; one batch of sentences in,
    its non-zero codes out (and its layer sums written to ``stats_dir``)."""

    def __init__(self, *, run: dict, record, config: EncodeConfig, stats_dir: str, shard: int):
        from factorscope.sparse import SparseEncoder
        from factorscope.stages.encode_loop import ChunkEncoder, ParquetShardSink, load_run_model
        from factorscope.stages.learn import load_learner

        encoder = SparseEncoder(load_learner(record), backend=config.backend)
        self.encode = ChunkEncoder(
            encoder, load_run_model(run, config), run, batch_size=config.batch_size
        )
        self.sink = ParquetShardSink(ShardLayout(Path(stats_dir).parent), shard)

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        idx = batch.column("sentence_idx").to_numpy()
        texts = batch.column("text").to_pylist()
        # Named by the batch's first sentence, so a retried batch overwrites its own file.
        chunk = int(idx.min())
        out = self.encode(_BatchChunk(list(zip(idx.tolist(), texts, strict=True))), chunk)
        expected = int(np.sum(batch.column("n_tokens").to_numpy()))
        if out.n_tokens != expected:
            raise RuntimeError(
                f"sentences {idx.min()}..{idx.max()}: the tokenizer gives {out.n_tokens} tokens, "
                f"{expected} were stored at ingest (was the model changed?)"
            )
        self.sink.write_stats(chunk, out.stats, time.perf_counter() - t0, out.codes)
        return out.codes


def run_ray_encode(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    shard: ShardSpec | None = None,
    config: EncodeConfig | None = None,
    workers: int = 1,
    batch_sentences: int | None = None,
    ray_address: str | None = None,
    partial_k: int = DEFAULT_PARTIAL_K,
    importance_k: int = DEFAULT_IMPORTANCE_K,
    dictionary_db: str | Path | None = None,
) -> ShardSummary:
    """Encode one shard (default: all sentences) with Ray Data into the folder ``out_dir``.

    ``workers`` actors run at once (one GPU each when CUDA is present); each takes
    ``batch_sentences`` sentences per call (default: the run's chunk size). Not
    resumable: an unfinished folder is cleared and redone.
    """
    ray = import_ray()
    config = config or EncodeConfig()
    check_k(partial_k, importance_k)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    layout = ShardLayout(Path(out_dir).resolve())
    job = prepare_shard(db_path, shard, config.dictionary_id, dictionary_db=dictionary_db)
    shard = job.shard
    info = job.job_info("ray", partial_k, importance_k)
    manifest = layout.read_manifest()
    if manifest is not None and manifest.get("job") == info:
        return ShardSummary(layout.root, shard, "ray", 0, 0, 0, 0, 0.0, True)
    if layout.root.exists() and any(layout.root.iterdir()):
        previous = layout.root / "job.json"
        if not previous.is_file():
            raise InputError(f"--out {layout.root} is not empty and holds no shard job")
        shutil.rmtree(layout.root)
    write_json(info, layout.root / "job.json")
    layout.stats.mkdir(parents=True, exist_ok=True)

    if not ray.is_initialized():
        ray.init(address=ray_address, logging_level=logging.WARNING, log_to_driver=False)
    gpus = 1 if _cuda_available() else 0
    started = time.perf_counter()
    n_codes = 0
    if job.sentences.num_rows:
        source = job.sentences.select(["sentence_idx", "text", "n_tokens"])
        step = batch_sentences or job.chunk_size
        # One block per batch, so every actor of the pool gets work.
        blocks = [source.slice(i, step) for i in range(0, source.num_rows, step)]
        codes = ray.data.from_arrow(blocks).map_batches(
            EncodeActor,
            fn_constructor_kwargs={
                "run": job.run,
                "record": job.record,
                "config": config,
                "stats_dir": str(layout.stats),
                "shard": shard.index,
            },
            batch_size=step,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus,
            num_cpus=1,
        )
        codes.write_parquet(str(layout.codes), partition_cols=["layer"])
        stats = pa.concat_tables(
            [pq.read_table(p) for p in sorted(layout.stats.glob("part-*.parquet"))]
        )
        n_codes = int(pc.sum(stats.column("n_codes")).as_py() or 0)
    seconds = time.perf_counter() - started
    n_vectors = job.tokens.num_rows * int(job.run["n_layers"])
    return finish_shard(
        layout, job, info, engine="ray", seconds=seconds, n_vectors=n_vectors, n_codes=n_codes
    )


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False
