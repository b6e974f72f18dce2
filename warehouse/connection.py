"""The one place that opens DuckDB files: connection policy and schema migrations.

Every part of factorscope (stages, app, SQL console, exports) opens a database
through :func:`connect`, so a process opens a given file with one configuration.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from factorscope.errors import WarehouseError
from factorscope.warehouse import summary_files
from factorscope.warehouse.parquet import attached_roots

Connection = duckdb.DuckDBPyConnection
"""The connection type, for annotations above the warehouse (which never import duckdb)."""

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
    """Every view definition shipped with the package, as (file name, sql), in order.

    The summaries' own views (the ``@view`` section of each ``summary_sql`` file) come
    first, then ``views/*.sql`` sorted by name (views over several tables).
    """
    scripts = [(f"summary_sql/{s.name}", s.view) for s in summary_files.summaries() if s.view]
    folder = resources.files("factorscope.warehouse").joinpath("views")
    if folder.is_dir():
        scripts += sorted(
            (f"views/{entry.name}", entry.read_text("utf-8"))
            for entry in folder.iterdir()
            if entry.name.endswith(".sql")
        )
    return scripts


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
    recreated = create_summary_tables(con)
    create_views(con)
    if recreated:
        _refill_summaries(con)
    return schema_version(con)


def _refill_summaries(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the summaries of every summarised dictionary after their tables changed.

    A summary file that changes its table's columns (e.g. migration 005 keying them by
    dictionary) recreates the table empty; the dictionaries whose summaries it held
    (those with ``summary_meta`` rows) get them back from their codes here, so a
    migrated file shows the same rows as before.
    """
    from factorscope.warehouse import summaries  # summaries -> store; not at import time

    rows = con.execute(
        "SELECT DISTINCT m.dictionary_id FROM summary_meta m "
        "JOIN dictionaries d USING (dictionary_id) WHERE d.status = 'encoded' "
        "ORDER BY m.dictionary_id"
    ).fetchall()
    for (dictionary_id,) in rows:
        summaries.refresh_summaries(con, dictionary_id=dictionary_id)


@functools.cache
def _wanted_columns(
    summaries: tuple[summary_files.SummaryFile, ...],
) -> dict[str, list[tuple[str, str]]]:
    """Each summary table's (column, type) list, as its file creates it."""
    probe = duckdb.connect()
    try:
        for summary in summaries:
            probe.execute(summary.table_sql)
        return _columns(probe)
    finally:
        probe.close()


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """(column, type) of every table of this connection's schema, by table, in order."""
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall():
        found.setdefault(table, []).append((column, kind))
    return found


def create_summary_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create each summary's table from its file; recreate one whose columns changed.

    Summary tables are derived data (the next refresh refills them), so a file that
    changes a table's columns replaces the old table instead of needing a migration.
    Returns the tables recreated (not those created in a new file). Every writer's
    connection runs this, so it costs one catalog query when nothing changed.
    """
    shipped = summary_files.summaries()
    wanted = _wanted_columns(shipped)
    have = _columns(con)
    recreated: list[str] = []
    for summary in shipped:
        found = have.get(summary.table)
        if found == wanted[summary.table]:
            continue
        try:
            if found:
                # The name comes from a shipped summary file, never from a caller.
                con.execute(f"DROP TABLE {summary.table}")
                recreated.append(summary.table)
            con.execute(summary.table_sql)
        except duckdb.Error as e:
            raise WarehouseError(f"summary table {summary.table} failed: {e}") from e
    return recreated


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create every view; views are code, so they always follow the installed package."""
    for name, sql in view_scripts():
        try:
            con.execute(sql)
        except duckdb.Error as e:
            raise WarehouseError(f"view script {name} failed: {e}") from e


STORAGE_COMPATIBILITY = "v1.2.0"
"""The DuckDB storage format every new database file is written in.

DuckDB 2.x writes storage version 69 by default, which no 1.x client reads (the
newest ``duckdb-cli`` on PyPI, 1.5.6, reads 64..68). A file created with this
compatibility version opens in DuckDB 1.2.0 or newer (the CLI, DBeaver, R, older
Python). The format is fixed when a file is created; staging copies inherit it.
"""

WRITER_MEMORY = os.environ.get("FACTORSCOPE_WRITER_MEMORY", "1536MB")
"""DuckDB's memory limit in the stages' writers (DuckDB's default is 80% of RAM): sorts
and summaries past it spill to DuckDB's temp folder, so a stage's peak memory stays flat
in corpus size (issue 15: at most 3 GB for a million-token run, with the model loaded).
``FACTORSCOPE_WRITER_MEMORY`` raises it on a bigger machine."""

WRITE_CONFIG: dict[str, Any] = {
    "storage_compatibility_version": STORAGE_COMPATIBILITY,
    "memory_limit": WRITER_MEMORY,
}
"""Configuration of every read-write connection (writers stage in ``<db>.wip``)."""

READ_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "temp_directory": "",
    "max_memory": "2GB",
    "lock_configuration": True,
}
"""Configuration of every read-only connection, in every process and every part.

One configuration for all of them: DuckDB shares one database instance per file
within a process and refuses a second connection with a different configuration
("Can't open a connection to same database file with a different configuration").
The app's pages, the live analyzer, LIME jobs, the SQL console, exports and the
stages' own reads all open read-only through :func:`connect`, so whichever opens a
file first, the others can join it. Read-only connections can read no other file
and reach no network: the SQL console relies on it.
"""


class Gate:
    """Per-file coordination inside one process.

    Readers share one cached read-only connection (a cursor each); writers of the
    published file (the app's labels) need it closed. DuckDB keeps one database
    instance per path and process and hands it to every new connection with the same
    configuration, even after ``os.replace`` put a new file at that path: so a stale
    cached connection must be closed before anyone opens the path again
    (:func:`drop_if_stale`), or the newcomer silently reads the old file.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.signature: tuple[int, int] | None = None
        self.readers = 0
        self.writing = False

    def drop(self) -> None:
        """Close the cached connection (caller holds ``cond`` and no reader is active)."""
        if self.con is not None:
            with contextlib.suppress(duckdb.Error):
                self.con.close()
        self.con = None
        self.signature = None


_GATES: dict[str, Gate] = {}
_GATES_LOCK = threading.Lock()


def gate_of(path: str | Path) -> Gate:
    """The :class:`Gate` of a file in this process."""
    key = os.path.realpath(path)
    with _GATES_LOCK:
        return _GATES.setdefault(key, Gate())


def file_signature(path: str | Path) -> tuple[int, int] | None:
    """(inode, mtime_ns) of a file, or None when it is missing: a publish changes it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def drop_if_stale(path: str | Path, *, timeout_s: float = 30.0) -> None:
    """Close this process's cached reader of ``path`` if a newer file was published there.

    Waits (up to ``timeout_s``) for reads still running on the old file to finish.
    """
    gate = gate_of(path)
    with gate.cond:
        if gate.con is None or gate.signature == file_signature(path):
            return
        gate.cond.wait_for(lambda: gate.readers == 0, timeout=timeout_s)
        if gate.readers == 0:
            gate.drop()


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a factorscope database with the one connection policy of this module.

    Writers get :data:`WRITE_CONFIG` and the schema migrated first; readers get
    :data:`READ_CONFIG` (see :func:`_open_read_only` for attached Parquet codes).
    """
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    if not read_only:
        parent = path.resolve().parent
        if not parent.is_dir():
            raise WarehouseError(f"cannot create database {path}: folder {parent} does not exist")
    try:
        if read_only:
            drop_if_stale(path)
            con = _open_read_only(path)
        else:
            con = writer_session(duckdb.connect(str(path), config=dict(WRITE_CONFIG)))
    except duckdb.Error as e:
        raise WarehouseError(f"cannot open database {path}: {first_line(e)}") from e
    if not read_only:
        migrate(con)
    return con


def writer_session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Session settings of a writer connection or cursor (DuckDB keeps them per session).

    DuckDB's own bar for long statements (the sort of a large encode's codes) helps in a
    terminal and floods a log file with a line per percent: shown on a terminal only.
    """
    con.execute(f"SET enable_progress_bar = {'true' if sys.stderr.isatty() else 'false'}")
    return con


def connect_raw(path: str | Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """:func:`connect` without the existence checks and migration, raising ``duckdb.Error``.

    For callers that retry on lock conflicts themselves (the app's label writes and
    its cached reader).
    """
    if read_only:
        return _open_read_only(Path(path))
    return duckdb.connect(str(path), config=dict(WRITE_CONFIG))


def _open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection with :data:`READ_CONFIG`.

    For an attached warehouse the codes folders are allowed first (DuckDB's
    ``allowed_directories``), then external access is switched off and the
    configuration locked, so the SQL console still reads no other file.
    """
    roots = attached_roots(path)
    if not roots:
        return duckdb.connect(str(path), read_only=True, config=dict(READ_CONFIG))
    late = ("enable_external_access", "lock_configuration")
    config = {k: v for k, v in READ_CONFIG.items() if k not in late}
    con = duckdb.connect(str(path), read_only=True, config=config)
    try:
        locked = con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]
        if not locked:  # the first connection of this process to the file sets it up
            con.execute("SET allowed_directories = ?", [roots])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except duckdb.Error:
        con.close()
        raise
    return con


def first_line(error: BaseException) -> str:
    """The first line of an error's text (DuckDB's messages run to many lines)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
