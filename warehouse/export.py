"""Every table and public view of a database as Parquet or CSV files (`factorscope export`).

Each public view exists twice in a database: ``<view>`` (the active dictionary's rows)
and ``<view>_all`` (every dictionary's rows, with ``dictionary_id``). Writing both
doubled an export for nothing, so ``views`` picks which (:data:`VIEW_SETS`): by
default the ``_all`` views, which hold the active dictionary's rows too.

Rows are streamed from a read-only connection in Arrow batches and written by
pyarrow, so no file path ever goes into SQL and the codes table never has to fit in
memory. Relation names come from the database's own catalog and are checked against
a strict pattern before they are quoted into a query.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from factorscope.errors import InputError, WarehouseError
from factorscope.warehouse.connection import connect


@dataclass(frozen=True)
class ExportFormat:
    """How one file format is written and read back.

    ``writer(path, schema)`` is a pyarrow batch writer (a context manager with
    ``write_batch``); ``flat``: nested columns (lists, structs) become text first.
    """

    writer: Callable[[Path, pa.Schema], Any]
    reader: Callable[[Path], pa.Table]
    flat: bool


FORMATS: dict[str, ExportFormat] = {
    "parquet": ExportFormat(writer=pq.ParquetWriter, reader=pq.read_table, flat=False),
    "csv": ExportFormat(writer=pacsv.CSVWriter, reader=pacsv.read_csv, flat=True),
}
"""Export formats by name (the file suffix too): a new format is one entry here, and the
CLI's ``export --format`` choices come from this table."""

DEFAULT_FORMAT = "parquet"

VIEW_SETS: dict[str, str] = {
    "all": "tables and the <view>_all views (every dictionary's rows, with dictionary_id)",
    "active": "tables and the <view> views (the active dictionary's rows only)",
    "both": "tables and both kinds of views (their rows twice)",
}
"""Which views an export writes, by name; the CLI's ``export --views`` choices. Views
without an ``_all`` twin (``active_dictionary``) and every table are always written."""

DEFAULT_VIEWS = "all"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_BATCH = 256 * 1024


def relations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(name, 'table' | 'view') of every user table and view in the main schema."""
    rows = con.execute(
        "SELECT table_name, CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END "
        "FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_catalog = current_database() "
        "ORDER BY table_type, table_name"
    ).fetchall()
    return [(name, kind) for name, kind in rows if _NAME.match(name)]


def chosen_relations(relations_: list[tuple[str, str]], views: str) -> list[tuple[str, str]]:
    """The relations an export with ``views`` (a :data:`VIEW_SETS` name) writes.

    A view ``x`` whose twin ``x_all`` exists is an active-dictionary view; ``x_all``
    its every-dictionary twin. Tables and views without a twin are always kept.
    """
    if views not in VIEW_SETS:
        raise InputError(f"views must be one of {', '.join(VIEW_SETS)}, got {views!r}")
    names = {name for name, kind in relations_ if kind == "view"}
    every = {name for name in names if name.endswith("_all") and name[: -len("_all")] in names}
    active = {name[: -len("_all")] for name in every}
    dropped = {"all": active, "active": every, "both": set()}[views]
    return [(name, kind) for name, kind in relations_ if kind != "view" or name not in dropped]


def export(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = DEFAULT_FORMAT,
    views: str = DEFAULT_VIEWS,
) -> list[Path]:
    """Write ``<out_dir>/<name>.<fmt>`` for every table and the views ``views`` picks
    (:data:`VIEW_SETS`; default the ``<view>_all`` views); returns the files.

    List columns (vectors) are written as they are in Parquet and as JSON-like text
    (``[0.1, 0.2]``) in CSV.
    """
    if fmt not in FORMATS:
        raise InputError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if views not in VIEW_SETS:
        raise InputError(f"views must be one of {', '.join(VIEW_SETS)}, got {views!r}")
    db_path = Path(db_path)
    if not db_path.exists():
        raise WarehouseError(f"no database at {db_path} (run `factorscope ingest` first)")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {out_dir}: {e}") from e
    try:
        con = connect(db_path, read_only=True)
    except duckdb.Error as e:
        raise WarehouseError(f"cannot open database {db_path}: {e}") from e
    written: list[Path] = []
    try:
        for name, _kind in chosen_relations(relations(con), views):
            target = out_dir / f"{name}.{fmt}"
            _export_one(con, name, target, fmt)
            written.append(target)
    except duckdb.Error as e:
        raise WarehouseError(f"export of {db_path} failed: {e}") from e
    finally:
        con.close()
    return written


def _export_one(con: duckdb.DuckDBPyConnection, name: str, target: Path, fmt: str) -> None:
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [name],
    ).fetchall()
    select = []
    for column, data_type in columns:
        quoted = '"' + column.replace('"', '""') + '"'
        nested = data_type.endswith("]") or data_type.startswith(("STRUCT", "MAP", "UNION"))
        if FORMATS[fmt].flat and nested:
            select.append(f"CAST({quoted} AS VARCHAR) AS {quoted}")
        else:
            select.append(quoted)
    # ``name`` matched _NAME and comes from the catalog; columns are quoted identifiers.
    reader = con.sql(f'SELECT {", ".join(select)} FROM "{name}"').to_arrow_reader(_BATCH)
    partial = target.with_name(target.name + ".partial")
    with FORMATS[fmt].writer(partial, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
    partial.replace(target)


def read_back(path: str | Path) -> pa.Table:
    """An exported file as an Arrow table (tests, notebooks)."""
    path = Path(path)
    return FORMATS[path.suffix.removeprefix(".")].reader(path)
