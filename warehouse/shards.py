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
- levels, auto labels and neighbours from those, with the single run's SQL;
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
from factorscope.warehouse import store, summaries
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

_PARTIAL_TOP = """
SELECT factor, layer, token_id, alpha
FROM codes
QUALIFY row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id) <= $k
ORDER BY factor, layer, alpha DESC, token_id
"""

_PARTIAL_IMPORTANCE = """
SELECT factor, layer,
       max(alpha, $importance_k) AS top_alphas,
       count(*) AS n_active,
       max(alpha) AS max_alpha
FROM codes
GROUP BY factor, layer
ORDER BY factor, layer
"""

_PARTIAL_HISTOGRAM = """
SELECT factor, layer, CAST(floor(log2(alpha) * $per_octave) AS INTEGER) AS bin, count(*) AS count
FROM codes
WHERE alpha > 0
GROUP BY ALL
ORDER BY factor, layer, bin
"""

_PARTIAL_WORDS = """
SELECT lower(t.word) AS word, c.layer, c.factor, sum(c.alpha) AS s, count(*) AS hits
FROM codes c JOIN tokens t USING (token_id)
GROUP BY ALL
ORDER BY word, layer, factor
"""


def partial_summaries(
    layout: ShardLayout, *, partial_k: int, importance_k: int
) -> dict[str, pa.Table]:
    """One shard's partial summaries, computed from its own Parquet codes and tokens."""
    con = duckdb.connect()
    try:
        con.register("codes", codes_dataset([layout.root]))
        con.register("tokens", files_dataset([layout.tokens]))
        return {
            "top": con.sql(_PARTIAL_TOP, params={"k": partial_k}).to_arrow_table(),
            "importance": con.sql(
                _PARTIAL_IMPORTANCE, params={"importance_k": importance_k}
            ).to_arrow_table(),
            "histogram": con.sql(
                _PARTIAL_HISTOGRAM, params={"per_octave": summaries.HISTOGRAM_BINS_PER_OCTAVE}
            ).to_arrow_table(),
            "words": con.sql(_PARTIAL_WORDS).to_arrow_table(),
        }
    except duckdb.Error as e:
        raise WarehouseError(f"partial summaries of {layout.root} failed: {e}") from e
    finally:
        con.close()


# ----------------------------------------------------------------------------- merge

_MERGED_RANKED = """
CREATE OR REPLACE TEMP TABLE _ranked AS
SELECT layer, factor, token_id, alpha,
       row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id) AS rank
FROM _p_top
QUALIFY rank <= $top_k
"""

_MERGED_IMPORTANCE = """
INSERT INTO summary_importance
WITH a AS (
    SELECT factor, layer, unnest(top_alphas) AS alpha FROM _p_importance
),
s AS (
    SELECT factor, layer,
           list_sum(max(alpha, $importance_k)) / $importance_k AS importance
    FROM a
    GROUP BY factor, layer
),
c AS (
    SELECT factor, layer, sum(n_active) AS n_active, max(max_alpha) AS max_alpha
    FROM _p_importance
    GROUP BY factor, layer
)
SELECT factor, layer, s.importance, c.n_active, c.max_alpha
FROM s JOIN c USING (factor, layer)
ORDER BY factor, layer
"""

_MERGED_HISTOGRAM = """
INSERT INTO summary_histogram
SELECT factor, layer, bin, sum(count) FROM _p_histogram GROUP BY ALL ORDER BY factor, layer, bin
"""

_MERGED_WORDS = """
INSERT INTO summary_word_factors
WITH occ AS (
    SELECT lower(word) AS word, count(*) AS n FROM tokens GROUP BY 1
),
agg AS (
    SELECT word, layer, factor, sum(s) AS s, sum(hits) AS hits FROM _p_words GROUP BY ALL
)
SELECT a.word, a.layer, a.factor, a.s / o.n AS mean_alpha, a.hits, o.n AS n_occurrences
FROM agg a JOIN occ o USING (word)
QUALIFY row_number() OVER (
    PARTITION BY a.word, a.layer ORDER BY a.s / o.n DESC, a.factor) <= $word_top
ORDER BY a.word, a.layer, mean_alpha DESC, a.factor
"""


def _register_partials(con: duckdb.DuckDBPyConnection, roots: list[Path]) -> list[str]:
    names = []
    for part in ("top", "importance", "histogram", "words"):
        name = f"_p_{part}"
        con.register(name, files_dataset([ShardLayout(r).partial(part) for r in roots]))
        names.append(name)
    return names


def build_merged_warehouse(
    con: duckdb.DuckDBPyConnection,
    roots: list[Path],
    *,
    run: dict,
    dictionary: dict,
    attach: bool,
    top_k: int,
    importance_k: int,
    level_bounds: tuple[float, float] = (1 / 3, 2 / 3),
    word_top: int = 32,
    neighbors_n: int = 20,
) -> dict:
    """Fill a fresh (migrated) database from shard folders; returns the summary meta.

    ``run`` holds the ``runs`` fields and ``dictionary`` the ``dictionaries`` fields
    (``components`` an (n_factors, hidden_size) array) the shards recorded.
    ``attach=True`` leaves the codes in the shard folders (``codes`` becomes a view);
    otherwise they are copied in, sorted like a local encode's.
    """
    started = time.perf_counter()
    b1, b2 = (float(b) for b in level_bounds)
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
                attach_codes(con, roots)
            else:
                con.register("_m_codes", codes_dataset(roots))
                con.execute("INSERT INTO codes SELECT layer, factor, token_id, alpha FROM _m_codes")
        store.finish_encoding(con, dictionary_id, sort_codes=not attach)
        for name in ("_m_sentences", "_m_tokens", "_m_stats") + (() if attach else ("_m_codes",)):
            con.unregister(name)
        partials = _register_partials(con, roots)
        with store.transaction(con):
            for table in summaries.SUMMARY_TABLES:
                # Table names come from summaries' fixed tuple, never from a caller.
                con.execute(f"DELETE FROM {table}")
            con.execute(_MERGED_RANKED, {"top_k": top_k})
            con.execute(summaries._SPANS, {"context": summaries.CONTEXT_WORDS})
            con.execute(summaries._TOP_CONTEXTS)
            con.execute("DROP TABLE _ranked")
            con.execute("DROP TABLE _spans")
            con.execute(_MERGED_IMPORTANCE, {"importance_k": importance_k})
            con.execute(summaries._LEVELS, {"b1": b1, "b2": b2, "n_layers": int(run["n_layers"])})
            con.execute(_MERGED_WORDS, {"word_top": word_top})
            con.execute(_MERGED_HISTOGRAM)
            summaries._write_neighbors(con, dictionary_id, neighbors_n)
            con.execute(summaries._AUTO_LABELS)
            meta = {
                "top_k": top_k,
                "importance_k": importance_k,
                "level_bounds": [b1, b2],
                "n_layers": int(run["n_layers"]),
                "word_top": word_top,
                "neighbors_n": neighbors_n,
                "context_words": summaries.CONTEXT_WORDS,
                "histogram_bins_per_octave": summaries.HISTOGRAM_BINS_PER_OCTAVE,
                "dictionary_id": dictionary_id,
                "merged_shards": len(roots),
                "codes_attached": attach,
                "seconds": round(time.perf_counter() - started, 3),
            }
            con.executemany(
                "INSERT INTO summary_meta (key, value) VALUES (?, ?)",
                [[key, json.dumps(value)] for key, value in meta.items()],
            )
        for name in partials:
            con.unregister(name)
    except duckdb.Error as e:
        raise WarehouseError(f"merging the shards failed: {e}") from e
    return meta
