"""Sentence metadata and the sense probe's tables (`factorscope probe`, the Senses page).

Writers (:func:`labelled_sentences`, :func:`write_probe`, :func:`fill_sentence_metadata`)
take the stage's write connection; readers take a read-only connection from
:class:`~factorscope.warehouse.queries.WarehouseReader` and answer "not probed" (None or
an empty frame) on a database made before these tables existed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from factorscope.errors import InputError, WarehouseError
from factorscope.warehouse import store
from factorscope.warehouse.connection import first_line
from factorscope.warehouse.parquet import ShardLayout, files_dataset
from factorscope.warehouse.queries import _frame, _rows, active_dictionary_id

PROBE_SCHEMA = pa.schema(
    [
        ("lemma", pa.string()),
        ("layer", pa.int16()),
        ("representation", pa.string()),
        ("n_occurrences", pa.int32()),
        ("n_senses", pa.int32()),
        ("accuracy", pa.float64()),
        ("chance", pa.float64()),
        ("off_word_share", pa.float64()),
        ("word_factor", pa.int32()),
    ]
)
"""One ``sense_probe`` row per (lemma, layer, representation), without the dictionary."""

OCCURRENCE_SCHEMA = pa.schema(
    [
        ("lemma", pa.string()),
        ("occurrence", pa.int32()),
        ("sense", pa.string()),
        ("synset", pa.string()),
        ("gloss", pa.string()),
        ("sentence_idx", pa.int32()),
        ("text", pa.string()),
        ("word_start", pa.int32()),
        ("word_end", pa.int32()),
        ("layer", pa.int16()),
        ("factor", pa.int32()),
        ("alpha", pa.float32()),
    ]
)
"""One ``sense_occurrences`` row per (lemma, occurrence, layer), without the dictionary."""


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        _rows(
            con,
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
            "AND database_name = current_database()",
            [table],
        )[0][0]
    )


def _has_metadata_column(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        _rows(
            con,
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'sentences' "
            "AND column_name = 'metadata' AND database_name = current_database()",
        )[0][0]
    )


# ----------------------------------------------------------------------------- metadata


def labelled_sentences(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, dict]]:
    """(sentence_idx, text, metadata) of every run sentence with metadata, in order."""
    if not _has_metadata_column(con):
        return []
    rows = _rows(
        con,
        "SELECT sentence_idx, text, metadata FROM sentences "
        "WHERE metadata IS NOT NULL ORDER BY sentence_idx",
    )
    out = []
    for idx, text, meta in rows:
        value = json.loads(meta) if isinstance(meta, str) else meta
        if isinstance(value, dict):
            out.append((int(idx), str(text), value))
    return out


def fill_sentence_metadata(con: duckdb.DuckDBPyConnection, roots: list[Path]) -> int:
    """Copy ``metadata`` from shard folders' ``sentences.parquet`` into ``sentences``.

    The merge of shard encodes builds ``sentences`` from the shards' files without this
    column; this fills it afterwards (shard folders written before it existed have none).
    Returns the number of sentences that got metadata.
    """
    files = [ShardLayout(Path(r)).sentences for r in roots]
    files = [p for p in files if p.is_file()]
    if not files:
        return 0
    dataset = files_dataset(files)
    if "metadata" not in dataset.schema.names:
        return 0
    con.register("_m_sentence_metadata", dataset)
    try:
        con.execute(
            "UPDATE sentences SET metadata = m.metadata "
            "FROM (SELECT sentence_idx, metadata FROM _m_sentence_metadata "
            "      WHERE metadata IS NOT NULL) m "
            "WHERE sentences.sentence_idx = m.sentence_idx"
        )
        return int(_rows(con, "SELECT count(*) FROM sentences WHERE metadata IS NOT NULL")[0][0])
    except duckdb.Error as e:
        raise WarehouseError(
            f"copying the shards' sentence metadata failed: {first_line(e)}"
        ) from e
    finally:
        con.unregister("_m_sentence_metadata")


# ----------------------------------------------------------------------------- the probe


def write_probe(
    con: duckdb.DuckDBPyConnection,
    *,
    dictionary_id: int,
    scores: pa.Table,
    occurrences: pa.Table,
    source: str,
    settings: dict[str, Any],
    n_lemmas: int,
    n_skipped: int,
    seconds: float,
) -> None:
    """Replace the probe of ``dictionary_id`` with these rows, in one transaction."""
    con.register("_p_scores", scores)
    con.register("_p_occurrences", occurrences)
    try:
        with store.transaction(con):
            for table in ("sense_probe", "sense_occurrences", "sense_probe_runs"):
                # table comes from the fixed tuple above, never from a caller.
                con.execute(f"DELETE FROM {table} WHERE dictionary_id = ?", [dictionary_id])
            con.execute(
                "INSERT INTO sense_probe BY NAME SELECT ? AS dictionary_id, * FROM _p_scores",
                [dictionary_id],
            )
            con.execute(
                "INSERT INTO sense_occurrences BY NAME "
                "SELECT ? AS dictionary_id, * FROM _p_occurrences",
                [dictionary_id],
            )
            con.execute(
                "INSERT INTO sense_probe_runs "
                "(dictionary_id, source, settings, n_lemmas, n_skipped, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    dictionary_id,
                    source,
                    json.dumps(settings, sort_keys=True),
                    n_lemmas,
                    n_skipped,
                    seconds,
                ],
            )
    except duckdb.Error as e:
        raise WarehouseError(f"writing the sense probe failed: {first_line(e)}") from e
    finally:
        con.unregister("_p_scores")
        con.unregister("_p_occurrences")


def probed_dictionaries(con: duckdb.DuckDBPyConnection) -> list[int]:
    """The dictionaries with a stored probe, in id order."""
    if not _has_table(con, "sense_probe_runs"):
        return []
    rows = con.execute(
        "SELECT dictionary_id FROM sense_probe_runs ORDER BY dictionary_id"
    ).fetchall()
    return [int(r[0]) for r in rows]


def probe_info(
    con: duckdb.DuckDBPyConnection, dictionary_id: int | None = None
) -> dict[str, Any] | None:
    """The probe of ``dictionary_id`` (default: the active dictionary): source, settings,
    counts; None if it is unprobed."""
    if not _has_table(con, "sense_probe_runs"):
        return None
    if dictionary_id is None:
        try:
            dictionary_id = active_dictionary_id(con)
        except WarehouseError:
            return None
    cur = con.execute(
        "SELECT dictionary_id, source, settings, n_lemmas, n_skipped, seconds, created_at "
        "FROM sense_probe_runs WHERE dictionary_id = ?",
        [dictionary_id],
    )
    rows = cur.fetchall()
    if not rows:
        return None
    info = dict(zip([c[0] for c in cur.description], rows[0], strict=True))
    info["settings"] = json.loads(info["settings"])
    return info


def probe_summary(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> pl.DataFrame:
    """The view ``sense_probe_summary_all`` of one dictionary, by representation and layer."""
    return _frame(
        con,
        "SELECT * EXCLUDE (dictionary_id) FROM sense_probe_summary_all "
        "WHERE dictionary_id = $d ORDER BY representation, layer",
        {"d": dictionary_id},
    )


def probe_scores(con: duckdb.DuckDBPyConnection, dictionary_id: int, lemma: str) -> pl.DataFrame:
    """The ``sense_probe`` rows of one lemma, by representation and layer."""
    return _frame(
        con,
        "SELECT * EXCLUDE (dictionary_id) FROM sense_probe "
        "WHERE dictionary_id = $d AND lemma = $w ORDER BY representation, layer",
        {"d": dictionary_id, "w": lemma},
    )


def probe_lemmas(con: duckdb.DuckDBPyConnection, dictionary_id: int) -> pl.DataFrame:
    """Probed lemmas with their occurrence and sense counts and their best code accuracy."""
    return _frame(
        con,
        "SELECT lemma, any_value(n_occurrences) AS n_occurrences, "
        "any_value(n_senses) AS n_senses, max(accuracy) AS best_accuracy "
        "FROM sense_probe WHERE dictionary_id = $d AND representation = 'codes' "
        "GROUP BY lemma ORDER BY lemma",
        {"d": dictionary_id},
    )


def lemma_occurrences(
    con: duckdb.DuckDBPyConnection, dictionary_id: int, lemma: str
) -> pl.DataFrame:
    """Every probed occurrence of ``lemma`` with its top factor per layer."""
    if not isinstance(lemma, str) or not lemma.strip():
        raise InputError("give a probed word")
    return _frame(
        con,
        "SELECT occurrence, sense, synset, gloss, sentence_idx, text, word_start, word_end, "
        "layer, factor, alpha FROM sense_occurrences "
        "WHERE dictionary_id = $d AND lemma = $w ORDER BY occurrence, layer",
        {"d": dictionary_id, "w": lemma},
    )
