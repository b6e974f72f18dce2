"""Derived tables behind the public views, rebuilt after every encode.

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

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from factorscope.crashpoints import crashpoint
from factorscope.errors import InputError, WarehouseError
from factorscope.warehouse import store

log = logging.getLogger(__name__)

CONTEXT_WORDS = 10
"""Words of context either side of a top-context token."""

HISTOGRAM_BINS_PER_OCTAVE = 4

SUMMARY_TABLES = (
    "summary_top_contexts",
    "summary_importance",
    "summary_levels",
    "summary_word_factors",
    "summary_histogram",
    "summary_neighbors",
    "auto_labels",
    "summary_meta",
)

_RANKED = """
CREATE OR REPLACE TEMP TABLE _ranked AS
SELECT layer, factor, token_id, alpha,
       row_number() OVER (PARTITION BY layer, factor ORDER BY alpha DESC, token_id) AS rank
FROM codes
QUALIFY rank <= $top_k
"""

# Context span of every word: the words CONTEXT_WORDS either side, as offsets in text.
_SPANS = """
CREATE OR REPLACE TEMP TABLE _spans AS
WITH words AS (
    SELECT sentence_idx,
           coalesce(word_index, position) AS wi,
           min(word_start) AS ws,
           max(word_end) AS we
    FROM tokens
    GROUP BY ALL
)
SELECT sentence_idx, wi,
       min(ws) OVER win AS ctx_start,
       max(we) OVER win AS ctx_end
FROM words
WINDOW win AS (PARTITION BY sentence_idx ORDER BY wi
               RANGE BETWEEN $context PRECEDING AND $context FOLLOWING)
"""

_TOP_CONTEXTS = """
INSERT INTO summary_top_contexts
SELECT r.factor, r.layer, r.rank, r.alpha, r.token_id, t.sentence_idx, t.word,
       sp.ctx_start, sp.ctx_end, t.word_start, t.word_end
FROM _ranked r
JOIN tokens t USING (token_id)
JOIN _spans sp ON sp.sentence_idx = t.sentence_idx AND sp.wi = coalesce(t.word_index, t.position)
ORDER BY r.factor, r.layer, r.rank
"""

_IMPORTANCE = """
INSERT INTO summary_importance
SELECT factor, layer,
       list_sum(max(alpha, $importance_k)) / $importance_k AS importance,
       count(*) AS n_active,
       max(alpha) AS max_alpha
FROM codes
GROUP BY factor, layer
ORDER BY factor, layer
"""

_LEVELS = """
INSERT INTO summary_levels
SELECT factor, layer AS peak_layer,
       CASE WHEN layer < $b1 * $n_layers THEN 'low'
            WHEN layer < $b2 * $n_layers THEN 'mid'
            ELSE 'high' END AS level
FROM summary_importance
WHERE importance > 0
QUALIFY row_number() OVER (PARTITION BY factor ORDER BY importance DESC, layer) = 1
ORDER BY factor
"""

_WORD_FACTORS = """
INSERT INTO summary_word_factors
WITH occ AS (
    SELECT lower(word) AS word, count(*) AS n FROM tokens GROUP BY 1
),
agg AS (
    SELECT lower(t.word) AS word, c.layer, c.factor, sum(c.alpha) AS s, count(*) AS hits
    FROM codes c JOIN tokens t USING (token_id)
    GROUP BY ALL
)
SELECT a.word, a.layer, a.factor, a.s / o.n AS mean_alpha, a.hits, o.n AS n_occurrences
FROM agg a JOIN occ o USING (word)
QUALIFY row_number() OVER (
    PARTITION BY a.word, a.layer ORDER BY a.s / o.n DESC, a.factor) <= $word_top
ORDER BY a.word, a.layer, mean_alpha DESC, a.factor
"""

_HISTOGRAM = """
INSERT INTO summary_histogram
SELECT factor, layer, CAST(floor(log2(alpha) * $per_octave) AS INTEGER) AS bin, count(*)
FROM codes
WHERE alpha > 0
GROUP BY ALL
ORDER BY factor, layer, bin
"""

_AUTO_LABELS = """
INSERT INTO auto_labels
WITH w AS (
    SELECT t.factor, lower(t.word) AS word, count(*) AS n, min(t.rank) AS first_rank
    FROM summary_top_contexts t
    JOIN summary_levels l ON l.factor = t.factor AND l.peak_layer = t.layer
    GROUP BY ALL
),
best AS (
    SELECT *, row_number() OVER (PARTITION BY factor ORDER BY n DESC, first_rank) AS k
    FROM w
    QUALIFY k <= 3
)
SELECT factor, string_agg(word, ' / ' ORDER BY k) AS label
FROM best
GROUP BY factor
ORDER BY factor
"""


def refresh_summaries(
    con: duckdb.DuckDBPyConnection,
    *,
    top_k: int = 200,
    importance_k: int = 1000,
    level_bounds: tuple[float, float] = (1 / 3, 2 / 3),
    word_top: int = 32,
    neighbors_n: int = 20,
) -> dict:
    """Rebuild every ``summary_*`` table from the codes; returns what it used.

    Call it on a write connection after :func:`store.finish_encoding` (the encode
    pipeline does), inside the staging copy, so readers see the new summaries and the
    new codes together when the file is published.
    """
    for name, value in (
        ("top_k", top_k),
        ("importance_k", importance_k),
        ("word_top", word_top),
        ("neighbors_n", neighbors_n),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    b1, b2 = (float(b) for b in level_bounds)
    if not 0 < b1 < b2 < 1:
        raise InputError(f"level_bounds must satisfy 0 < b1 < b2 < 1, got {level_bounds!r}")

    started = time.perf_counter()
    # A cursor of its own: the caller's connection may hold an unfinished result.
    con = con.cursor()
    try:
        run = store.get_run(con)
        n_layers = (
            int(run["n_layers"])
            if run
            else int(con.execute("SELECT coalesce(max(layer), 0) + 1 FROM codes").fetchall()[0][0])
        )
        dictionary_id = store.latest_dictionary_id(con, status=("encoded",))
        if dictionary_id is None:
            dictionary_id = store.latest_dictionary_id(con)
        with store.transaction(con):
            for table in SUMMARY_TABLES:
                # Table names come from the fixed tuple above, never from a caller.
                con.execute(f"DELETE FROM {table}")
            con.execute(_RANKED, {"top_k": top_k})
            con.execute(_SPANS, {"context": CONTEXT_WORDS})
            con.execute(_TOP_CONTEXTS)
            crashpoint("encode.summaries")  # test hook: a kill inside the refresh
            con.execute("DROP TABLE _ranked")
            con.execute("DROP TABLE _spans")
            con.execute(_IMPORTANCE, {"importance_k": importance_k})
            con.execute(_LEVELS, {"b1": b1, "b2": b2, "n_layers": n_layers})
            con.execute(_WORD_FACTORS, {"word_top": word_top})
            con.execute(_HISTOGRAM, {"per_octave": HISTOGRAM_BINS_PER_OCTAVE})
            if dictionary_id is not None:
                _write_neighbors(con, dictionary_id, neighbors_n)
            con.execute(_AUTO_LABELS)
            meta = {
                "top_k": top_k,
                "importance_k": importance_k,
                "level_bounds": [b1, b2],
                "n_layers": n_layers,
                "word_top": word_top,
                "neighbors_n": neighbors_n,
                "context_words": CONTEXT_WORDS,
                "histogram_bins_per_octave": HISTOGRAM_BINS_PER_OCTAVE,
                "dictionary_id": dictionary_id,
                "seconds": round(time.perf_counter() - started, 3),
            }
            con.executemany(
                "INSERT INTO summary_meta (key, value) VALUES (?, ?)",
                [[key, json.dumps(value)] for key, value in meta.items()],
            )
    except duckdb.Error as e:
        raise WarehouseError(f"refreshing the summaries failed: {e}") from e
    finally:
        con.close()
    log.info("summaries refreshed in %.1f s", meta["seconds"])
    return meta


def _write_neighbors(con: duckdb.DuckDBPyConnection, dictionary_id: int, n: int) -> None:
    atoms = store.load_dictionary(con, dictionary_id).components.astype(np.float64)
    n_factors = atoms.shape[0]
    if n_factors < 2:
        return
    n = min(n, n_factors - 1)
    top = con.execute("SELECT DISTINCT factor, token_id FROM summary_top_contexts").fetchnumpy()
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
            "SELECT factor, neighbor, cosine, coactivation FROM _new_neighbors "
            "ORDER BY factor, cosine DESC, neighbor"
        )
    finally:
        con.unregister("_new_neighbors")
