"""`factorscope encode`: codes of every stored token at every layer.

The corpus streams through the model again chunk by chunk (only the sample of hidden
states is stored), each chunk's vectors of all layers are coded with the active
dictionary, and the non-zero codes are committed with the chunk's bookkeeping row.
Memory stays bounded by one chunk whatever the corpus size; a killed run resumes at
the first uncommitted chunk. The encode is done only when the codes *and* the
summaries built from them are published: a run killed after its last chunk finishes
the summaries (if missing) and publishes (see docs/CONTRACTS.md, "Crash safety").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError, ModelLoadError, WarehouseError
from factorscope.ingest.model import LoadedModel, load_model
from factorscope.ingest.runner import MAX_POSITIONS, hidden_states, tokenize
from factorscope.progress import progress_bar, stderr_console
from factorscope.sparse import SparseEncoder
from factorscope.stages.learn import load_learner
from factorscope.stages.sharding import run_shard
from factorscope.warehouse import queries, store
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, newest_copy, staged_database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeConfig:
    """Runtime settings of encode; the results depend only on the stored run and dictionary."""

    dictionary_id: int | None = None
    backend: str = "spams"
    batch_size: int = 32
    device: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class EncodeSummary:
    dictionary_id: int
    n_vectors: int
    n_codes: int
    seconds: float
    already_complete: bool
    quality: list[dict]
    level_counts: dict[str, int] = field(default_factory=dict)
    from_staging: bool = False

    def line(self) -> str:
        if self.from_staging:
            return (
                f"encode: dictionary {self.dictionary_id}, encoded by an interrupted run, "
                "is published"
            )
        if self.already_complete:
            return f"encode: dictionary {self.dictionary_id} is already encoded; nothing to do"
        rate = self.n_vectors / self.seconds if self.seconds else 0.0
        return (
            f"encode: {self.n_vectors:,} token x layer vectors -> {self.n_codes:,} non-zero codes "
            f"in {self.seconds:.1f} s ({rate:,.0f} vectors/s)"
        )


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
    """Per-layer sums from which layer_quality is derived exactly (see store.finish_encoding)."""
    Xp = encoder.preprocess(X, layers=layers).astype(np.float64)
    residual = Xp - encoder.reconstruct(codes)
    sq_res = np.einsum("ij,ij->i", residual, residual)
    sq_norm = np.einsum("ij,ij->i", Xp, Xp)
    l0 = np.diff(codes.indptr)
    out: dict[str, list] = {k: [] for k in ("layer", "n_vectors", "sq_residual", "sq_norm")}
    out.update({"sum_x": [], "sum_l0": [], "n_zero_codes": []})
    for layer in np.unique(layers):
        rows = layers == layer
        out["layer"].append(int(layer))
        out["n_vectors"].append(int(rows.sum()))
        out["sq_residual"].append(float(sq_res[rows].sum()))
        out["sq_norm"].append(float(sq_norm[rows].sum()))
        out["sum_x"].append(Xp[rows].sum(axis=0).tolist())
        out["sum_l0"].append(int(l0[rows].sum()))
        out["n_zero_codes"].append(int((l0[rows] == 0).sum()))
    return out


def _stats_table(stats: dict[str, list]) -> pa.Table:
    return pa.table(
        {
            "layer": pa.array(stats["layer"], pa.int16()),
            "n_vectors": pa.array(stats["n_vectors"], pa.int64()),
            "sq_residual": pa.array(stats["sq_residual"], pa.float64()),
            "sq_norm": pa.array(stats["sq_norm"], pa.float64()),
            "sum_x": pa.array(stats["sum_x"], pa.list_(pa.float64())),
            "sum_l0": pa.array(stats["sum_l0"], pa.int64()),
            "n_zero_codes": pa.array(stats["n_zero_codes"], pa.int64()),
        }
    )


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


class TokenMismatchError(WarehouseError):
    """The tokenizer no longer gives the tokens stored at ingest."""


@dataclass(frozen=True)
class EncodedBatch:
    """The codes and per-layer sums of one batch of sentences (every token, every layer)."""

    codes: pa.Table  # layer, factor, token_id, alpha (non-zeros only)
    stats: pa.Table  # one row per layer: see layer_stats
    n_tokens: int
    n_vectors: int


def encode_sentences(
    loaded: LoadedModel,
    encoder: SparseEncoder,
    rows: list[tuple[int, str]],
    *,
    max_length: int,
    keep_special: bool,
    batch_size: int = 32,
    stored_ids: np.ndarray | None = None,
) -> EncodedBatch:
    """Run the model over ``rows`` ((sentence_idx, text) pairs) and code every vector.

    The same computation serves the local encode, a shard
    (:mod:`factorscope.stages.shard_encode`) and a Ray actor. ``stored_ids``, when given,
    are the sorted token ids stored at ingest; a tokenizer that no longer gives them
    raises :class:`TokenMismatchError`.
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
    return encode_vectors(encoder, X, layers, np.tile(token_ids, n_layers), n_tokens=n_tok)


def encode_vectors(
    encoder: SparseEncoder,
    X: np.ndarray,
    layers: np.ndarray,
    token_ids: np.ndarray,
    *,
    n_tokens: int,
) -> EncodedBatch:
    """Code hidden states (one row per token x layer) and sum the per-layer quality stats."""
    codes = encoder.transform(X, layers=layers)
    stats = layer_stats(encoder, X, layers, codes)
    return EncodedBatch(
        codes=_codes_table(codes, layers, token_ids),
        stats=_stats_table(stats),
        n_tokens=n_tokens,
        n_vectors=X.shape[0],
    )


def run_encode(db_path: str | Path, config: EncodeConfig | None = None) -> EncodeSummary:
    """Encode every stored token at every layer with the chosen (default: newest) dictionary."""
    config = config or EncodeConfig()
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    con = connect(newest_copy(db_path), read_only=True)
    try:
        run = store.require_run(con)
        shard = run_shard(run)
        if shard is not None:
            raise InputError(
                f"{db_path} holds shard {shard} of an ingest: encode it into a shard folder "
                f"with `factorscope encode --db {db_path} --shard {shard} --out DIR "
                "--dictionary-db RUN_DB` (see docs/SCALE.md)"
            )
        record = store.load_dictionary(con, config.dictionary_id)
        staged_done = store.encode_finished(con, record.dictionary_id)
    finally:
        con.close()
    # Done only when published, summaries included; a staging copy whose encode is
    # finished (killed while publishing) is published below, not encoded again.
    if _published_encode_finished(db_path, record.dictionary_id):
        return EncodeSummary(record.dictionary_id, 0, 0, 0.0, True, [])
    if staged_done:
        started = time.perf_counter()
        with staged_database(db_path) as con:
            quality = store.layer_quality_rows(con, record.dictionary_id)
            levels = queries.level_counts(con)
        seconds = time.perf_counter() - started
        return EncodeSummary(record.dictionary_id, 0, 0, seconds, False, quality, levels, True)

    learner = load_learner(record)
    encoder = SparseEncoder(learner, backend=config.backend)
    if record.components.shape[1] != run["hidden_size"]:
        raise WarehouseError(
            f"dictionary {record.dictionary_id} has {record.components.shape[1]}-dim atoms but "
            f"the model's hidden size is {run['hidden_size']}"
        )
    # When ingest kept every vector (--sample-size all), encode reads them back instead
    # of running the model again: the same numbers, and no model needed.
    from_stored = run["sample_size"] == run["n_tokens"] * run["n_layers"]
    loaded = None if from_stored else load_run_model(run, config)
    ingest_config = run["config"]
    chunk_size = int(ingest_config["chunk_size"])
    n_chunks = int(run["n_chunks"])
    started = time.perf_counter()
    n_vectors = n_codes = 0
    with staged_database(db_path) as con:
        store.begin_encoding(con, record.dictionary_id)
        done = store.done_encode_chunks(con, record.dictionary_id)
        todo = [c for c in range(n_chunks) if c not in done]
        total = store.tokens_in_chunks(con, todo)
        with progress_bar("encode", total=total) as bar:
            task = bar.task_ids[0]
            for chunk in todo:
                t0 = time.perf_counter()
                lo, hi = chunk * chunk_size, (chunk + 1) * chunk_size
                stored_ids = store.read_token_ids(con, lo, hi)
                if loaded is None:
                    X, layers, token_ids = store.read_chunk_states(con, lo, hi)
                    if X.shape[0] != stored_ids.size * run["n_layers"]:
                        raise WarehouseError(
                            f"chunk {chunk}: the stored hidden states are incomplete; "
                            "run `factorscope ingest` again"
                        )
                    batch = encode_vectors(
                        encoder, X, layers, token_ids, n_tokens=int(stored_ids.size)
                    )
                else:
                    try:
                        batch = encode_sentences(
                            loaded,
                            encoder,
                            store.read_sentences(con, lo, hi),
                            max_length=int(ingest_config["max_length"]),
                            keep_special=bool(ingest_config["keep_special"]),
                            batch_size=config.batch_size,
                            stored_ids=stored_ids,
                        )
                    except TokenMismatchError as e:
                        raise WarehouseError(f"chunk {chunk}: {e}") from e
                table = batch.codes
                store.write_encode_chunk(
                    con,
                    dictionary_id=record.dictionary_id,
                    chunk=chunk,
                    codes=table,
                    stats=batch.stats,
                    seconds=time.perf_counter() - t0,
                )
                n_vectors += batch.n_vectors
                n_codes += table.num_rows
                crashpoint("encode.chunk")
                bar.update(
                    task,
                    advance=batch.n_tokens,
                    rate=n_vectors / run["n_layers"] / max(time.perf_counter() - started, 1e-9),
                )
        with stderr_console.status("sorting codes and building summaries"):
            store.finish_encoding(con, record.dictionary_id)
            crashpoint("encode.finished")
            _refresh_summaries(con)
        quality = store.layer_quality_rows(con, record.dictionary_id)
        levels = queries.level_counts(con)
    return EncodeSummary(
        record.dictionary_id,
        n_vectors,
        n_codes,
        time.perf_counter() - started,
        False,
        quality,
        levels,
    )


def _published_encode_finished(db_path: Path, dictionary_id: int) -> bool:
    """Whether the published file holds this dictionary's finished encode (summaries too)."""
    if not db_path.exists():
        return False
    con = connect(db_path, read_only=True)
    try:
        return store.ingest_finished(con) and store.encode_finished(con, dictionary_id)
    finally:
        con.close()


def _refresh_summaries(con) -> None:
    from factorscope.warehouse import summaries

    summaries.refresh_summaries(con)
