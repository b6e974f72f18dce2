"""The one place that opens DuckDB files: connection policy and schema migrations.

Every part of factorscope (stages, app, SQL console, exports) opens a database
through :func:`connect`, so a process opens a given file with one configuration.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from factorscope.errors import (
    DatabaseFileError,
    DiskFullError,
    FactorscopeError,
    WarehouseError,
    WriterBusyError,
)
from factorscope.warehouse import summary_files
from factorscope.warehouse.parquet import attached_roots
from factorscope.warehouse.session import writer_session

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
    A file that is not factorscope's to use raises :class:`DatabaseFileError` before
    anything is read or written: not a DuckDB file (checked by its header, so DuckDB
    never tries to load a SQLite extension), damaged, another program's DuckDB file
    (tables, but no ``schema_version`` and ``runs``), or made by a newer factorscope.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    if not read_only:
        parent = path.resolve().parent
        if not parent.is_dir():
            raise WarehouseError(f"cannot create database {path}: folder {parent} does not exist")
    _check_file_kind(path)
    _remember(path)
    try:
        if read_only:
            drop_if_stale(path)
            con = _open_read_only(path)
        else:
            con = writer_session(duckdb.connect(str(path), config=dict(WRITE_CONFIG)))
    except duckdb.Error as e:
        explained = explain_failure(e, candidates=[path])
        if explained is not None and not _is_generic(explained):
            raise explained from e
        raise WarehouseError(f"cannot open database {path}: {first_line(e)}") from e
    try:
        check_ours(con, path)
        if not read_only:
            migrate(con)
    except BaseException as e:
        with contextlib.suppress(duckdb.Error):
            con.close()
        if isinstance(e, duckdb.Error):
            explained = explain_failure(e, candidates=[path])
            if explained is not None:
                raise explained from e
        raise
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


# ----------------------------------------------------------------------------------------
# Files factorscope must not use, and failures that are not bugs (docs/CONTRACTS.md,
# "Damaged files and a full disk"). Every command reaches these through :func:`connect`
# (a file is checked before it is used) or :func:`explain_failure` (a query that failed
# half-way: the CLI's exit point and the publisher call it).

WIP_SUFFIX = ".wip"
"""The staging copy's suffix (``publish.wip_path``; publish imports this module)."""

RESTORE = "restore it from a backup, or build it again with `factorscope ingest --overwrite`"

_HEADERS = (
    (b"SQLite format 3\x00", "a SQLite file?"),
    (b"PAR1", "a Parquet file?"),
    (b"PK\x03\x04", "a zip file?"),
    (b"\x1f\x8b", "a gzip file?"),
)
_CHECKSUM = re.compile(
    r"computed checksum (\d+) does not match stored checksum (\d+) in block at location (\d+)"
)
_SHORT_READ = re.compile(
    r'Could not read enough bytes from file "([^"]+)": attempted to read (\d+) bytes '
    r"from location (\d+)"
)
_NOT_DUCKDB = re.compile(r'The file "([^"]+)" exists, but it is not a valid DuckDB database')
_LOCKED = re.compile(r'Could not set lock on file "([^"]+)".*?\(PID (\d+)\)', re.S)
_QUOTED_FILE = re.compile(r'file "([^"]+)"')
_DISK_FULL = ("no space left on device", "disk quota exceeded")
_DAMAGE_WORDS = ("corrupt database file", "checksum", "could not read enough bytes")

_RECENT: list[Path] = []
_RECENT_LOCK = threading.Lock()


def _remember(path: Path) -> None:
    """Note a file this process opened: a failed checksum names no file (see
    :func:`explain_failure`), so it is looked for among these."""
    with _RECENT_LOCK:
        if path in _RECENT:
            _RECENT.remove(path)
        _RECENT.insert(0, path)
        del _RECENT[8:]


def recently_opened() -> list[Path]:
    """The files :func:`connect` opened in this process, the most recent first."""
    with _RECENT_LOCK:
        return list(_RECENT)


@functools.cache
def latest_schema_version() -> int:
    """The newest schema migration this package ships."""
    return max(version for version, _name, _sql in migrations())


def published_of(path: str | Path) -> Path | None:
    """The published file whose staging copy (or copy being made) ``path`` is, else None."""
    path = Path(path)
    for suffix in (WIP_SUFFIX, WIP_SUFFIX + ".copying"):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return None


def unusable(path: str | Path, detail: str, fix: str = RESTORE) -> DatabaseFileError:
    """The one-line error for a file factorscope must not use.

    ``detail`` continues "``<path>`` ..." (e.g. "is damaged (...)"); a staging copy is
    named as the unfinished work it holds, which is removed to start the stage again.
    """
    path = Path(path)
    published = published_of(path)
    if published is not None and path.name.endswith(WIP_SUFFIX):
        inner = re.fullmatch(r"is damaged \((.*)\)", detail)
        reason = inner.group(1) if inner else detail.removeprefix("is ").removeprefix("was ")
        return DatabaseFileError(
            f"the unfinished work in {path} is unreadable (damaged: {reason}): "
            "remove it to start the stage again"
        )
    if published is not None:  # a copy being made: what is wrong is in the published file
        path = published
    return DatabaseFileError(f"{path} {detail}: {fix}")


def file_problem(path: Path) -> str | None:
    """None for a DuckDB file (or none at all); else what the file is instead."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return None  # missing, a folder, unreadable: the caller's own checks say so
    if len(head) >= 12 and head[8:12] == b"DUCK":
        return None
    if not head:
        return "is an empty file, not a DuckDB database"
    for magic, guess in _HEADERS:
        if head.startswith(magic):
            return f"is not a DuckDB database ({guess})"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a DuckDB database"
    return "is not a DuckDB database (a text file?)"


def _check_file_kind(path: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB opens it.

    DuckDB would take a SQLite file for an attachable one and try to load (or download)
    its SQLite extension: "Loading external extensions is disabled".
    """
    kind = file_problem(path)
    if kind is None:
        return
    if published_of(path) is not None:
        raise unusable(path, kind)
    raise DatabaseFileError(
        f"cannot open database {path}: {kind.removeprefix('is ')}; give --db a factorscope database"
    )


def check_ours(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    """Refuse another program's DuckDB file and one made by a newer factorscope.

    An empty DuckDB file is fine (a writer creates the schema in it). One with tables
    but without factorscope's ``schema_version`` and ``runs`` belongs to someone else:
    never written into (ingest would add its 30 tables beside the owner's) nor read.
    """
    tables = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "ORDER BY table_name"
        ).fetchall()
    ]
    if not tables:
        return
    if "schema_version" not in tables or "runs" not in tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        raise unusable(
            path,
            f"is another program's DuckDB database (tables {shown}), not a factorscope one",
            "give another --db (factorscope neither reads nor writes it)",
        )
    version = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]
    latest = latest_schema_version()
    if version > latest:
        raise unusable(
            path,
            f"was made by a newer factorscope (schema {version} > {latest})",
            "upgrade factorscope to use it",
        )


FILE_HEADER_BYTES = 3 * 4096
"""DuckDB's main header and its two database headers, before the first block."""


def verify_blocks(con: duckdb.DuckDBPyConnection) -> None:
    """Read every column of every table once, so that DuckDB checks each block's checksum.

    DuckDB verifies a block when it reads it; a command that never reads a damaged
    block would not notice it (a writer would publish it again). Hashing every column
    reads every data block: 0.35 s for a 463 MB file with 29M code rows on 2 cores
    (warm cache). Index blocks are checked when a writer first uses the index.
    Raises ``duckdb.Error`` ("Corrupt database file: ...") for a damaged block.
    """
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "ORDER BY table_name"
    ).fetchall()
    for (table,) in tables:
        # The name comes from the catalog, quoted as an identifier; never from a caller.
        quoted = '"' + table.replace('"', '""') + '"'
        con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {quoted}").fetchall()


def verify_file(path: str | Path) -> None:
    """:func:`verify_blocks` on a file of its own (a staging copy just made, before it
    is used); raises :class:`DatabaseFileError` naming the damage."""
    path = Path(path)
    try:
        con = duckdb.connect(str(path), read_only=True, config=dict(READ_CONFIG))
        try:
            verify_blocks(con)
        finally:
            con.close()
    except duckdb.Error as e:
        explained = explain_failure(e, candidates=[path])
        if isinstance(explained, DatabaseFileError):
            raise explained from e
        raise unusable(path, f"cannot be read ({first_line(e)})") from e


DEFAULT_BLOCK_BYTES = 262144
"""DuckDB's block size (with its 8-byte checksum), which factorscope's files use."""


def _block_checksum(block: bytes) -> int:
    """DuckDB's checksum of a block's payload (the bytes after its stored checksum):
    5381 xor-ed with each little-endian 64-bit word times 0xbf58476d1ce4e5b9."""
    import numpy as np  # only on this error path

    words = np.frombuffer(block[: len(block) // 8 * 8], dtype="<u8")
    with np.errstate(over="ignore"):
        mixed = words * np.uint64(0xBF58476D1CE4E5B9)
    return int(np.uint64(5381) ^ np.bitwise_xor.reduce(mixed))


def _block_owner(stored: int, computed: int, location: int, candidates: list[Path]) -> Path | None:
    """Which of ``candidates`` holds the block that failed its checksum at ``location``.

    A copy holds the same stored checksum there, so the block's payload is checksummed
    again (DuckDB's rule, :func:`_block_checksum`): the file whose payload gives DuckDB's
    ``computed`` value is the damaged one. Where that rule does not reproduce DuckDB's
    (another block size or version), the first file with the stored checksum is named.
    """
    size = 4096 if location < FILE_HEADER_BYTES else DEFAULT_BLOCK_BYTES
    holding: list[Path] = []
    for candidate in candidates:
        try:
            with candidate.open("rb") as handle:
                handle.seek(location)
                block = handle.read(size)
        except OSError:
            continue
        if len(block) < 16 or int.from_bytes(block[:8], "little") != stored:
            continue
        if _block_checksum(block[8:]) == computed:
            return candidate
        holding.append(candidate)
    return holding[0] if holding else None


def is_disk_full(error: BaseException) -> bool:
    """An OSError ENOSPC / EDQUOT, or DuckDB's (or pyarrow's) text for one."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _DISK_FULL)


def _disk_full_where(error: BaseException, candidates: list[Path]) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return str(error.filename)
    quoted = _QUOTED_FILE.search(str(error))
    if quoted:
        return quoted.group(1)
    return str(candidates[0].resolve().parent) if candidates else "the database's folder"


def explain_failure(
    error: BaseException, *, candidates: list[Path] | None = None
) -> WarehouseError | None:
    """A one-line :class:`WarehouseError` for a failure that is not a bug, else None.

    Recognised (from DuckDB's own texts, made by damaging files): a full disk (any
    command: "disk full at <path>: ..."), a damaged file (a block's checksum fails, the
    file is cut short, its header is not DuckDB's), a file locked by another process.
    A failed checksum names no file: the one of ``candidates`` (default: the files
    this process opened, newest first) that holds that block is named. Already
    classified errors come back as they are; a ``FactorscopeError`` that only quotes
    DuckDB's text (a query that failed) is classified by that text.
    """
    if isinstance(error, DatabaseFileError | DiskFullError | WriterBusyError):
        return error
    if candidates is None:
        candidates = recently_opened()
    candidates = [Path(c) for c in candidates]
    if is_disk_full(error):
        quota = (isinstance(error, OSError) and error.errno == errno.EDQUOT) or (
            "quota" in str(error).lower()
        )
        detail = os.strerror(errno.EDQUOT if quota else errno.ENOSPC)
        return DiskFullError(f"disk full at {_disk_full_where(error, candidates)}: {detail}")
    if not isinstance(error, duckdb.Error | FactorscopeError):
        return None
    text = str(error)
    checksum = _CHECKSUM.search(text)
    if checksum:
        computed, stored, location = (int(g) for g in checksum.groups())
        owner = _block_owner(stored, computed, location, candidates) or (
            candidates[0] if candidates else None
        )
        detail = f"is damaged (the block at byte {location:,} fails its checksum)"
        if owner is None:
            return DatabaseFileError(f"the database file {detail}: {RESTORE}")
        return unusable(owner, detail)
    short = _SHORT_READ.search(text)
    if short:
        path = Path(short.group(1))
        end = int(short.group(3)) + int(short.group(2))
        try:
            size = f"{path.stat().st_size:,} bytes"
        except OSError:
            size = "shorter"
        return unusable(path, f"is damaged (cut short: {size}, DuckDB reads up to byte {end:,})")
    not_duckdb = _NOT_DUCKDB.search(text)
    if not_duckdb:
        return unusable(not_duckdb.group(1), "is not a DuckDB database (or its header is damaged)")
    locked = _LOCKED.search(text)
    if locked:
        path = Path(locked.group(1))
        db = published_of(path) or path
        pid = locked.group(2)
        return WriterBusyError(
            f"another {_writer_named(db, pid)} (pid {pid}) is working on {db}: wait for it "
            "to finish (or stop it), then run the command again"
        )
    if isinstance(error, duckdb.IOException):
        quoted = _QUOTED_FILE.search(text)
        where = quoted.group(1) if quoted else (str(candidates[0]) if candidates else "a file")
        return WarehouseError(f"cannot read or write {where}: {first_line(error)}")
    return None


def _writer_named(db: Path, pid: str) -> str:
    """The command of the stage with this pid, as it wrote itself into
    ``<db>.writer.lock`` (``publish.writer_lock``), else "process"."""
    try:
        words = db.with_name(db.name + ".writer.lock").read_text("utf-8").split()
    except (OSError, UnicodeDecodeError):
        return "process"
    return " ".join(words[1:]) if len(words) >= 2 and words[0] == pid else "process"


def _is_generic(error: WarehouseError) -> bool:
    """Whether :func:`explain_failure` only rephrased an I/O error it could not place."""
    return type(error) is WarehouseError


def mentions_damage(text: str) -> bool:
    """Whether an error's text quotes DuckDB on a damaged file or a full disk."""
    lowered = text.lower()
    return any(word in lowered for word in (*_DAMAGE_WORDS, *_DISK_FULL))
