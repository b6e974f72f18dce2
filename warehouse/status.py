"""What a database holds and how far each stage got (for `factorscope status`)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from factorscope.errors import DatabaseFileError, WarehouseError, WriterBusyError
from factorscope.warehouse import queries, store
from factorscope.warehouse.connection import (
    connect,
    explain_failure,
    first_line,
    schema_version,
    unusable,
    verify_blocks,
)
from factorscope.warehouse.publish import wip_path, writer_busy


def _describe(con: duckdb.DuckDBPyConnection) -> dict:
    run = store.get_run(con)
    if run is None:
        return {"run": None, "dictionaries": []}
    chunks = con.execute(
        "SELECT count(*), coalesce(sum(n_sentences), 0), coalesce(sum(n_tokens), 0), "
        "coalesce(sum(n_sampled), 0) FROM ingest_chunks"
    ).fetchall()[0]
    dictionaries = con.execute(
        """
        SELECT d.dictionary_id, d.n_factors, d.lambda1, d.source, d.status, d.fit_seconds,
               count(e.chunk) AS chunks_encoded, coalesce(sum(e.n_codes), 0) AS n_codes,
               coalesce(sum(e.seconds), 0) AS encode_seconds
        FROM dictionaries d LEFT JOIN encode_chunks e USING (dictionary_id)
        GROUP BY ALL ORDER BY d.dictionary_id
        """
    ).fetchall()
    names = [
        "dictionary_id",
        "n_factors",
        "lambda1",
        "source",
        "status",
        "fit_seconds",
        "chunks_encoded",
        "n_codes",
        "encode_seconds",
    ]
    return {
        "run": run,
        "chunks_ingested": chunks[0],
        "sentences_ingested": chunks[1],
        "tokens_ingested": chunks[2],
        "vectors_sampled": chunks[3],
        "dictionaries": [dict(zip(names, row, strict=True)) for row in dictionaries],
        "corpus": queries.corpus_report(con),
    }


STORAGE_TABLES = ("codes", "hidden_states", "tokens", "sentences")
"""Tables whose size ``status`` reports one by one; the summaries are reported together."""


def storage(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    """Where the file's bytes go: per table, per code row and per token, and free space.

    A table's size is its distinct storage blocks times the block size (DuckDB's
    ``pragma_storage_info``), so it is what the table costs in the file, compression
    included. ``free_share`` is the share of the file's blocks that hold nothing
    (left by rewrites; DuckDB reuses them for later writes).
    """
    size = con.execute(
        "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    ).fetchall()[0]
    block_size, total_blocks, free_blocks = (int(v) for v in size)
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]

    def table_bytes(name: str) -> int:
        # The name comes from duckdb_tables(), never from a caller.
        blocks = con.execute(
            f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('{name}') "
            "WHERE persistent AND block_id >= 0"
        ).fetchall()[0][0]
        return int(blocks) * block_size

    per_table = {t: table_bytes(t) for t in tables}
    rows = dict(con.execute("SELECT table_name, estimated_size FROM duckdb_tables()").fetchall())
    n_tokens = int(rows.get("tokens") or 0)
    n_codes = int(rows.get("codes") or 0)
    file_bytes = path.stat().st_size
    summaries = sum(b for t, b in per_table.items() if t.startswith("summary_"))
    return {
        "file_bytes": file_bytes,
        "free_share": free_blocks / total_blocks if total_blocks else 0.0,
        "table_bytes": {t: per_table.get(t, 0) for t in STORAGE_TABLES},
        "summary_bytes": summaries,
        "bytes_per_code_row": per_table.get("codes", 0) / n_codes if n_codes else None,
        "bytes_per_token": file_bytes / n_tokens if n_tokens else None,
    }


def database_status(db_path: str | Path) -> dict:
    """The published file's contents and, if a writer left one, the staging copy's.

    Every block of each file is read once (:func:`verify_blocks`: 0.35 s for a 463 MB
    file), so a damaged file is reported even where its summary would not read the
    damaged block. A staging copy is "busy" only while a writer holds the writer lock
    (``<db>.writer.lock``); one that no writer holds and that cannot be read is damaged.
    """
    db_path = Path(db_path)
    wip = wip_path(db_path)
    if not db_path.exists() and not wip.exists():
        raise WarehouseError(f"no database at {db_path} (run `factorscope ingest --db {db_path}`)")
    report: dict = {"db_path": str(db_path), "published": None, "staging": None}
    for key, path in (("published", db_path), ("staging", wip)):
        if not path.exists():
            continue
        if key == "staging":
            owner = writer_busy(db_path)
            if owner is not None:
                report[key] = {"busy": True, "writer": owner}
                continue
        try:
            con = connect(path, read_only=True)
        except WriterBusyError as e:
            report[key] = {"busy": True, "writer": str(e)}
            continue
        except DatabaseFileError:
            raise
        except WarehouseError as e:
            if key == "staging":
                raise unusable(path, f"cannot be opened ({e})") from e
            raise
        try:
            report[key] = _describe(con)
            report[key]["storage"] = storage(con, path)
            verify_blocks(con)
        except duckdb.Error as e:
            explained = explain_failure(e, candidates=[path])
            if explained is not None:
                raise explained from e
            raise WarehouseError(f"{path} is not a factorscope database: {e}") from e
        finally:
            con.close()
    return report


def servable_contents(db: Path) -> dict:
    """Open ``db`` read-only before a server starts on it; returns what it holds.

    ``{"dictionaries": int, "encoded": bool}``; a missing, foreign or unreadable file
    raises :class:`WarehouseError` with the command that builds one.
    """
    if not db.exists():
        raise WarehouseError(
            f"no database at {db}: build one with `factorscope pipeline --db {db}` "
            "(or ingest, learn, encode), or give --db PATH"
        )
    if db.is_dir():
        raise WarehouseError(f"--db {db} is a folder, not a DuckDB file")
    try:
        con = connect(db, read_only=True)
    except DatabaseFileError:
        raise  # says what the file is and what to do
    except WarehouseError as e:
        raise WarehouseError(f"{e} (is it a factorscope database? give --db PATH)") from e
    try:
        if schema_version(con) < 1 or store.get_run(con) is None:
            raise WarehouseError(
                f"{db} holds no factorscope run: run `factorscope pipeline --db {db}` first"
            )
        n_dicts = con.execute("SELECT count(*) FROM dictionaries").fetchall()[0][0]
        n_quality = con.execute("SELECT count(*) FROM layer_quality").fetchall()[0][0]
    except duckdb.Error as e:
        explained = explain_failure(e, candidates=[db])
        if explained is not None:
            raise explained from e
        raise WarehouseError(f"cannot read database {db}: {first_line(e)}") from e
    finally:
        con.close()
    return {"dictionaries": int(n_dicts), "encoded": int(n_quality) > 0}
