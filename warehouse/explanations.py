"""The explain stage's reads and writes: tokens with their tags, one layer's codes, and
each (dictionary, layer) of explanations and held-out scores written in one transaction
(schema/007_evidence.sql), so a killed stage leaves whole layers or nothing."""

from __future__ import annotations

import contextlib
import json

import duckdb
import numpy as np
import pyarrow as pa

from factorscope.warehouse.store import transaction

EXPLANATION_COLUMNS = (
    "factor",
    "explained",
    "text",
    "rule",
    "rule_kind",
    "n_terms",
    "n_active_train",
    "train_detection",
)
SCORE_COLUMNS = (
    "factor",
    "n_active",
    "n_inactive",
    "detection",
    "detection_low",
    "detection_high",
    "detection_top",
    "auroc",
    "precision",
    "n_sentences",
    "localisation",
    "localisation_chance",
)


def read_explain_tokens(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Every stored token with its word as the text writes it and its tags, by token_id."""
    return con.execute(
        """
        SELECT t.token_id, t.sentence_idx, coalesce(t.word_index, 0) AS word_index, t.piece,
               substr(s.text, t.word_start + 1, t.word_end - t.word_start) AS word,
               g.tag, g.pos, g.lemma, g.lexname
        FROM tokens t
        JOIN sentences s USING (sentence_idx)
        JOIN token_tags g USING (token_id)
        ORDER BY t.token_id
        """
    ).fetchnumpy()


def read_explain_sentences(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    return con.execute(
        "SELECT sentence_idx, sentence_id, n_tokens FROM sentences ORDER BY sentence_idx"
    ).fetchnumpy()


def read_layer_codes(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, layer: int
) -> dict[str, np.ndarray]:
    return con.execute(
        "SELECT token_id, factor, alpha FROM codes WHERE dictionary_id = ? AND layer = ?",
        [dictionary_id, layer],
    ).fetchnumpy()


def explain_targets(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> list[dict]:
    """The dictionary and its controls, the dictionary first (a file read before schema 7,
    read-only and so not migrated, has no controls)."""
    has_kind = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'dictionaries' AND column_name = 'kind'"
    ).fetchall()[0][0]
    if has_kind:
        sql = """
        SELECT dictionary_id, n_factors, coalesce(kind, 'learned') AS kind, parent_id, status
        FROM dictionaries
        WHERE dictionary_id = ? OR (parent_id = ? AND kind = 'control')
        ORDER BY dictionary_id <> ?, dictionary_id
        """
    else:
        sql = """
        SELECT dictionary_id, n_factors, 'learned' AS kind, NULL AS parent_id, status
        FROM dictionaries WHERE dictionary_id = ? AND ? = ? ORDER BY dictionary_id
        """
    cur = con.execute(sql, [dictionary_id, dictionary_id, dictionary_id])
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def finished_layers(con: duckdb.DuckDBPyConnection, dictionary_id: int, settings: dict) -> set[int]:
    """Layers already explained with these settings (others are explained again)."""
    rows = con.execute(
        "SELECT layer, settings FROM explain_layers WHERE dictionary_id = ?", [dictionary_id]
    ).fetchall()
    return {int(layer) for layer, stored in rows if json.loads(stored) == settings}


def write_explained_layer(
    con: duckdb.DuckDBPyConnection,
    dictionary_id: int,
    layer: int,
    explanations: dict[str, list],
    scores: dict[str, list],
    settings: dict,
    seconds: float,
) -> None:
    """Replace one (dictionary, layer) of explanations and scores, atomically."""
    expl = pa.table({name: explanations[name] for name in EXPLANATION_COLUMNS})
    score = pa.table({name: scores[name] for name in SCORE_COLUMNS})
    key = [dictionary_id, layer]
    with transaction(con):
        for table in ("explanations", "explanation_scores", "explain_layers"):
            con.execute(f"DELETE FROM {table} WHERE dictionary_id = ? AND layer = ?", key)
        con.register("new_explanations", expl)
        con.register("new_scores", score)
        try:
            columns = ", ".join(EXPLANATION_COLUMNS)
            con.execute(
                f"INSERT INTO explanations (dictionary_id, layer, {columns}) "
                f"SELECT ?, ?, {columns} FROM new_explanations",
                key,
            )
            columns = ", ".join(SCORE_COLUMNS)
            con.execute(
                f"INSERT INTO explanation_scores (dictionary_id, layer, {columns}) "
                f"SELECT ?, ?, {columns} FROM new_scores",
                key,
            )
        finally:
            with contextlib.suppress(duckdb.Error):  # an aborted transaction: say its error
                con.unregister("new_explanations")
                con.unregister("new_scores")
        con.execute(
            "INSERT INTO explain_layers (dictionary_id, layer, settings, seconds) "
            "VALUES (?, ?, ?, ?)",
            [dictionary_id, layer, json.dumps(settings, sort_keys=True), seconds],
        )


def has_token_tags(con: duckdb.DuckDBPyConnection) -> bool:
    """Every stored token has its tags (a run tagged before a re-ingest has not)."""
    missing = con.execute(
        "SELECT count(*) FROM tokens t ANTI JOIN token_tags g USING (token_id)"
    ).fetchall()[0][0]
    tagged = con.execute("SELECT count(*) FROM token_tags").fetchall()[0][0]
    return missing == 0 and tagged > 0
