"""What a database holds and how far each stage got (for `factorscope status`)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from factorscope.errors import WarehouseError
from factorscope.warehouse import store
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import wip_path


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
    }


def database_status(db_path: str | Path) -> dict:
    """The published file's contents and, if a writer left one, the staging copy's."""
    db_path = Path(db_path)
    wip = wip_path(db_path)
    if not db_path.exists() and not wip.exists():
        raise WarehouseError(f"no database at {db_path} (run `factorscope ingest --db {db_path}`)")
    report: dict = {"db_path": str(db_path), "published": None, "staging": None}
    for key, path in (("published", db_path), ("staging", wip)):
        if not path.exists():
            continue
        try:
            con = connect(path, read_only=True)
        except WarehouseError as e:
            if key == "staging":
                report[key] = {"busy": True, "error": str(e)}
                continue
            raise
        try:
            report[key] = _describe(con)
        except duckdb.Error as e:
            raise WarehouseError(f"{path} is not a factorscope database: {e}") from e
        finally:
            con.close()
    return report
