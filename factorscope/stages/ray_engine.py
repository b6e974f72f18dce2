"""`factorscope encode --engine ray`: the shard encode as a Ray Data pipeline.

``ray.data`` over this shard's sentences, one block per chunk -> ``map_batches`` with
an actor pool: each actor loads the model and the dictionary once, then codes its
chunks with :class:`factorscope.stages.encode_loop.ChunkEncoder` (the local encode's
per-chunk function, so codes are identical) and writes each chunk's files itself with
:class:`~factorscope.stages.encode_loop.ParquetShardSink`, the local engine's sink:
code files per layer, then the stats file that marks the chunk done. One GPU per
actor when CUDA is present. The driver then writes the same partial summaries and
manifest as the local engine, so ``factorscope merge`` takes either engine's folders.

Resumable like the local engine: chunks are numbered by their place in the shard
(``batch_sentences`` sentences each, recorded in ``job.json``), so a run killed mid-way
and started again codes only the chunks without a stats file; ``shard.json`` is
written last.

Ray is an optional dependency (``pip install 'factorscope[scale]'``). Connect to a
cluster with ``ray_address`` (or ``RAY_ADDRESS``); without one a local instance is
started. On a cluster, ``out_dir`` must be a path every node can write (a shared
file system).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError
from factorscope.stages.encode_loop import EncodeConfig, ParquetShardSink
from factorscope.stages.shard_encode import (
    DEFAULT_IMPORTANCE_K,
    DEFAULT_PARTIAL_K,
    ShardJob,
    ShardSummary,
    check_k,
    check_out_dir,
    finish_shard,
    prepare_shard,
)
from factorscope.stages.sharding import ShardSpec
from factorscope.warehouse.parquet import ShardLayout

log = logging.getLogger(__name__)

TASKS_PER_ACTOR = 2
"""Chunks queued at an actor at once: one running, one waiting (what a killed driver
loses at most per actor, beyond the chunks whose files are written)."""


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
    """One chunk's sentences as a one-chunk
    :class:`~factorscope.stages.encode_loop.ChunkSource` (token counts are checked by
    the actor, ids are not)."""

    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self.rows = rows

    def where(self, chunk: int) -> str:
        return f"chunk {chunk}"

    def sentences(self, chunk: int) -> list[tuple[int, str]]:
        return self.rows

    def stored_ids(self, chunk: int) -> None:
        return None

    def states(self, chunk: int):
        raise InputError("the Ray engine runs the model; it reads no stored states")


class EncodeActor:
    """A Ray actor: the model and the dictionary, loaded once; chunks of sentences in
    (columns ``chunk``, ``chunk_rows``, ``sentence_idx``, ``text``, ``n_tokens``), each
    chunk's files written to the shard folder ``out_dir``; one row per chunk out
    (``chunk``, ``n_codes``)."""

    def __init__(self, *, run: dict, record, config: EncodeConfig, out_dir: str, shard: int):
        from factorscope.stages.coder import coder_for
        from factorscope.stages.encode_loop import ChunkEncoder, load_run_model

        encoder = coder_for(record, backend=config.backend)
        self.encode = ChunkEncoder(
            encoder, load_run_model(run, config), run, batch_size=config.batch_size
        )
        self.sink = ParquetShardSink(ShardLayout(Path(out_dir)), shard)

    def __call__(self, batch: pa.Table) -> pa.Table:
        chunks = batch.column("chunk").to_numpy()
        done = [self._chunk(int(c), batch.filter(pa.array(chunks == c))) for c in np.unique(chunks)]
        return pa.table(
            {
                "chunk": pa.array([c for c, _ in done], pa.int32()),
                "n_codes": pa.array([n for _, n in done], pa.int64()),
            }
        )

    def _chunk(self, chunk: int, rows: pa.Table) -> tuple[int, int]:
        """Code one whole chunk and write its files (a retried chunk rewrites its own)."""
        t0 = time.perf_counter()
        if rows.num_rows != rows.column("chunk_rows")[0].as_py():
            raise RuntimeError(f"chunk {chunk} reached an actor split across batches")
        idx = rows.column("sentence_idx").to_numpy()
        texts = rows.column("text").to_pylist()
        out = self.encode(_BatchChunk(list(zip(idx.tolist(), texts, strict=True))), chunk)
        expected = int(np.sum(rows.column("n_tokens").to_numpy()))
        if out.n_tokens != expected:
            raise RuntimeError(
                f"sentences {idx.min()}..{idx.max()}: the tokenizer gives {out.n_tokens} tokens, "
                f"{expected} were stored at ingest (was the model changed?)"
            )
        self.sink.write(chunk, out, time.perf_counter() - t0)
        return chunk, out.codes.num_rows


def _chunk_blocks(job: ShardJob, step: int) -> list[pa.Table]:
    """This shard's sentences cut into chunks of ``step``, each tagged with its number."""
    source = job.sentences.select(["sentence_idx", "text", "n_tokens"])
    blocks = []
    for chunk, start in enumerate(range(0, source.num_rows, step)):
        block = source.slice(start, step)
        n = block.num_rows
        blocks.append(
            block.append_column("chunk", pa.array(np.full(n, chunk, dtype=np.int32))).append_column(
                "chunk_rows", pa.array(np.full(n, n, dtype=np.int32))
            )
        )
    return blocks


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

    ``workers`` actors run at once (one GPU each when CUDA is present); each chunk holds
    ``batch_sentences`` sentences (default: the run's chunk size). Resumable: a folder
    left by a killed run of the same job keeps its finished chunks (a different
    ``batch_sentences`` is another job, refused).
    """
    ray = import_ray()
    config = config or EncodeConfig()
    check_k(partial_k, importance_k)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    if batch_sentences is not None and batch_sentences < 1:
        raise InputError(f"batch_sentences must be at least 1, not {batch_sentences}")
    layout = ShardLayout(Path(out_dir).resolve())
    job = prepare_shard(db_path, shard, config.dictionary_id, dictionary_db=dictionary_db)
    shard = job.shard
    step = batch_sentences or job.chunk_size
    info = {**job.job_info("ray", partial_k, importance_k), "chunk_sentences": step}
    if check_out_dir(layout, info):
        return ShardSummary(layout.root, shard, "ray", 0, 0, 0, 0, 0.0, True)

    started = time.perf_counter()
    sink = ParquetShardSink(layout, shard.index)
    blocks = [b for c, b in enumerate(_chunk_blocks(job, step)) if not sink.is_done(c)]
    if blocks:
        if not ray.is_initialized():
            ray.init(address=ray_address, logging_level=logging.WARNING, log_to_driver=False)
        coded = ray.data.from_arrow(blocks).map_batches(
            EncodeActor,
            fn_constructor_kwargs={
                "run": job.run,
                "record": job.record,
                "config": config,
                "out_dir": str(layout.root),
                "shard": shard.index,
            },
            batch_size=None,  # one block, one chunk, per call
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(
                size=workers, max_tasks_in_flight_per_actor=TASKS_PER_ACTOR
            ),
            num_gpus=1 if _cuda_available() else 0,
            num_cpus=1,
        )
        # Each row: a chunk whose files an actor has written (its stats file last).
        for row in coded.iter_rows():
            log.debug("shard %s: chunk %s written", shard, row["chunk"])
            crashpoint("ray.chunk")
    stats_files = sorted(layout.stats.glob("part-*.parquet"))
    n_codes = 0
    if stats_files:
        stats = pa.concat_tables([pq.read_table(p) for p in stats_files])
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
