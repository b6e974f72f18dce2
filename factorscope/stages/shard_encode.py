"""`factorscope encode --shard i/n --out DIR`: one shard of the encode, into a shard folder.

The run database (``--db``, after ``ingest`` and ``learn``) gives the sentences, the
stored tokens and the dictionary; or ``--db`` is a shard's own database (``ingest
--shard i/n``) and ``--dictionary-db`` the run database ``merge-ingest`` built and
``learn`` wrote the dictionary to. This process keeps the sentences whose stable id
hashes to shard ``i`` (:func:`~factorscope.stages.sharding.shard_of`), codes every
token at every layer exactly as the local encode does
(:func:`factorscope.stages.encode_loop.encode_chunks`, the local encode's loop, with
a :class:`~factorscope.stages.encode_loop.ParquetShardSink`), and writes Parquet in the layout of
:mod:`factorscope.warehouse.parquet`: codes partitioned by layer, this shard's
sentences and tokens, per-chunk layer sums and the partial summaries ``factorscope
merge`` needs. Chunk files are written atomically, so a killed shard resumes at its
first missing chunk; ``shard.json`` is written last and marks the folder complete.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from factorscope import __version__
from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError, WarehouseError
from factorscope.stages.coder import coder_for
from factorscope.stages.encode_loop import (
    ChunkEncoder,
    EncodeConfig,
    ParquetShardSink,
    encode_chunks,
    load_run_model,
)
from factorscope.stages.sharding import ShardSpec, run_shard, shard_of
from factorscope.warehouse import shards as wshards
from factorscope.warehouse import store, summaries
from factorscope.warehouse.connection import connect
from factorscope.warehouse.parquet import ShardLayout, write_json, write_parquet
from factorscope.warehouse.publish import newest_copy

log = logging.getLogger(__name__)

DEFAULT_PARTIAL_K = summaries.DEFAULTS.top_k
"""Rows of each (factor, layer) a shard keeps for the merged top contexts (>= served top-K)."""
DEFAULT_IMPORTANCE_K = summaries.DEFAULTS.importance_k
"""K of the importance score: a shard keeps the K largest alphas of each (factor, layer)."""

_RUN_FIELDS = (
    "model",
    "model_path",
    "revision",
    "corpus",
    "config",
    "config_hash",
    "n_layers",
    "hidden_size",
    "n_sentences",
    "n_tokens",
    "n_chunks",
    "sample_size",
    "status",
    "ingest_seconds",
    "factorscope_version",
)


@dataclass(frozen=True)
class ShardSummary:
    out_dir: Path
    shard: ShardSpec
    engine: str
    n_sentences: int
    n_tokens: int
    n_vectors: int
    n_codes: int
    seconds: float
    already_complete: bool

    def line(self) -> str:
        if self.already_complete:
            return f"encode: shard {self.shard} in {self.out_dir} is complete; nothing to do"
        rate = self.n_vectors / self.seconds if self.seconds else 0.0
        return (
            f"encode ({self.engine}): shard {self.shard}: {self.n_sentences:,} sentences, "
            f"{self.n_vectors:,} token x layer vectors -> {self.n_codes:,} non-zero codes in "
            f"{self.seconds:.1f} s ({rate:,.0f} vectors/s) -> {self.out_dir}"
        )


@dataclass
class ShardJob:
    """What every engine needs, read once from the run database."""

    run: dict
    record: store.DictionaryRecord
    dictionary_row: dict
    shard: ShardSpec
    sentences: pa.Table  # this shard's rows of `sentences`, by sentence_idx
    tokens: pa.Table  # this shard's rows of `tokens`, by token_id

    @property
    def chunk_size(self) -> int:
        return int(self.run["config"]["chunk_size"])

    @property
    def fingerprint(self) -> str:
        """Identifies run + dictionary: shards merge only when theirs are equal."""
        h = hashlib.sha1(self.run["config_hash"].encode())
        h.update(np.ascontiguousarray(self.record.components, dtype=np.float32).tobytes())
        h.update(str(self.record.lambda1).encode())
        return h.hexdigest()[:16]

    def job_info(self, engine: str, partial_k: int, importance_k: int) -> dict:
        return {
            "shard": self.shard.index,
            "n_shards": self.shard.count,
            "fingerprint": self.fingerprint,
            "engine": engine,
            "partial_k": partial_k,
            "importance_k": importance_k,
        }

    def chunks(self) -> list[np.ndarray]:
        """This shard's sentence_idx values cut into chunks of the run's chunk size."""
        idx = self.sentences.column("sentence_idx").to_numpy()
        return [idx[i : i + self.chunk_size] for i in range(0, idx.size, self.chunk_size)]

    def stored_ids(self, sentence_idx: np.ndarray) -> np.ndarray:
        token_ids = self.tokens.column("token_id").to_numpy()
        keep = np.isin(token_ids // store.TOKEN_ID_STRIDE, sentence_idx)
        return token_ids[keep]

    def texts(self, sentence_idx: np.ndarray) -> list[tuple[int, str]]:
        all_idx = self.sentences.column("sentence_idx").to_numpy()
        pos = np.searchsorted(all_idx, sentence_idx)
        texts = self.sentences.column("text").take(pa.array(pos)).to_pylist()
        return list(zip(sentence_idx.tolist(), texts, strict=True))


class _ShardChunks:
    """A shard's chunks as a :class:`~factorscope.stages.encode_loop.ChunkSource`."""

    def __init__(self, job: ShardJob) -> None:
        self.job = job
        self.chunks = job.chunks()

    def where(self, chunk: int) -> str:
        return f"shard {self.job.shard}, chunk {chunk}"

    def sentences(self, chunk: int) -> list[tuple[int, str]]:
        return self.job.texts(self.chunks[chunk])

    def stored_ids(self, chunk: int) -> np.ndarray:
        return self.job.stored_ids(self.chunks[chunk])

    def states(self, chunk: int):
        raise WarehouseError("a shard encode runs the model; it reads no stored states")


def prepare_shard(
    db_path: str | Path,
    shard: ShardSpec | None,
    dictionary_id: int | None = None,
    *,
    dictionary_db: str | Path | None = None,
) -> ShardJob:
    """Read the run, the dictionary and this shard's sentences and tokens.

    ``db_path`` gives the sentences and tokens: the whole run's database, or the shard's
    own (``ingest --shard i/n``; then ``shard`` defaults to, and must equal, the one it
    was ingested as). ``dictionary_db`` (needed for a shard's own database) is the
    whole run's database that ``learn`` wrote the dictionary to: the dictionary and the
    run recorded in the shard folder come from it, so the folder is the same as one
    encoded from the whole run's database.
    """
    db_path = Path(db_path)
    con = connect(newest_copy(db_path), read_only=True)
    try:
        run = store.require_run(con)
        ingested = run_shard(run)
        if ingested is not None:
            if dictionary_db is None:
                raise InputError(
                    f"{db_path} holds shard {ingested} of an ingest: give --dictionary-db, the "
                    "database `merge-ingest` built and `learn` wrote the dictionary to"
                )
            if shard is not None and shard != ingested:
                raise InputError(
                    f"{db_path} holds shard {ingested} of the corpus, not shard {shard}"
                )
            shard = ingested
        shard = shard or ShardSpec()
        if dictionary_db is None:
            record = store.load_dictionary(con, dictionary_id)
            row = wshards.dictionary_row(con, record.dictionary_id)
        ids = wshards.sentence_ids(con)
        sentence_idx = ids.column("sentence_idx").to_numpy()
        owned = np.fromiter(
            (
                shard_of(s, shard.count) == shard.index
                for s in ids.column("sentence_id").to_pylist()
            ),
            dtype=bool,
            count=ids.num_rows,
        )
        mine = sentence_idx[owned]
        sentences = wshards.shard_sentences(con, mine)
        tokens = wshards.shard_tokens(con, mine)
    finally:
        con.close()
    if dictionary_db is not None:
        run, record, row = _whole_run_dictionary(Path(dictionary_db), run, dictionary_id)
    return ShardJob(run, record, row, shard, sentences, tokens)


def _whole_run_dictionary(
    path: Path, shard_run: dict, dictionary_id: int | None
) -> tuple[dict, store.DictionaryRecord, dict]:
    """The whole run and its dictionary from ``--dictionary-db``, checked against the shard."""
    con = connect(newest_copy(path), read_only=True)
    try:
        run = store.require_run(con)
        if run_shard(run) is not None:
            raise InputError(
                f"--dictionary-db {path} is itself a shard ({run_shard(run)}): give the "
                "database `merge-ingest` built from all the shards"
            )
        if run["config_hash"] != shard_run["config_hash"]:
            raise InputError(
                f"--dictionary-db {path} holds another run (other corpus, model or settings)"
            )
        record = store.load_dictionary(con, dictionary_id)
        row = wshards.dictionary_row(con, record.dictionary_id)
    finally:
        con.close()
    return run, record, row


def check_out_dir(layout: ShardLayout, info: dict) -> bool:
    """Create the folder or check it holds this same job; True when already complete."""
    marker = layout.root / "job.json"
    if marker.is_file():
        import json

        previous = json.loads(marker.read_text("utf-8"))
        if previous != info:
            differs = sorted(
                k for k in info.keys() | previous.keys() if info.get(k) != previous.get(k)
            )
            raise InputError(
                f"{layout.root} holds the output of another shard, dictionary or engine (shard "
                f"{previous.get('shard')}/{previous.get('n_shards')}, engine "
                f"{previous.get('engine')}; differs in {', '.join(differs)}); use an empty folder"
            )
    else:
        if layout.root.exists() and any(layout.root.iterdir()):
            raise InputError(f"--out {layout.root} is not empty and holds no shard job")
        write_json(info, marker)
    manifest = layout.read_manifest()
    return manifest is not None and manifest.get("job") == info


def finish_shard(
    layout: ShardLayout,
    job: ShardJob,
    info: dict,
    *,
    engine: str,
    seconds: float,
    n_vectors: int,
    n_codes: int,
) -> ShardSummary:
    """Write the shard's sentences, tokens, dictionary, partial summaries and manifest."""
    write_parquet(job.sentences, layout.sentences)
    write_parquet(job.tokens, layout.tokens)
    write_parquet(
        pa.table(
            {
                "factor": pa.array(np.arange(job.record.n_factors, dtype=np.int32)),
                "vector": store.vectors_to_arrow(job.record.components),
            }
        ),
        layout.dictionary,
    )
    if not any(layout.stats.glob("part-*.parquet")):
        # An empty shard still leaves a (typed, empty) stats file for the merge.
        ParquetShardSink(layout, job.shard.index).write_stats(0, store.stats_table(), 0.0, None)
    partials = wshards.partial_summaries(
        layout, partial_k=info["partial_k"], importance_k=info["importance_k"]
    )
    for name, table in partials.items():
        write_parquet(table, layout.partial(name))
    crashpoint("shard.finish")
    row = dict(job.dictionary_row)
    write_json(
        {
            "job": info,
            "run": {k: job.run[k] for k in _RUN_FIELDS},
            "dictionary": {
                k: row[k]
                for k in (
                    "dictionary_id",
                    "lambda1",
                    "preprocessing",
                    "params",
                    "seed",
                    "fit_seconds",
                    "source",
                    "kind",
                    "parent_id",
                )
                if k in row
            },
            "counts": {
                "sentences": job.sentences.num_rows,
                "tokens": job.tokens.num_rows,
                "vectors": n_vectors,
                "codes": n_codes,
            },
            "seconds": round(seconds, 3),
            "factorscope_version": __version__,
        },
        layout.manifest,
    )
    return ShardSummary(
        layout.root,
        job.shard,
        engine,
        job.sentences.num_rows,
        job.tokens.num_rows,
        n_vectors,
        n_codes,
        seconds,
        False,
    )


def run_shard_encode(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    shard: ShardSpec | None = None,
    config: EncodeConfig | None = None,
    partial_k: int = DEFAULT_PARTIAL_K,
    importance_k: int = DEFAULT_IMPORTANCE_K,
    dictionary_db: str | Path | None = None,
) -> ShardSummary:
    """Encode one shard of the run's sentences into the shard folder ``out_dir``.

    ``shard`` defaults to the one ``db_path`` was ingested as (or the whole run);
    ``dictionary_db``: see :func:`prepare_shard`.
    """
    config = config or EncodeConfig()
    check_k(partial_k, importance_k)
    layout = ShardLayout(Path(out_dir))
    job = prepare_shard(db_path, shard, config.dictionary_id, dictionary_db=dictionary_db)
    shard = job.shard
    info = job.job_info("local", partial_k, importance_k)
    if check_out_dir(layout, info):
        return ShardSummary(layout.root, shard, "local", 0, 0, 0, 0, 0.0, True)

    loaded = load_run_model(job.run, config)
    encoder = coder_for(job.record, backend=config.backend, hidden_size=loaded.hidden_size)
    totals = encode_chunks(
        _ShardChunks(job),
        range(len(job.chunks())),
        ChunkEncoder(encoder, loaded, job.run, batch_size=config.batch_size),
        ParquetShardSink(layout, shard.index),
        label=f"encode shard {shard}",
        total_tokens=job.tokens.num_rows,
    )
    seconds, n_vectors, n_codes = totals.seconds, totals.n_vectors, totals.n_codes
    return finish_shard(
        layout, job, info, engine="local", seconds=seconds, n_vectors=n_vectors, n_codes=n_codes
    )


def check_k(partial_k: int, importance_k: int) -> None:
    """Reject a partial or importance K below 1."""
    if partial_k < 1:
        raise InputError(f"partial_k must be positive, not {partial_k}")
    if importance_k < 1:
        raise InputError(f"importance_k must be positive, not {importance_k}")
