"""Opening DuckDB files and bringing their schema up to date."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import duckdb

from factorscope.errors import WarehouseError

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """Every schema migration shipped with the package, as (version, name, sql), in order."""
    found = []
    for entry in resources.files("factorscope.warehouse").joinpath("schema").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


def view_scripts() -> list[tuple[str, str]]:
    """Every view definition shipped with the package, as (file name, sql), sorted by name."""
    folder = resources.files("factorscope.warehouse").joinpath("views")
    return sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest migration applied to this database (0 for an empty file)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply the migrations this database lacks, then (re)create the views.

    Each migration file bumps ``schema_version`` itself, inside the same transaction,
    so a crash never leaves a half-applied version behind.
    """
    current = schema_version(con)
    for version, _name, sql in migrations():
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("COMMIT")
        except duckdb.Error as e:
            con.execute("ROLLBACK")
            raise WarehouseError(f"schema migration {version:03d} failed: {e}") from e
    create_views(con)
    return schema_version(con)


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create every view; views are code, so they always follow the installed package."""
    for name, sql in view_scripts():
        try:
            con.execute(sql)
        except duckdb.Error as e:
            raise WarehouseError(f"view script {name} failed: {e}") from e


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a factorscope database; writers get the schema migrated first."""
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    if not read_only:
        parent = path.resolve().parent
        if not parent.is_dir():
            raise WarehouseError(f"cannot create database {path}: folder {parent} does not exist")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as e:
        raise WarehouseError(f"cannot open database {path}: {_first_line(e)}") from e
    if not read_only:
        migrate(con)
    return con


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
