"""Decomposable summaries: partial summaries per shard, and the warehouse merged from them.

Each shard of an encode (see ``factorscope.stages.shard_encode``) writes, next to its codes, the
partial summaries of its own tokens (:func:`partial_summaries`); ``factorscope
merge`` combines them (:func:`build_merged_warehouse`) into exactly what
:func:`factorscope.warehouse.summaries.refresh_summaries` computes over all codes:

- top contexts: the top ``top_k`` of the union of the shards' top ``partial_k``
  (``partial_k >= top_k``) by (alpha DESC, token_id): every global top-k row is in
  its own shard's top-k, so the merge is exact;
- importance: IS = sum of the ``importance_k`` largest alphas / ``importance_k``,
  from the union of the shards' top-``importance_k`` lists, summed in the same
  (descending) order as the single run, so the doubles are equal bit for bit;
- levels, auto labels and neighbours from those.

The SQL of both halves is the single run's (``warehouse/summary_sql/*.sql``, run by
:mod:`factorscope.warehouse.summaries`): a single run is the merge of one partial.
- histogram counts and n_active add up; max_alpha is the max of maxima;
- word factors from the shards' per-(word, layer, factor) sums (exact up to the
  order of floating-point additions).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from factorscope.errors import WarehouseError
from factorscope.warehouse import store, summaries, summary_files
from factorscope.warehouse.parquet import ShardLayout, attach_codes, codes_dataset, files_dataset

# ----------------------------------------------------------------------------- run database


def sentence_ids(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """(sentence_idx, sentence_id) of every stored sentence, by sentence_idx."""
    return con.sql(
        "SELECT sentence_idx, sentence_id FROM sentences ORDER BY sentence_idx"
    ).to_arrow_table()


def dictionary_row(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> dict:
    """The ``dictionaries`` row of one dictionary (JSON columns decoded)."""
    cur = con.execute("SELECT * FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])
    rows = cur.fetchall()
    if not rows:
        raise WarehouseError(f"no dictionary with id {dictionary_id}")
    row = dict(zip([c[0] for c in cur.description], rows[0], strict=True))
    row["preprocessing"] = json.loads(row["preprocessing"])
    row["params"] = json.loads(row["params"])
    return row


def _rows_for(con: duckdb.DuckDBPyConnection, table: str, order: str, idx: np.ndarray) -> pa.Table:
    con.register("_shard_idx", pa.table({"sentence_idx": pa.array(idx, pa.int32())}))
    try:
        # table and order come from the two fixed calls below, never from a caller.
        return con.sql(
            f"SELECT t.* FROM {table} t SEMI JOIN _shard_idx USING (sentence_idx) ORDER BY {order}"
        ).to_arrow_table()
    finally:
        con.unregister("_shard_idx")


def shard_sentences(con: duckdb.DuckDBPyConnection, idx: np.ndarray) -> pa.Table:
    """The ``sentences`` rows of the given sentence_idx values, in order."""
    return _rows_for(con, "sentences", "sentence_idx", idx)


def shard_tokens(con: duckdb.DuckDBPyConnection, idx: np.ndarray) -> pa.Table:
    """The ``tokens`` rows of the given sentences, by token_id."""
    return _rows_for(con, "tokens", "token_id", idx)


# ----------------------------------------------------------------------------- ingest shards

_INGEST_TABLES = (
    ("sentences", "sentence_idx"),
    ("tokens", "token_id"),
    ("hidden_states", "layer, token_id"),
)


def copy_ingest_rows(dst: duckdb.DuckDBPyConnection, src: duckdb.DuckDBPyConnection) -> None:
    """Append one shard's sentences, tokens and sampled hidden states (streamed, not loaded)."""
    try:
        with store.transaction(dst):
            for table, order in _INGEST_TABLES:
                # table and order come from the fixed tuple above, never from a caller.
                reader = src.sql(f"SELECT * FROM {table} ORDER BY {order}").to_arrow_reader()
                dst.register("_shard_rows", reader)
                try:
                    dst.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _shard_rows")
                finally:
                    dst.unregister("_shard_rows")
    except duckdb.Error as e:
        raise WarehouseError(f"copying a shard's ingest rows failed: {e}") from e


def index_ingest_chunks(con: duckdb.DuckDBPyConnection, chunk_size: int, seconds: float) -> None:
    """Fill ``ingest_chunks`` as one unsharded ingest numbers them (sentence_idx // chunk_size).

    ``seconds`` (the shards' total) is spread over the chunks by their token counts.
    """
    try:
        con.execute("DELETE FROM ingest_chunks")
        con.execute(
            """
            INSERT INTO ingest_chunks (chunk, n_sentences, n_tokens, n_sampled, seconds)
            WITH s AS (
                SELECT sentence_idx // $chunk_size AS chunk,
                       count(*) AS n_sentences, sum(n_tokens) AS n_tokens
                FROM sentences GROUP BY 1
            ),
            h AS (
                SELECT token_id // $stride // $chunk_size AS chunk, count(*) AS n_sampled
                FROM hidden_states GROUP BY 1
            )
            SELECT s.chunk, s.n_sentences, s.n_tokens, coalesce(h.n_sampled, 0),
                   $seconds * s.n_tokens / greatest(sum(s.n_tokens) OVER (), 1)
            FROM s LEFT JOIN h USING (chunk)
            ORDER BY s.chunk
            """,
            {"chunk_size": chunk_size, "stride": store.TOKEN_ID_STRIDE, "seconds": seconds},
        )
    except duckdb.Error as e:
        raise WarehouseError(f"indexing the merged ingest chunks failed: {e}") from e


# ----------------------------------------------------------------------------- partials


def partial_summaries(
    layout: ShardLayout, *, partial_k: int, importance_k: int
) -> dict[str, pa.Table]:
    """One shard's partial summaries, computed from its own Parquet codes and tokens."""
    con = duckdb.connect()
    try:
        con.register("_shard_codes", codes_dataset([layout.root]))
        # A shard folder holds one dictionary's codes: the partials read them under
        # SHARD_DICTIONARY_ID (the merge writes the warehouse's own id).
        con.sql(
            "SELECT CAST(? AS INTEGER) AS dictionary_id, * FROM _shard_codes",
            params=[SHARD_DICTIONARY_ID],
        ).create_view("codes")
        con.register("tokens", files_dataset([layout.tokens]))
        tables = summaries.compute_partials(
            con,
            partial_k=partial_k,
            importance_k=importance_k,
            dictionary_id=SHARD_DICTIONARY_ID,
        )
        # Temp table names follow the shipped summary files (_p_<name>), never a caller.
        # Each partial is written to ``partial/<summary name>.parquet``.
        return {
            name: con.sql(f"SELECT * FROM {table}").to_arrow_table()
            for name, table in tables.items()
        }
    except duckdb.Error as e:
        raise WarehouseError(f"partial summaries of {layout.root} failed: {e}") from e
    finally:
        con.close()


# ----------------------------------------------------------------------------- merge

SHARD_DICTIONARY_ID = 0
"""The dictionary id a shard's own partials are computed under (a folder holds one
dictionary's codes; the merged warehouse stores them under its own id)."""


def _register_partials(con: duckdb.DuckDBPyConnection, roots: list[Path]) -> list[str]:
    names = []
    for summary in summary_files.summaries():
        if summary.partial:
            parts = [ShardLayout(r).partial(summary.name) for r in roots]
            con.register(summary.partial_table, files_dataset(parts))
            names.append(summary.partial_table)
    return names


# Over 80 lines: one transaction's ordered inserts from the shard folders; splitting it would
# split the transaction's story.
def build_merged_warehouse(
    con: duckdb.DuckDBPyConnection,
    roots: list[Path],
    *,
    run: dict,
    dictionary: dict,
    attach: bool,
    top_k: int,
    importance_k: int,
    level_bounds: tuple[float, float] = summaries.DEFAULTS.level_bounds,
    word_top: int = summaries.DEFAULTS.word_top,
    neighbors_n: int = summaries.DEFAULTS.neighbors_n,
) -> dict:
    """Fill a fresh (migrated) database from shard folders; returns the summary meta.

    ``run`` holds the ``runs`` fields and ``dictionary`` the ``dictionaries`` fields
    (``components`` an (n_factors, hidden_size) array) the shards recorded.
    ``attach=True`` leaves the codes in the shard folders (``codes`` becomes a view);
    otherwise they are copied in, sorted like a local encode's.
    """
    started = time.perf_counter()
    layouts = [ShardLayout(r) for r in roots]
    try:
        store.create_run(con, **run)
        dictionary_id = store.save_dictionary(
            con,
            components=dictionary["components"],
            lambda1=dictionary["lambda1"],
            preprocessing=dictionary["preprocessing"],
            params=dictionary["params"],
            seed=dictionary["seed"],
            fit_seconds=dictionary["fit_seconds"],
            source=dictionary["source"],
            # the run database's id and kind (a manifest written before they were kept
            # has neither: the merged dictionary is then 1, learned)
            dictionary_id=dictionary.get("dictionary_id"),
            kind=dictionary.get("kind") or "learned",
            parent_id=dictionary.get("parent_id"),
        )
        con.register("_m_sentences", files_dataset([lay.sentences for lay in layouts]))
        con.register("_m_tokens", files_dataset([lay.tokens for lay in layouts]))
        stats = [p for lay in layouts for p in sorted(lay.stats.glob("part-*.parquet"))]
        con.register("_m_stats", files_dataset(stats))
        with store.transaction(con):
            con.execute(
                "INSERT INTO sentences BY NAME "
                "SELECT sentence_idx, sentence_id, source, text, n_tokens FROM _m_sentences "
                "ORDER BY sentence_idx"
            )
            con.execute("INSERT INTO tokens BY NAME SELECT * FROM _m_tokens ORDER BY token_id")
            # Chunks are numbered 0.. in (shard, shard's chunk) order.
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _stats AS "
                "SELECT *, CAST(dense_rank() OVER (ORDER BY shard, chunk) - 1 AS INTEGER) AS n "
                "FROM _m_stats"
            )
            con.execute(
                "INSERT INTO encode_chunk_stats BY NAME "
                "SELECT ? AS dictionary_id, n AS chunk, layer, n_vectors, "
                "sq_residual, sq_norm, sum_x, sum_l0, n_zero_codes FROM _stats",
                [dictionary_id],
            )
            con.execute(
                "INSERT INTO encode_chunks (dictionary_id, chunk, n_codes, seconds) "
                "SELECT ?, n, sum(n_codes), max(seconds) FROM _stats GROUP BY n ORDER BY n",
                [dictionary_id],
            )
            con.execute("DROP TABLE _stats")
            if attach:
                attach_codes(con, roots, dictionary_id)
            else:
                con.register("_m_codes", codes_dataset(roots))
                con.execute(
                    "INSERT INTO codes SELECT ?, layer, factor, token_id, alpha FROM _m_codes",
                    [dictionary_id],
                )
        store.finish_encoding(con, dictionary_id, sort_codes=not attach)
        for name in ("_m_sentences", "_m_tokens", "_m_stats") + (() if attach else ("_m_codes",)):
            con.unregister(name)
        partials = _register_partials(con, roots)
        settings = summaries.SummarySettings(
            top_k, importance_k, tuple(level_bounds), word_top, neighbors_n
        )
        with store.transaction(con):
            meta = summaries.merge_partials(
                con, settings, n_layers=int(run["n_layers"]), dictionary_id=dictionary_id
            )
            meta["merged_shards"] = len(roots)
            meta["codes_attached"] = attach
            meta["seconds"] = round(time.perf_counter() - started, 3)
            summaries.write_meta(con, meta)
        for name in partials:
            con.unregister(name)
    except duckdb.Error as e:
        raise WarehouseError(f"merging the shards failed: {e}") from e
    return meta
