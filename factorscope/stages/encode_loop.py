"""The one encode loop: chunks of a run in, codes and layer sums out, into a sink.

A local encode and a shard encode differ only in where chunks come from and where
their codes go, so both run :func:`encode_chunks`:

- a :class:`ChunkSource` gives a chunk's sentences (or its stored hidden states) and
  the token ids stored at ingest;
- :class:`ChunkEncoder` codes one chunk: the model's forward pass (or the stored
  states) -> :class:`~factorscope.sparse.SparseEncoder` -> non-zero codes and the
  per-layer sums layer_quality is derived from (:class:`EncodedBatch`). The Ray engine's
  actors call the same object on each batch;
- a :class:`ChunkSink` commits a chunk atomically and says which are already
  committed, so a killed run resumes at the first missing chunk:
  :class:`DuckDBSink` (the run database's staging file) or :class:`ParquetShardSink`
  (a shard folder in the layout of :mod:`factorscope.warehouse.parquet`).

After each committed chunk the sink's crash point fires (``encode.chunk`` or
``shard.chunk``; see docs/CONTRACTS.md, "Crash safety").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from factorscope.crashpoints import crashpoint
from factorscope.errors import ModelLoadError, WarehouseError
from factorscope.ingest.model import LoadedModel, load_model
from factorscope.ingest.runner import MAX_POSITIONS, hidden_states, tokenize
from factorscope.progress import progress_bar
from factorscope.sparse import SparseEncoder
from factorscope.warehouse import store
from factorscope.warehouse.parquet import ShardLayout, write_parquet


@dataclass(frozen=True)
class EncodeConfig:
    """Runtime settings of encode; the results depend only on the stored run and dictionary."""

    dictionary_id: int | None = None
    backend: str = "spams"
    batch_size: int = 32
    device: str | None = None
    threads: int | None = None


class TokenMismatchError(WarehouseError):
    """The tokenizer no longer gives the tokens stored at ingest."""


def load_run_model(run: dict, config: EncodeConfig | None = None) -> LoadedModel:
    """The run's model, by its recorded name first and its recorded path second."""
    config = config or EncodeConfig()
    try:
        return load_model(run["model"], device=config.device, threads=config.threads)
    except Exception as e:
        if run.get("model_path") and Path(run["model_path"]).exists():
            return load_model(run["model_path"], device=config.device, threads=config.threads)
        if isinstance(e, ModelLoadError):
            raise ModelLoadError(
                f"cannot load model {run['model']!r} of this run (it was ingested with it): {e}; "
                "restore the model's folder, or ingest again into a new --db"
            ) from e
        raise


def layer_stats(
    encoder: SparseEncoder, X: np.ndarray, layers: np.ndarray, codes
) -> dict[str, list]:
    """Per-layer sums from which layer_quality is derived exactly (see store.finish_encoding).

    Row norms are taken in float32 (relative error ~1e-7 per row) and summed in float64.
    The work runs beside the solver, one layer's rows at a time: small temporaries
    that the allocator reuses instead of mapping fresh pages for every chunk.
    """
    out: dict[str, list] = {k: [] for k in store.STATS_COLUMNS}
    order = np.argsort(layers, kind="stable")  # rows come grouped by layer: no reordering
    bounds = np.flatnonzero(np.diff(layers[order])) + 1
    l0 = np.diff(codes.indptr)
    for rows in np.split(order, bounds):
        if rows.size == 0:
            continue
        contiguous = rows[-1] - rows[0] + 1 == rows.size
        pick = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows
        layer = int(layers[rows[0]])
        Xp = encoder.preprocess(X[pick], layers=layer)
        residual = Xp - encoder.reconstruct(codes[pick])
        out["layer"].append(layer)
        out["n_vectors"].append(int(rows.size))
        out["sq_residual"].append(
            float(np.einsum("ij,ij->i", residual, residual).sum(dtype=np.float64))
        )
        out["sq_norm"].append(float(np.einsum("ij,ij->i", Xp, Xp).sum(dtype=np.float64)))
        out["sum_x"].append(Xp.sum(axis=0, dtype=np.float64).tolist())
        out["sum_l0"].append(int(l0[pick].sum()))
        out["n_zero_codes"].append(int((l0[pick] == 0).sum()))
    return out


def _codes_table(codes, layers: np.ndarray, token_ids: np.ndarray) -> pa.Table:
    coo = codes.tocoo()
    return pa.table(
        {
            "layer": pa.array(layers[coo.row].astype(np.int16)),
            "factor": pa.array(coo.col.astype(np.int32)),
            "token_id": pa.array(token_ids[coo.row].astype(np.int64)),
            "alpha": pa.array(coo.data.astype(np.float32)),
        }
    )


@dataclass(frozen=True)
class EncodedBatch:
    """The codes and per-layer sums of one batch of sentences (every token, every layer)."""

    codes: pa.Table  # layer, factor, token_id, alpha (non-zeros only)
    stats: pa.Table  # one row per layer: see layer_stats
    n_tokens: int
    n_vectors: int


@dataclass(frozen=True)
class ChunkVectors:
    """One chunk's hidden states ready to code: rows ordered (layer, token)."""

    X: np.ndarray  # (n_layers * n_tokens, d) float32
    layers: np.ndarray  # layer of each row
    token_ids: np.ndarray  # token id of each row
    n_tokens: int


def forward_vectors(
    loaded: LoadedModel,
    rows: list[tuple[int, str]],
    *,
    max_length: int,
    keep_special: bool,
    batch_size: int = 32,
    stored_ids: np.ndarray | None = None,
) -> ChunkVectors:
    """Run the model over ``rows`` ((sentence_idx, text) pairs): every token, every layer.

    ``stored_ids``, when given, are the sorted token ids stored at ingest; a tokenizer
    that no longer gives them raises :class:`TokenMismatchError`.
    """
    tokenized = tokenize(
        loaded, [text for _, text in rows], max_length=max_length, keep_special=keep_special
    )
    states = hidden_states(loaded, tokenized, batch_size=batch_size)
    token_ids = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [
            idx * MAX_POSITIONS + ts.positions.astype(np.int64)
            for (idx, _), ts in zip(rows, tokenized, strict=True)
        ]
    )
    if stored_ids is not None and not np.array_equal(np.sort(token_ids), stored_ids):
        raise TokenMismatchError(
            "the model's tokenizer no longer gives the stored tokens "
            "(was the model changed since ingest?)"
        )
    n_layers = loaded.n_layers
    # rows ordered (layer, token): X[l * n + t] = state of token t at layer l
    X = np.concatenate(
        [np.zeros((0, n_layers, loaded.hidden_size), dtype=np.float32)]
        + [s.transpose(1, 0, 2) for s in states],
        axis=0,
    )  # (n, L, d)
    n_tok = X.shape[0]
    X = np.ascontiguousarray(X.transpose(1, 0, 2).reshape(n_layers * n_tok, -1))
    layers = np.repeat(np.arange(n_layers), n_tok)
    return ChunkVectors(X, layers, np.tile(token_ids, n_layers), n_tok)


def coded_batch(encoder: SparseEncoder, vectors: ChunkVectors, codes) -> EncodedBatch:
    """A chunk's non-zero codes as a table, with its per-layer quality sums."""
    stats = layer_stats(encoder, vectors.X, vectors.layers, codes)
    return EncodedBatch(
        codes=_codes_table(codes, vectors.layers, vectors.token_ids),
        stats=store.stats_table(stats),
        n_tokens=vectors.n_tokens,
        n_vectors=vectors.X.shape[0],
    )


class ChunkSource(Protocol):
    """Where a chunk's input comes from (the run database, or a shard's rows)."""

    def where(self, chunk: int) -> str:
        """Names the chunk in error messages ("chunk 3", "shard 0/4, chunk 3")."""

    def sentences(self, chunk: int) -> list[tuple[int, str]]:
        """(sentence_idx, text) of the chunk's sentences, in order."""

    def stored_ids(self, chunk: int) -> np.ndarray | None:
        """Sorted token ids stored at ingest for the chunk (None: not checked)."""

    def states(self, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The chunk's stored hidden states as (vectors, layers, token_ids)."""


@dataclass(frozen=True)
class ChunkEncoder:
    """Codes one chunk: the forward pass (or, with ``loaded`` None, the stored states).

    The three steps are separate so that :func:`encode_chunks` can overlap them across
    chunks: :meth:`vectors` (read or run the model), :meth:`solve` (the lasso), and
    :meth:`batch` (quality sums and the codes table, done beside the writes).
    """

    encoder: SparseEncoder
    loaded: LoadedModel | None
    run: dict
    batch_size: int = 32

    def __call__(self, source: ChunkSource, chunk: int) -> EncodedBatch:
        vectors = self.vectors(source, chunk)
        return self.batch(vectors, self.solve(vectors))

    def vectors(self, source: ChunkSource, chunk: int) -> ChunkVectors:
        stored_ids = source.stored_ids(chunk)
        if self.loaded is None:
            X, layers, token_ids = source.states(chunk)
            n_tokens = int(stored_ids.size)
            if X.shape[0] != n_tokens * int(self.run["n_layers"]):
                raise WarehouseError(
                    f"{source.where(chunk)}: the stored hidden states are incomplete; "
                    "run `factorscope ingest` again"
                )
            return ChunkVectors(X, layers, token_ids, n_tokens)
        ingest_config = self.run["config"]
        try:
            return forward_vectors(
                self.loaded,
                source.sentences(chunk),
                max_length=int(ingest_config["max_length"]),
                keep_special=bool(ingest_config["keep_special"]),
                batch_size=self.batch_size,
                stored_ids=stored_ids,
            )
        except TokenMismatchError as e:
            raise WarehouseError(f"{source.where(chunk)}: {e}") from e

    def solve(self, vectors: ChunkVectors):
        return self.encoder.transform(vectors.X, layers=vectors.layers)

    def batch(self, vectors: ChunkVectors, codes) -> EncodedBatch:
        return coded_batch(self.encoder, vectors, codes)


class ChunkSink(Protocol):
    """Where a chunk's codes go; ``write`` commits one chunk atomically."""

    crash_point: str

    def is_done(self, chunk: int) -> bool:
        """Whether an earlier (interrupted) run committed the chunk."""

    def write(self, chunk: int, batch: EncodedBatch, seconds: float) -> None:
        """Commit the chunk's codes and layer sums."""


@dataclass(frozen=True)
class LoopTotals:
    n_vectors: int
    n_codes: int
    seconds: float


def encode_chunks(
    source: ChunkSource,
    chunks: Sequence[int],
    encode: ChunkEncoder,
    sink: ChunkSink,
    *,
    label: str,
    total_tokens: int,
) -> LoopTotals:
    """Encode every chunk the sink does not hold yet, committing each in chunk order.

    Three chunks are in flight at once: while this thread solves chunk ``i``, a helper
    thread runs the model over chunk ``i + 1`` and another sums and writes chunk
    ``i - 1`` (the solver, torch and DuckDB release the GIL). Memory stays bounded by
    three chunks; a chunk is committed only after the one before it, so a killed run
    still resumes at the first missing chunk. Any step's error stops the loop and is
    raised here.
    """
    todo = [c for c in chunks if not sink.is_done(c)]
    n_layers = int(encode.run["n_layers"])
    started = time.perf_counter()
    totals = {"n_vectors": 0, "n_codes": 0, "last": started}
    with progress_bar(label, total=total_tokens) as bar:
        task = bar.task_ids[0]

        def write(chunk: int, vectors: ChunkVectors, codes) -> None:
            batch = encode.batch(vectors, codes)
            # The chunk's share of the wall clock (chunks overlap), so that the chunks'
            # seconds add up to the stage's time.
            now = time.perf_counter()
            sink.write(chunk, batch, now - totals["last"])
            totals["last"] = now
            totals["n_vectors"] += batch.n_vectors
            totals["n_codes"] += batch.codes.num_rows
            crashpoint(sink.crash_point)
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=batch.n_tokens, rate=totals["n_vectors"] / n_layers / elapsed)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix=label) as pool:
            try:
                _overlapped(pool, todo, source, encode, write)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return LoopTotals(totals["n_vectors"], totals["n_codes"], time.perf_counter() - started)


def _overlapped(pool: ThreadPoolExecutor, todo: list[int], source, encode, write) -> None:
    """Run ``encode.vectors`` one chunk ahead and ``write`` one chunk behind the solver."""
    if not todo:
        return
    ahead: Future = pool.submit(encode.vectors, source, todo[0])
    behind: Future | None = None
    for i, chunk in enumerate(todo):
        vectors = ahead.result()
        if i + 1 < len(todo):
            ahead = pool.submit(encode.vectors, source, todo[i + 1])
        codes = encode.solve(vectors)
        if behind is not None:
            behind.result()
        behind = pool.submit(write, chunk, vectors, codes)
    if behind is not None:
        behind.result()


class DuckDBSink:
    """Chunks into the run database's staging copy: each chunk's codes to a Parquet file
    in ``staging`` (loaded sorted into the file at the end, see
    :func:`~factorscope.warehouse.store.finish_encoding`), its layer sums and bookkeeping
    row into the database."""

    crash_point = "encode.chunk"

    def __init__(self, con, dictionary_id: int, staging: Path) -> None:
        self.con = con
        self.dictionary_id = dictionary_id
        self.staging = staging
        self.done = store.done_staged_chunks(con, dictionary_id, staging)

    def is_done(self, chunk: int) -> bool:
        return chunk in self.done

    def write(self, chunk: int, batch: EncodedBatch, seconds: float) -> None:
        store.write_encode_chunk(
            self.con,
            dictionary_id=self.dictionary_id,
            chunk=chunk,
            codes=batch.codes,
            stats=batch.stats,
            seconds=seconds,
            staging=self.staging,
        )


class ParquetShardSink:
    """Chunks into a shard folder: code files per layer, then the stats file that marks
    the chunk done."""

    crash_point = "shard.chunk"

    def __init__(self, layout: ShardLayout, shard: int) -> None:
        self.layout = layout
        self.shard = shard

    def is_done(self, chunk: int) -> bool:
        return self.layout.stats_part(self.shard, chunk).is_file()

    def write(self, chunk: int, batch: EncodedBatch, seconds: float) -> None:
        """One chunk's codes (one file per layer) and then its stats (the done-marker).

        Code files of this chunk left by a run killed before its stats were written are
        removed first, so the chunk holds exactly the new run's files.
        """
        layout, codes = self.layout, batch.codes
        name = layout.codes_part(0, self.shard, chunk).name
        for stale in layout.codes.glob(f"layer=*/{name}"):
            stale.unlink()
        layer = codes.column("layer").to_numpy()
        bounds = np.flatnonzero(np.diff(layer)) + 1  # codes come sorted by layer
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [layer.size]])
        for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
            if hi > lo:
                part = codes.slice(lo, hi - lo).drop_columns(["layer"])
                write_parquet(part, layout.codes_part(int(layer[lo]), self.shard, chunk))
        self.write_stats(chunk, batch.stats, seconds, codes)

    def write_stats(
        self, chunk: int, stats: pa.Table, seconds: float, codes: pa.Table | None
    ) -> None:
        """The chunk's layer sums, keyed by shard and chunk, with its code counts."""
        layers = stats.column("layer").to_numpy()
        if codes is not None and codes.num_rows:
            counts = np.bincount(
                codes.column("layer").to_numpy().astype(np.int64), minlength=int(layers.max()) + 1
            )[layers]
        else:
            counts = np.zeros(layers.size, dtype=np.int64)
        n = stats.num_rows
        keyed = (
            stats.append_column("shard", pa.array(np.full(n, self.shard, dtype=np.int32)))
            .append_column("chunk", pa.array(np.full(n, chunk, dtype=np.int32)))
            .append_column("n_codes", pa.array(counts.astype(np.int64)))
            .append_column("seconds", pa.array(np.full(n, seconds, dtype=np.float64)))
        )
        write_parquet(keyed, self.layout.stats_part(self.shard, chunk))
