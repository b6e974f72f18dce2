"""Reads and writes of the effect tables (schema/008_effects.sql).

``factorscope effects`` measures what removing a factor does to the model (its ablation
effect, against a random direction of the same norm) for every factor at its peak layer,
one chunk of factors per transaction in ``<db>.wip``; the app's factor page measures any
other layer on demand and stores the result in the same tables through a short write
connection on the published file (:func:`put_effect`), so the next read of the page
finds it. A stage published meanwhile replaces the file without that row (the app's
own tables, ``user_labels`` and ``lime_cache``, are the only ones carried over): the
page then measures it again.

Every reader names its dictionary (the page's, which need not be the active one) and
answers "nothing yet" (None, an empty list or frame) on a file made before these tables
existed, opened read-only and so never migrated.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from factorscope.limits import MAX_POSITIONS
from factorscope.warehouse.queries import _as_int, _frame, _rows, _write_connection
from factorscope.warehouse.store import transaction

EFFECT_TABLES = ("factor_effects", "factor_output_tokens", "factor_effect_sentences")

MEASURES = (
    "state_change",
    "state_cosine",
    "embedding_shift",
    "embedding_change",
    "output_kl",
    "top_logprob_change",
)
"""The measures taken of the factor's removal, and (``control_`` + name) of the control's."""

EFFECT_COLUMNS = (
    "factor",
    "layer",
    "source",
    "output_kind",
    "n_sentences",
    "n_tokens",
    "mean_alpha",
    "edit_norm",
    "edit_rel",
    *MEASURES,
    *(f"control_{m}" for m in MEASURES),
    "settings",
    "seconds",
)
TOKEN_COLUMNS = ("factor", "layer", "kind", "direction", "rank", "token_id", "token", "effect")
SENTENCE_COLUMNS = (
    "factor",
    "layer",
    "rank",
    "sentence_idx",
    "n_tokens",
    "embedding_shift",
    "control_embedding_shift",
    "state_change",
)

HEADLINE = {
    "sentence-embedding": "embedding_shift",
    "masked-lm": "output_kl",
    "causal-lm": "output_kl",
}
"""The measure the report and the summary line lead with, per output kind: how far the
sentence embedding turns (no head), or how far the output distribution moves (a head)."""


def has_effect_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """True on a file migrated to schema 8 (a file made before, opened read-only, is not)."""
    found = _rows(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name IN ('factor_effects', 'factor_output_tokens', "
        "'factor_effect_sentences', 'effects_chunks')",
    )[0][0]
    return found == 4


# ----------------------------------------------------------------------------- the stage's reads


def effect_targets(
    con: duckdb.DuckDBPyConnection, dictionary_id: int
) -> list[tuple[int, int, str]]:
    """(factor, peak layer, level) of every factor of the dictionary that fires, by factor."""
    rows = _rows(
        con,
        "SELECT factor, CAST(peak_layer AS INTEGER), level FROM summary_levels "
        "WHERE dictionary_id = ? ORDER BY factor",
        [_as_int(dictionary_id, "dictionary")],
    )
    return [(int(f), int(layer), str(level)) for f, layer, level in rows]


def effects_dictionary(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> dict | None:
    """{"dictionary_id", "n_factors", "status", "summarised"} of one dictionary, or None."""
    rows = _rows(
        con,
        "SELECT dictionary_id, n_factors, status, "
        "EXISTS (SELECT 1 FROM summary_meta m WHERE m.dictionary_id = d.dictionary_id) "
        "FROM dictionaries d WHERE dictionary_id = ?",
        [_as_int(dictionary_id, "dictionary")],
    )
    if not rows:
        return None
    return dict(zip(("dictionary_id", "n_factors", "status", "summarised"), rows[0], strict=True))


def factor_contexts(
    con: duckdb.DuckDBPyConnection,
    dictionary_id: int,
    pairs: Sequence[tuple[int, int]],
    n_sentences: int,
) -> dict[str, np.ndarray]:
    """The tokens where each (factor, layer) of ``pairs`` is active in its top sentences.

    A factor's top sentences are the first ``n_sentences`` distinct sentences of its top
    contexts at that layer (``summary_top_contexts``, by rank); every token of those
    sentences with a non-zero code of the factor at the layer is returned, with its
    alpha. Columns: factor, layer, sentence_rank (1 = the sentence of its strongest
    context), sentence_idx, position, alpha; ordered by factor, layer, sentence_rank,
    position.
    """
    if not pairs:
        return {
            "factor": np.zeros(0, np.int64),
            "layer": np.zeros(0, np.int64),
            "sentence_rank": np.zeros(0, np.int64),
            "sentence_idx": np.zeros(0, np.int64),
            "position": np.zeros(0, np.int64),
            "alpha": np.zeros(0, np.float32),
        }
    wanted = pa.table(
        {
            "factor": pa.array([int(f) for f, _ in pairs], pa.int32()),
            "layer": pa.array([int(layer) for _, layer in pairs], pa.int16()),
        }
    )
    con.register("_effect_pairs", wanted)
    try:
        return con.execute(
            """
            WITH ranked AS (
                SELECT t.factor, t.layer, t.sentence_idx, min(t.rank) AS best
                FROM summary_top_contexts t
                JOIN _effect_pairs w ON w.factor = t.factor AND w.layer = t.layer
                WHERE t.dictionary_id = $d
                GROUP BY ALL
            ), picked AS (
                SELECT factor, layer, sentence_idx,
                       row_number() OVER (PARTITION BY factor, layer
                                          ORDER BY best, sentence_idx) AS sentence_rank
                FROM ranked
                QUALIFY sentence_rank <= $n
            )
            SELECT c.factor, CAST(c.layer AS INTEGER) AS layer, p.sentence_rank,
                   p.sentence_idx, c.token_id % $stride AS position, c.alpha
            FROM codes c
            JOIN picked p ON c.factor = p.factor AND c.layer = p.layer
                         AND c.token_id // $stride = p.sentence_idx
            WHERE c.dictionary_id = $d AND c.alpha > 0
              -- ranges the codes' sort order (layer, factor) lets DuckDB skip blocks by
              AND c.layer BETWEEN $lmin AND $lmax AND c.factor BETWEEN $fmin AND $fmax
            ORDER BY c.factor, c.layer, p.sentence_rank, position
            """,
            {
                "d": int(dictionary_id),
                "n": int(n_sentences),
                "stride": MAX_POSITIONS,
                "lmin": min(int(layer) for _, layer in pairs),
                "lmax": max(int(layer) for _, layer in pairs),
                "fmin": min(int(f) for f, _ in pairs),
                "fmax": max(int(f) for f, _ in pairs),
            },
        ).fetchnumpy()
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister("_effect_pairs")


def sentence_texts(con: duckdb.DuckDBPyConnection, sentence_idx: Sequence[int]) -> dict[int, str]:
    """The text of each sentence asked for, by sentence_idx."""
    ids = sorted({int(i) for i in sentence_idx})
    if not ids:
        return {}
    rows = _rows(
        con,
        "SELECT sentence_idx, text FROM sentences WHERE list_contains(?, sentence_idx)",
        [ids],
    )
    return {int(i): str(text) for i, text in rows}


def finished_chunks(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> dict[int, dict]:
    """chunk -> the settings it was measured with, of every finished chunk."""
    rows = _rows(
        con,
        "SELECT chunk, settings FROM effects_chunks WHERE dictionary_id = ?",
        [int(dictionary_id)],
    )
    return {int(c): json.loads(stored) for c, stored in rows}


# ----------------------------------------------------------------------------- writes


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], data: dict, d: int
) -> None:
    """Insert ``data`` (column -> list) into ``table`` (a name of EFFECT_TABLES) for ``d``."""
    if not data or not len(data[columns[0]]):
        return
    frame = pa.table({name: data[name] for name in columns})
    con.register("_effect_rows", frame)
    try:
        names = ", ".join(columns)
        # ``table`` and ``columns`` come from this module's constants, never from a caller.
        con.execute(
            f"INSERT INTO {table} (dictionary_id, {names}) SELECT ?, {names} FROM _effect_rows",
            [int(d)],
        )
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister("_effect_rows")


def _replace_rows(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, rows: dict[str, dict]
) -> None:
    """Delete the (factor, layer) pairs of ``rows`` from every effect table, then insert."""
    effects = rows["factor_effects"]
    pairs = pa.table(
        {
            "factor": pa.array([int(f) for f in effects["factor"]], pa.int32()),
            "layer": pa.array([int(x) for x in effects["layer"]], pa.int16()),
        }
    )
    con.register("_effect_keys", pairs)
    try:
        for table in EFFECT_TABLES:
            con.execute(
                f"DELETE FROM {table} WHERE dictionary_id = ? AND EXISTS (SELECT 1 FROM "
                f"_effect_keys k WHERE k.factor = {table}.factor AND k.layer = {table}.layer)",
                [int(dictionary_id)],
            )
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister("_effect_keys")
    effects = {**effects, "settings": [json.dumps(s, sort_keys=True) for s in effects["settings"]]}
    _insert(con, "factor_effects", EFFECT_COLUMNS, effects, dictionary_id)
    _insert(con, "factor_output_tokens", TOKEN_COLUMNS, rows["factor_output_tokens"], dictionary_id)
    _insert(
        con,
        "factor_effect_sentences",
        SENTENCE_COLUMNS,
        rows["factor_effect_sentences"],
        dictionary_id,
    )


def write_effects_chunk(
    con: duckdb.DuckDBPyConnection,
    dictionary_id: int,
    chunk: int,
    rows: dict[str, dict],
    settings: dict,
    seconds: float,
) -> None:
    """One chunk of factors' rows (``rows``: table -> column -> list, for the three
    effect tables) and its ``effects_chunks`` row, in one transaction."""
    with transaction(con):
        _replace_rows(con, dictionary_id, rows)
        con.execute(
            "INSERT OR REPLACE INTO effects_chunks (dictionary_id, chunk, n_factors, settings, "
            "seconds, finished_at) VALUES (?, ?, ?, ?, ?, current_timestamp)",
            [
                int(dictionary_id),
                int(chunk),
                len(rows["factor_effects"]["factor"]),
                json.dumps(settings, sort_keys=True),
                float(seconds),
            ],
        )


def put_effect(db_path: str | Path, dictionary_id: int, rows: dict[str, dict]) -> bool:
    """Store an on-demand effect in the published file (replacing the same (factor,
    layer)); False, storing nothing, on a file without the effect tables."""
    with _write_connection(db_path) as con:
        if not has_effect_tables(con):
            return False
        with transaction(con):
            _replace_rows(con, dictionary_id, rows)
    return True


# ----------------------------------------------------------------------------- the app's reads


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def factor_effect(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, factor: int, layer: int
) -> dict[str, Any] | None:
    """One stored effect, or None: the measures, the control's, the output tokens and the
    sentences, in the shape of ``factorscope.stages.effects.FactorEffect.to_dict``."""
    d = _as_int(dictionary_id, "dictionary")
    factor = _as_int(factor, "factor")
    layer = _as_int(layer, "layer")
    if not has_effect_tables(con):
        return None
    key = [d, factor, layer]
    found = _dicts(
        con,
        "SELECT * EXCLUDE (settings), CAST(settings AS VARCHAR) AS settings, "
        "CAST(layer AS INTEGER) AS layer FROM factor_effects "
        "WHERE dictionary_id = ? AND factor = ? AND layer = ?",
        key,
    )
    if not found:
        return None
    tokens = _dicts(
        con,
        "SELECT kind, direction, token_id, token, effect FROM factor_output_tokens "
        "WHERE dictionary_id = ? AND factor = ? AND layer = ? ORDER BY kind, direction, rank",
        key,
    )
    sentences = _dicts(
        con,
        "SELECT e.rank, e.sentence_idx, s.text, e.n_tokens, e.embedding_shift, "
        "e.control_embedding_shift, e.state_change FROM factor_effect_sentences e "
        "JOIN sentences s USING (sentence_idx) "
        "WHERE e.dictionary_id = ? AND e.factor = ? AND e.layer = ? ORDER BY e.rank",
        key,
    )
    return assemble(found[0], tokens, sentences)


def assemble(row: dict, tokens: list[dict], sentences: list[dict]) -> dict[str, Any]:
    """The effect dict from one ``factor_effects`` row (a dict), its output tokens
    (kind, direction, token_id, token, effect; in rank order) and its sentences."""
    settings = row.get("settings")
    output: dict[str, dict[str, list]] = {}
    for t in tokens:
        output.setdefault(t["kind"], {"promoted": [], "suppressed": []})[t["direction"]].append(
            {"token_id": int(t["token_id"]), "token": t["token"], "effect": float(t["effect"])}
        )
    return {
        "dictionary_id": int(row["dictionary_id"]),
        "factor": int(row["factor"]),
        "layer": int(row["layer"]),
        "source": row["source"],
        "output_kind": row["output_kind"],
        "n_sentences": int(row["n_sentences"]),
        "n_tokens": int(row["n_tokens"]),
        "mean_alpha": row["mean_alpha"],
        "edit_norm": row["edit_norm"],
        "edit_rel": row["edit_rel"],
        "ablation": {m: row[m] for m in MEASURES},
        "control": {m: row[f"control_{m}"] for m in MEASURES},
        "output_tokens": output,
        "sentences": [dict(s) for s in sentences],
        "settings": json.loads(settings) if isinstance(settings, str) else settings,
        "seconds": float(row["seconds"]),
        "computed_at": row.get("computed_at"),
    }


def _headline(alias: str) -> str:
    """The headline measure (:data:`HEADLINE`) of a ``factor_effects`` row and its
    control's, as SQL columns ``effect`` and ``control``; ``alias``: the table's alias."""
    t = f"{alias}." if alias else ""
    return (
        f"CASE WHEN {t}output_kind = 'sentence-embedding' THEN {t}embedding_shift "
        f"ELSE {t}output_kl END AS effect, "
        f"CASE WHEN {t}output_kind = 'sentence-embedding' THEN {t}control_embedding_shift "
        f"ELSE {t}control_output_kl END AS control"
    )


def effect_layers(con: duckdb.DuckDBPyConnection, dictionary_id: int, factor: int) -> pl.DataFrame:
    """The layers where a factor's effect is stored: columns layer, source, headline
    measure and its control's (see :data:`HEADLINE`), output_kind."""
    d, factor = _as_int(dictionary_id, "dictionary"), _as_int(factor, "factor")
    if not has_effect_tables(con):
        return pl.DataFrame(
            schema={
                "layer": pl.Int32,
                "source": pl.Utf8,
                "output_kind": pl.Utf8,
                "effect": pl.Float64,
                "control": pl.Float64,
            }
        )
    return _frame(
        con,
        f"""
        SELECT CAST(layer AS INTEGER) AS layer, source, output_kind,
               {_headline("")}
        FROM factor_effects WHERE dictionary_id = $d AND factor = $f ORDER BY layer
        """,
        {"d": d, "f": factor},
    )


def neighbor_effects(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, factor: int, *, limit: int = 5
) -> pl.DataFrame:
    """The stored effects of a factor's nearest neighbours by atom cosine (each at the
    layers measured for it, the peak layer for the stage's rows): columns neighbor,
    cosine, layer, source, effect, control (the headline measure, :data:`HEADLINE`),
    state_change, control_state_change. Empty when none is stored."""
    d, factor, limit = (
        _as_int(dictionary_id, "dictionary"),
        _as_int(factor, "factor"),
        _as_int(limit, "limit"),
    )
    if not has_effect_tables(con):
        return pl.DataFrame(
            schema={
                "neighbor": pl.Int32,
                "cosine": pl.Float64,
                "layer": pl.Int32,
                "source": pl.Utf8,
                "effect": pl.Float64,
                "control": pl.Float64,
                "state_change": pl.Float64,
                "control_state_change": pl.Float64,
            }
        )
    return _frame(
        con,
        f"""
        WITH near AS (
            SELECT neighbor, cosine FROM summary_neighbors
            WHERE dictionary_id = $d AND factor = $f
            ORDER BY cosine DESC, neighbor LIMIT $limit
        )
        SELECT n.neighbor, n.cosine, CAST(e.layer AS INTEGER) AS layer, e.source,
               {_headline("e")},
               e.state_change, e.control_state_change
        FROM near n
        JOIN factor_effects e ON e.dictionary_id = $d AND e.factor = n.neighbor
        ORDER BY n.cosine DESC, n.neighbor, e.layer
        """,
        {"d": d, "f": factor, "limit": limit},
    )


def effects_by_level(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> pl.DataFrame:
    """'Which levels matter': the stage's effects (each factor at its peak layer) by IS
    level, against the random-direction control. One row per level (low, mid, high)
    with factors measured: columns level, n_factors, measure (the headline measure,
    :data:`HEADLINE`), effect_p25 / effect_median / effect_p75 / effect_mean, the same
    for the control, share_above_control (factors whose effect exceeds their control's),
    state_change_median and control_state_change_median."""
    d = _as_int(dictionary_id, "dictionary")
    empty = pl.DataFrame(
        schema={
            "level": pl.Utf8,
            "n_factors": pl.Int64,
            "measure": pl.Utf8,
            "effect_p25": pl.Float64,
            "effect_median": pl.Float64,
            "effect_p75": pl.Float64,
            "effect_mean": pl.Float64,
            "control_p25": pl.Float64,
            "control_median": pl.Float64,
            "control_p75": pl.Float64,
            "control_mean": pl.Float64,
            "share_above_control": pl.Float64,
            "state_change_median": pl.Float64,
            "control_state_change_median": pl.Float64,
        }
    )
    if not has_effect_tables(con):
        return empty
    frame = _frame(
        con,
        f"""
        WITH e AS (
            SELECT v.level, f.output_kind,
                   {_headline("f")},
                   f.state_change, f.control_state_change
            FROM factor_effects f
            JOIN summary_levels v
              ON v.dictionary_id = f.dictionary_id AND v.factor = f.factor
             AND v.peak_layer = f.layer
            WHERE f.dictionary_id = $d AND f.n_tokens > 0
        )
        SELECT level, count(*) AS n_factors,
               CASE WHEN any_value(output_kind) = 'sentence-embedding' THEN 'embedding_shift'
                    ELSE 'output_kl' END AS measure,
               quantile_cont(effect, 0.25) AS effect_p25,
               quantile_cont(effect, 0.5) AS effect_median,
               quantile_cont(effect, 0.75) AS effect_p75,
               avg(effect) AS effect_mean,
               quantile_cont(control, 0.25) AS control_p25,
               quantile_cont(control, 0.5) AS control_median,
               quantile_cont(control, 0.75) AS control_p75,
               avg(control) AS control_mean,
               avg(CASE WHEN effect > control THEN 1.0 ELSE 0.0 END) AS share_above_control,
               quantile_cont(state_change, 0.5) AS state_change_median,
               quantile_cont(control_state_change, 0.5) AS control_state_change_median
        FROM e
        GROUP BY level
        ORDER BY CASE level WHEN 'low' THEN 0 WHEN 'mid' THEN 1 ELSE 2 END
        """,
        {"d": d},
    )
    return frame if frame.height else empty


def effect_values(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> pl.DataFrame:
    """Every factor's headline effect and control at its peak layer, with its level
    (for the report's distribution plot): columns factor, layer, level, effect, control."""
    d = _as_int(dictionary_id, "dictionary")
    if not has_effect_tables(con):
        return pl.DataFrame(
            schema={
                "factor": pl.Int32,
                "layer": pl.Int32,
                "level": pl.Utf8,
                "effect": pl.Float64,
                "control": pl.Float64,
            }
        )
    return _frame(
        con,
        f"""
        SELECT f.factor, CAST(f.layer AS INTEGER) AS layer, v.level,
               {_headline("f")}
        FROM factor_effects f
        JOIN summary_levels v
          ON v.dictionary_id = f.dictionary_id AND v.factor = f.factor AND v.peak_layer = f.layer
        WHERE f.dictionary_id = $d AND f.n_tokens > 0
        ORDER BY f.factor
        """,
        {"d": d},
    )


def typical_alpha(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, factor: int, layer: int
) -> float | None:
    """The factor's importance score at ``layer`` (the mean of its K largest codes there):
    a natural steering strength. None where it never fires."""
    rows = _rows(
        con,
        "SELECT importance FROM summary_importance WHERE dictionary_id = ? AND factor = ? "
        "AND layer = ?",
        [_as_int(dictionary_id, "dictionary"), _as_int(factor, "factor"), _as_int(layer, "layer")],
    )
    return float(rows[0][0]) if rows and rows[0][0] else None
