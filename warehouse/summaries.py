"""Derived tables behind the public views, rebuilt after every encode.

Every summary is defined once, in ``warehouse/summary_sql/NN_<name>.sql`` (layout in
:mod:`factorscope.warehouse.summary_files`): its table, a *partial* (the codes and
tokens one shard sees -> temp table ``_p_<name>``), a *merge* (the partials of every
shard -> the table) and its public view. A shard encode runs the partials
(:func:`compute_partials`), ``factorscope merge`` the merges (:func:`merge_partials`),
and a single run is a one-shard run: the merge of its one partial. Levels and auto
labels have only a merge, over merged summaries; neighbours are filled in Python
(:data:`PYTHON_FILLED`). Nothing here names a summary file: adding one is adding the
file. The context cut is the macro ``context_spans`` (``summary_sql/context.sql``), which the
live queries use too. Top-K, importance-K and the level bounds are one
:class:`SummarySettings`, recorded in ``summary_meta``.

:func:`refresh_summaries` reads ``codes`` (the non-zero alphas of the active
dictionary), ``tokens``, ``sentences`` and ``dictionary_atoms`` and rewrites every
``summary_*`` table in one transaction, so a (factor, layer) page reads a few hundred
pre-ranked rows instead of scanning the codes.

Definitions (also in docs/SCHEMA.md):

- top contexts: the ``top_k`` largest alphas of each (factor, layer), ties broken by
  the smaller ``token_id``; context = the words ``CONTEXT_WORDS`` either side of the
  token's word (by ``tokens.word_index``), cut from ``sentences.text``.
- importance: IS[c, l] = (sum of the ``importance_k`` largest alpha_c at layer l) /
  ``importance_k``. Fewer than ``importance_k`` non-zeros: the missing ones count as
  zeros (the reference averages the K largest codes, zeros included).
- level: the peak layer is the layer of largest IS (ties: the lowest layer). With
  ``n_layers`` hidden-state layers (0..L, n_layers = L + 1) and bounds (b1, b2):
  low if peak < b1 * n_layers, mid if peak < b2 * n_layers, else high. The default
  (1/3, 2/3) on MiniLM-L6 (layers 0..6) gives low = 0-2, mid = 3-4, high = 5-6.
  Factors never active are left out.
- word factors: for each lower-cased word and layer, mean_alpha = (sum of the
  factor's alpha over the word's tokens) / (number of the word's tokens), so zeros
  count; hits = tokens where the factor is active. The ``word_top`` best factors of
  each (word, layer) are kept.
- histogram: log-spaced bins, bin b holds 2^(b/4) <= alpha < 2^((b+1)/4).
- neighbours: for each factor, the ``neighbors_n`` atoms of largest cosine and the
  ``neighbors_n`` factors of largest co-activation (Jaccard index of the token sets of
  their top contexts over all layers), each pair with both numbers.
- auto label: the three most frequent words of the factor's top contexts at its peak
  layer, joined by " / ".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError, WarehouseError
from factorscope.limits import TOP_K
from factorscope.warehouse import store, summary_files
from factorscope.warehouse.session import writer_session

log = logging.getLogger(__name__)

CONTEXT_WORDS = 10
"""Words of context either side of a top-context token."""

HISTOGRAM_BINS_PER_OCTAVE = 4

INTERVAL_SEED = 0
"""The seed of the stored interval samples (summary_intervals); the factor page's."""


def summary_tables() -> tuple[str, ...]:
    """Every table a refresh rewrites: each summary file's table, then ``summary_meta``."""
    return (*(s.table for s in summary_files.summaries()), "summary_meta")


@dataclass(frozen=True)
class SummarySettings:
    """The settings of the summaries, stored with them in ``summary_meta``."""

    top_k: int = TOP_K
    importance_k: int = 1000
    level_bounds: tuple[float, float] = (1 / 3, 2 / 3)
    word_top: int = 32
    neighbors_n: int = 20
    n_intervals: int = 5
    per_interval: int = 5

    def __post_init__(self) -> None:
        for name in (
            "top_k",
            "importance_k",
            "word_top",
            "neighbors_n",
            "n_intervals",
            "per_interval",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        b1, b2 = (float(b) for b in self.level_bounds)
        if not 0 < b1 < b2 < 1:
            raise InputError(
                f"level_bounds must satisfy 0 < b1 < b2 < 1, got {self.level_bounds!r}"
            )

    def meta(self) -> dict:
        return {
            "top_k": self.top_k,
            "importance_k": self.importance_k,
            "level_bounds": [float(b) for b in self.level_bounds],
            "intervals": [self.n_intervals, self.per_interval],
        }


def _execute(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> None:
    # DuckDB parses the statements apart (never a split on ";" by hand); each gets the
    # parameters it names, from the caller's fixed dict.
    for statement in con.extract_statements(sql):
        con.execute(statement, {k: params[k] for k in statement.named_parameters})


def define_context_macro(con: duckdb.DuckDBPyConnection) -> None:
    """Define ``context_spans(context)`` (summary_sql/context.sql) on this connection."""
    con.execute(summary_files.macro_sql("context"))


def compute_partials(
    con: duckdb.DuckDBPyConnection, *, partial_k: int, importance_k: int, dictionary_id: int
) -> dict:
    """The partial summaries of one dictionary's codes (and the tokens) ``con`` sees.

    ``codes`` holds the codes of every encoded dictionary (a shard's folder: of its one
    dictionary, under the id its caller gives); the partials read ``dictionary_id``'s.
    Returns ``{summary name: temp table name}`` for every summary with a partial.
    """
    params = {
        "partial_k": partial_k,
        "importance_k": importance_k,
        "per_octave": HISTOGRAM_BINS_PER_OCTAVE,
        "dictionary_id": dictionary_id,
    }
    tables = {}
    for summary in summary_files.summaries():
        if summary.partial:
            _execute(con, summary.partial, params)
            tables[summary.name] = summary.partial_table
    return tables


def merge_partials(
    con: duckdb.DuckDBPyConnection,
    settings: SummarySettings,
    *,
    n_layers: int,
    dictionary_id: int,
    crash_point: str | None = None,
) -> dict:
    """Rewrite ``dictionary_id``'s rows of every summary table from the partials
    (``_p_<name>``) ``con`` sees; other dictionaries' rows are left alone.

    The summaries run in their files' order. Call inside a transaction; ``crash_point``
    fires after the first summary (a test hook). Returns the meta it records in
    ``summary_meta``.
    """
    b1, b2 = (float(b) for b in settings.level_bounds)
    params = {
        "top_k": settings.top_k,
        "importance_k": settings.importance_k,
        "word_top": settings.word_top,
        "neighbors_n": settings.neighbors_n,
        "n_intervals": settings.n_intervals,
        "per_interval": settings.per_interval,
        "seed": INTERVAL_SEED,
        "per_octave": HISTOGRAM_BINS_PER_OCTAVE,
        "context": CONTEXT_WORDS,
        "b1": b1,
        "b2": b2,
        "n_layers": n_layers,
        "dictionary_id": dictionary_id,
    }
    for table in summary_tables():
        # Table names come from the shipped summary files, never from a caller.
        con.execute(f"DELETE FROM {table} WHERE dictionary_id = ?", [dictionary_id])
    define_context_macro(con)
    for i, summary in enumerate(summary_files.summaries()):
        if summary.merge:
            _execute(con, summary.merge, params)
        elif summary.name not in PYTHON_FILLED:
            raise WarehouseError(f"summary {summary.name} has no @merge and no Python filler")
        else:
            PYTHON_FILLED[summary.name](con, dictionary_id, settings)
        if i == 0 and crash_point:
            crashpoint(crash_point)  # test hook: a kill inside the refresh
    return {
        **settings.meta(),
        "n_layers": n_layers,
        "word_top": settings.word_top,
        "neighbors_n": settings.neighbors_n,
        "context_words": CONTEXT_WORDS,
        "histogram_bins_per_octave": HISTOGRAM_BINS_PER_OCTAVE,
        "dictionary_id": dictionary_id,
    }


def write_meta(con: duckdb.DuckDBPyConnection, meta: dict) -> None:
    """Record what a refresh used, under ``meta["dictionary_id"]``."""
    con.executemany(
        "INSERT INTO summary_meta (dictionary_id, key, value) VALUES (?, ?, ?)",
        [[meta["dictionary_id"], key, json.dumps(value)] for key, value in meta.items()],
    )


DEFAULTS = SummarySettings()
"""The default summary settings (top-K, importance-K, level bounds ...), one place."""


def refresh_summaries(
    con: duckdb.DuckDBPyConnection,
    *,
    dictionary_id: int | None = None,
    top_k: int = DEFAULTS.top_k,
    importance_k: int = DEFAULTS.importance_k,
    level_bounds: tuple[float, float] = DEFAULTS.level_bounds,
    word_top: int = DEFAULTS.word_top,
    neighbors_n: int = DEFAULTS.neighbors_n,
) -> dict:
    """Rebuild one dictionary's rows of every summary table from its codes; returns what
    it used. ``dictionary_id`` defaults to the newest encoded dictionary; the rows of the
    other encoded dictionaries stay as they are.

    A single run is a one-shard run: the partials of all its codes, then their merge
    (the same SQL ``factorscope merge`` runs over many shards' partials).
    Call it on a write connection after :func:`store.finish_encoding` (the encode
    pipeline does), inside the staging copy, so readers see the new summaries and the
    new codes together when the file is published.
    """
    settings = SummarySettings(top_k, importance_k, tuple(level_bounds), word_top, neighbors_n)
    started = time.perf_counter()
    # A cursor of its own: the caller's connection may hold an unfinished result.
    con = writer_session(con.cursor())
    try:
        run = store.get_run(con)
        n_layers = (
            int(run["n_layers"])
            if run
            else int(con.execute("SELECT coalesce(max(layer), 0) + 1 FROM codes").fetchall()[0][0])
        )
        if dictionary_id is None:
            dictionary_id = store.latest_dictionary_id(con, status=("encoded",))
        if dictionary_id is None:
            dictionary_id = store.latest_dictionary_id(con)
        if dictionary_id is None:
            raise WarehouseError("this database holds no dictionary to summarise")
        with store.transaction(con):
            partials = compute_partials(
                con,
                partial_k=settings.top_k,
                importance_k=settings.importance_k,
                dictionary_id=dictionary_id,
            )
            meta = merge_partials(
                con,
                settings,
                n_layers=n_layers,
                dictionary_id=dictionary_id,
                crash_point="encode.summaries",
            )
            for table in partials.values():
                # Temp table names follow the shipped files' names (_p_<name>).
                con.execute(f"DROP TABLE {table}")
            meta["seconds"] = round(time.perf_counter() - started, 3)
            write_meta(con, meta)
    except duckdb.Error as e:
        raise WarehouseError(f"refreshing the summaries failed: {e}") from e
    finally:
        con.close()
    log.info("summaries refreshed in %.1f s", meta["seconds"])
    return meta


def write_neighbors(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, settings: SummarySettings
) -> None:
    """Fill ``summary_neighbors`` (summary_sql/60_neighbors.sql) from atoms and top contexts."""
    n = settings.neighbors_n
    atoms = store.load_dictionary(con, dictionary_id).components.astype(np.float64)
    n_factors = atoms.shape[0]
    if n_factors < 2:
        return
    n = min(n, n_factors - 1)
    top = con.execute(
        "SELECT DISTINCT factor, token_id FROM summary_top_contexts WHERE dictionary_id = ?",
        [dictionary_id],
    ).fetchnumpy()
    factors = np.asarray(top["factor"], dtype=np.int64)
    _, token_col = np.unique(np.asarray(top["token_id"], dtype=np.int64), return_inverse=True)
    n_tokens = int(token_col.max()) + 1 if token_col.size else 1
    incidence = sp.csr_matrix(
        (np.ones(factors.size, dtype=np.float64), (factors, token_col)),
        shape=(n_factors, n_tokens),
    )
    sizes = np.asarray(incidence.sum(axis=1)).ravel()

    out_f, out_g, out_cos, out_co = [], [], [], []
    block = 512
    for lo in range(0, n_factors, block):
        hi = min(lo + block, n_factors)
        rows = np.arange(lo, hi)
        cos = atoms[lo:hi] @ atoms.T
        inter = (incidence[lo:hi] @ incidence.T).toarray()
        union = sizes[lo:hi, None] + sizes[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        cos[np.arange(hi - lo), rows] = -np.inf  # never one's own neighbour
        jac_rank = jac.copy()
        jac_rank[np.arange(hi - lo), rows] = -np.inf
        by_cos = np.argpartition(-cos, n - 1, axis=1)[:, :n]
        by_jac = np.argpartition(-jac_rank, n - 1, axis=1)[:, :n]
        for i in range(hi - lo):
            keep = np.concatenate([by_cos[i], by_jac[i][jac_rank[i, by_jac[i]] > 0]])
            picked = np.unique(keep)
            out_f.append(np.full(picked.size, lo + i, dtype=np.int32))
            out_g.append(picked.astype(np.int32))
            out_cos.append(cos[i, picked])
            out_co.append(jac[i, picked])
    table = pa.table(
        {
            "factor": pa.array(np.concatenate(out_f)),
            "neighbor": pa.array(np.concatenate(out_g)),
            "cosine": pa.array(np.concatenate(out_cos)),
            "coactivation": pa.array(np.concatenate(out_co)),
        }
    )
    con.register("_new_neighbors", table)
    try:
        con.execute(
            "INSERT INTO summary_neighbors "
            "SELECT ?, factor, neighbor, cosine, coactivation FROM _new_neighbors "
            "ORDER BY factor, cosine DESC, neighbor",
            [dictionary_id],
        )
    finally:
        con.unregister("_new_neighbors")


PYTHON_FILLED: dict[str, Callable[[duckdb.DuckDBPyConnection, int, SummarySettings], None]] = {
    "neighbors": write_neighbors,
}
"""Summaries whose file has a table and a view but no SQL merge, filled here instead."""


def settle_unfinished_encode(con: duckdb.DuckDBPyConnection) -> int | None:
    """Bring a staging copy that holds an unfinished encode to a consistent state.

    The stages that write a staging copy (ingest, learn, probe, compare) call it before
    they work in it, so a published
    file never shows codes without their summaries. An encode whose codes are complete
    (status ``encoded``) gets its summaries rebuilt; one killed among its chunks is
    dropped (its partial codes, and the summaries of the codes it had replaced) and
    its dictionary is ``learned`` again, to be encoded by the next ``encode``.
    Returns the dictionary settled, if any.
    """
    dictionary_id = store.unfinished_encode(con)
    if dictionary_id is None:
        return None
    status = con.execute(
        "SELECT status FROM dictionaries WHERE dictionary_id = ?", [dictionary_id]
    ).fetchall()[0][0]
    if status == "encoded":
        refresh_summaries(con, dictionary_id=dictionary_id)
        return dictionary_id
    with store.transaction(con):
        con.execute("DELETE FROM codes WHERE dictionary_id = ?", [dictionary_id])
        con.execute("DELETE FROM encode_chunks WHERE dictionary_id = ?", [dictionary_id])
        con.execute("DELETE FROM encode_chunk_stats WHERE dictionary_id = ?", [dictionary_id])
        con.execute("DELETE FROM layer_quality WHERE dictionary_id = ?", [dictionary_id])
        for table in summary_tables():
            # Table names come from the shipped summary files, never from a caller.
            con.execute(f"DELETE FROM {table} WHERE dictionary_id = ?", [dictionary_id])
        con.execute(
            "UPDATE dictionaries SET status = 'learned' WHERE dictionary_id = ?", [dictionary_id]
        )
    return dictionary_id
