"""Reads and writes of ``token_tags`` and ``token_tags_meta`` (schema 007).

The tags are made outside the warehouse (``ingest.tagging``); this module only moves
them in and out: what the tagger needs of ``sentences`` and ``tokens``, and the tags
back, replacing the previous ones in one transaction together with the tagger's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from factorscope.warehouse.store import transaction

TOKEN_TAGS_SCHEMA = pa.schema(
    [
        ("token_id", pa.int64()),
        ("tag", pa.string()),
        ("pos", pa.string()),
        ("lemma", pa.string()),
        ("lexname", pa.string()),  # null where WordNet has no class
    ]
)
"""The columns of ``token_tags``, as Arrow types."""

TOKEN_COLUMNS = ("sentence_idx", "token_id", "char_start", "char_end", "word_start", "word_end")


def token_tags_table(columns: Mapping[str, Any]) -> pa.Table:
    """The typed Arrow table of ``token_tags`` from columns (arrays or lists), e.g. what
    ``ingest.tagging.tag_tokens`` returns."""
    missing = [f.name for f in TOKEN_TAGS_SCHEMA if f.name not in columns]
    if missing:
        raise ValueError(f"token tags lack the columns {', '.join(missing)}")
    return pa.Table.from_pydict(
        {f.name: columns[f.name] for f in TOKEN_TAGS_SCHEMA}, schema=TOKEN_TAGS_SCHEMA
    )


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether this database has the table (a file made before schema 007 has none)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE database_name = current_database() AND table_name = ?",
            [name],
        ).fetchall()[0][0]
    )


def write_token_tags(
    con: duckdb.DuckDBPyConnection, table: pa.Table | Mapping[str, Any], meta: Mapping[str, str]
) -> int:
    """Replace every row of ``token_tags`` and ``token_tags_meta``, in one transaction.

    ``table`` has the columns of :data:`TOKEN_TAGS_SCHEMA` (others are ignored); rows
    are stored sorted by token id. Returns the number of rows written.
    """
    if not isinstance(table, pa.Table):
        table = token_tags_table(table)
    missing = [f.name for f in TOKEN_TAGS_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"token tags lack the columns {', '.join(missing)}")
    table = table.select(TOKEN_TAGS_SCHEMA.names).cast(TOKEN_TAGS_SCHEMA)
    meta_table = pa.table(
        {
            "key": pa.array([str(k) for k in meta], pa.string()),
            "value": pa.array([str(v) for v in meta.values()], pa.string()),
        }
    )
    with transaction(con):
        con.register("new_token_tags", table)
        con.register("new_token_tags_meta", meta_table)
        try:
            con.execute("DELETE FROM token_tags")
            con.execute(
                "INSERT INTO token_tags (token_id, tag, pos, lemma, lexname) "
                "SELECT token_id, tag, pos, lemma, lexname FROM new_token_tags ORDER BY token_id"
            )
            con.execute("DELETE FROM token_tags_meta")
            con.execute(
                "INSERT INTO token_tags_meta (key, value) "
                "SELECT key, value FROM new_token_tags_meta"
            )
        finally:
            con.unregister("new_token_tags")
            con.unregister("new_token_tags_meta")
    return table.num_rows


def read_token_tags(con: duckdb.DuckDBPyConnection) -> pa.Table | None:
    """Every row of ``token_tags`` by token id (:data:`TOKEN_TAGS_SCHEMA`), or None when
    the run has not been tagged (or its file predates the table)."""
    if not _has_table(con, "token_tags"):
        return None
    table = con.sql(
        "SELECT token_id, tag, pos, lemma, lexname FROM token_tags ORDER BY token_id"
    ).to_arrow_table()
    if table.num_rows == 0:
        return None
    return table.cast(TOKEN_TAGS_SCHEMA)


def token_tags_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """{key: value} of ``token_tags_meta``: which tagger made the tags ({} if none)."""
    if not _has_table(con, "token_tags_meta"):
        return {}
    return dict(con.execute("SELECT key, value FROM token_tags_meta ORDER BY key").fetchall())


def read_tokens_for_tagging(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What ``ingest.tagging.tag_tokens`` needs, as its keyword arguments.

    ``texts``: a list whose item ``s`` is the text of sentence ``s`` ('' for a number
    no sentence has); ``sentence_idx``, ``token_id``, ``char_start``, ``char_end``,
    ``word_start``, ``word_end`` and ``word_index`` (-1 for a special token): numpy
    arrays, one entry per stored token in token id order. Only these columns are read,
    as numpy arrays (a million tokens: about 40 MB besides the texts).
    """
    texts: list[str] = []
    for s, text in con.execute(
        "SELECT sentence_idx, text FROM sentences WHERE sentence_idx >= 0 ORDER BY sentence_idx"
    ).fetchall():
        if s >= len(texts):
            texts.extend([""] * (s - len(texts)))
            texts.append(text)
        else:
            texts[s] = text
    columns = con.execute(
        "SELECT sentence_idx, token_id, char_start, char_end, word_start, word_end, "
        "coalesce(word_index, -1) AS word_index FROM tokens ORDER BY token_id"
    ).fetchnumpy()
    out: dict[str, Any] = {"texts": texts}
    for name in (*TOKEN_COLUMNS, "word_index"):
        dtype = np.int64 if name == "token_id" else np.int32
        out[name] = np.asarray(columns[name], dtype=dtype)
    return out
