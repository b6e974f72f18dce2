"""Write to a private copy, publish atomically.

DuckDB allows one writer process and, while it writes, no reader in another process.
So that `factorscope serve` keeps answering from the last complete data while
`ingest` / `learn` / `encode` run, writers never open the published file: they work
on ``<db>.wip`` (a copy of the published file, or a new file) and, when a stage
finishes, checkpoint it and ``os.replace`` it over the published path. Readers open
short-lived read-only connections on the published path and so see either the old
or the new file, never a half-written one.

A killed writer leaves ``<db>.wip`` behind; the next writer resumes in it, which is
what makes the stages resumable after ``kill -9``. A stage is done only once its
results are *published*: each stage decides "nothing to do" from the published file,
and finishes and publishes a staging copy it finds (see docs/CONTRACTS.md, "Crash
safety").

Tables the app writes into the published file itself (``user_labels``,
``lime_cache``) are copied from the published file into the staging copy just before
it is published. The app's writes and that carry-then-replace take the same lock
(``fcntl.flock`` on ``<db>.lock``, :func:`publish_lock`), so a label is written
either before the carry (and carried) or after the replace (into the new file),
never into the old file after its tables were carried.

A DuckDB file's write-ahead log lives next to it as ``<file>.wal``. The publisher
checkpoints the staging copy (its log is folded in and removed), and sets aside a
``<db>.wal`` left by a killed app write (its rows were read by the carry) before the
new file takes the name, so no published file is ever paired with a foreign log
(DuckDB refuses that: "WAL does not match database file").
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from factorscope.crashpoints import crashpoint
from factorscope.errors import WarehouseError
from factorscope.warehouse.connection import connect, migrations, schema_version

log = logging.getLogger(__name__)

APP_TABLES = ("user_labels", "lime_cache")
"""Tables written by the app into the published file; the published rows win."""


def wip_path(path: str | Path) -> Path:
    """Where writers stage their work for the database at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".wip")


def codes_staging_path(path: str | Path) -> Path:
    """Where encode stages its codes (one Parquet file per chunk) for the database at ``path``.

    The codes go into the staging copy only once, sorted, when the encode finishes, so the
    published file has no free blocks left by an unsorted copy. The folder belongs to the
    staging copy: it goes when that copy is published or discarded.
    """
    wip = wip_path(path)
    return wip.with_name(wip.name + ".codes")


def wal_path(path: str | Path) -> Path:
    """DuckDB's write-ahead log of the database file at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".wal")


def lock_path(path: str | Path) -> Path:
    """The lock file shared by the publisher and the app's writers of ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def publish_lock(path: str | Path, *, timeout_s: float = 60.0) -> Iterator[None]:
    """Hold the exclusive lock on ``<db>.lock`` (publishing, or the app writing ``<db>``).

    ``flock`` locks belong to the open file, so two threads of one process exclude each
    other too; the kernel drops the lock when its holder dies, even by ``kill -9``.
    """
    lock = lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseError(
                        f"database {path} is being published by another process; "
                        "try again in a moment"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_db_path_writable(db_path: Path) -> None:
    """Fail early, before any work, when the database cannot be written."""
    parent = db_path.resolve().parent
    if not parent.is_dir():
        raise WarehouseError(f"cannot write database {db_path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise WarehouseError(f"cannot write database {db_path}: folder {parent} is not writable")
    if db_path.exists() and not os.access(db_path, os.W_OK):
        raise WarehouseError(f"cannot write database {db_path}: file is read-only")


def newest_copy(path: str | Path) -> Path:
    """Where the newest data is: an unfinished staging copy if a writer left one, else ``path``.

    Stages read their inputs from here so that a resumed run sees the work of the
    interrupted one, not only what was last published.
    """
    path = Path(path)
    wip = wip_path(path)
    return wip if wip.exists() else path


@contextlib.contextmanager
def staged_database(
    path: str | Path,
    *,
    fresh: bool = False,
    carry_if: Callable[[duckdb.DuckDBPyConnection], bool] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A write connection on the staging copy, published over ``path`` on success.

    On any exception the staging copy is kept (for resume) and the published file is
    left exactly as it was. ``fresh=True`` stages an empty database instead of a copy
    of the published one (a leftover staging copy is discarded); the app's tables are
    still carried over, unless ``carry_if`` (called with the staging connection and
    the published file attached as ``published``) says the published file is not
    of the same run.
    """
    path = Path(path)
    wip = wip_path(path)
    if fresh:
        discard_staging(path)
    elif not wip.exists() and path.exists():
        partial = wip.with_name(wip.name + ".copying")
        shutil.copyfile(path, partial)
        # A log left by an earlier staging copy must not pair with this new one.
        with contextlib.suppress(FileNotFoundError):
            wal_path(wip).unlink()
        os.replace(partial, wip)
    con = connect(wip)
    try:
        yield con
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.close()
        raise
    _publish(con, path, carry_if)


def _publish(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    carry_if: Callable[[duckdb.DuckDBPyConnection], bool] | None,
) -> None:
    """Carry the app's tables, checkpoint, and replace ``path`` by the staging copy."""
    wip = wip_path(path)
    try:
        con.execute("CHECKPOINT")  # the long part, before the app's writers are held up
        with publish_lock(path):
            carry_app_tables(con, path, carry_if=carry_if)
            crashpoint("publish.carried")
            con.execute("CHECKPOINT")
            con.close()
            if wal_path(wip).exists():
                raise WarehouseError(f"{wip} still has a write-ahead log after its checkpoint")
            stale = wal_path(path)
            if stale.exists():
                # Left by a killed write of the app; the carry above read its rows.
                os.replace(stale, stale.with_name(stale.name + ".replaced"))
                log.warning("set aside the write-ahead log %s of the replaced file", stale)
            crashpoint("publish.replace")
            os.replace(wip, path)
        shutil.rmtree(codes_staging_path(path), ignore_errors=True)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.close()
        raise
    log.info("published %s", path)


def discard_staging(path: str | Path) -> bool:
    """Drop an unfinished staging copy; returns whether there was one.

    The log goes first: a staging copy without its log is an older consistent state,
    a log without its file would pair with the next staging copy.
    """
    wip = wip_path(path)
    found = False
    for leftover in (wal_path(wip), wip):
        if leftover.exists():
            leftover.unlink()
            found = True
    shutil.rmtree(codes_staging_path(path), ignore_errors=True)
    return found


def _same_key(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the published ``table`` has the staging copy's key columns.

    A published file of schema version 2 or older (labels keyed by factor alone) is
    migrated in its staging copy, which then already holds its labels under their
    dictionary: its rows are not carried over them.
    """
    has_key = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = 'published' "
        "AND table_name = ? AND column_name = 'dictionary_id'",
        [table],
    ).fetchall()[0][0]
    return table != "user_labels" or bool(has_key)


def carry_app_tables(
    con: duckdb.DuckDBPyConnection,
    published: str | Path,
    *,
    attempts: int = 20,
    carry_if: Callable[[duckdb.DuckDBPyConnection], bool] | None = None,
) -> int:
    """Replace the staging copy's app tables by the published file's; returns rows copied.

    The published file is attached read-only; while another process holds it (a label
    being saved by an app that does not take :func:`publish_lock`) the attach is
    retried for a few seconds. ``carry_if``: see :func:`staged_database`.
    """
    published = Path(published)
    if not published.exists():
        return 0
    for attempt in range(attempts):
        try:
            con.execute("ATTACH ? AS published (READ_ONLY)", [str(published)])
            break
        except duckdb.Error as e:
            if attempt == attempts - 1 or "lock" not in str(e).lower():
                raise WarehouseError(f"cannot read the app's tables from {published}: {e}") from e
            time.sleep(0.1 * (attempt + 1))
    copied = 0
    try:
        if carry_if is not None and not carry_if(con):
            log.warning("%s holds another run: its labels and LIME results are not kept", published)
            return 0
        present = {
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'published'"
            ).fetchall()
        }
        con.execute("BEGIN TRANSACTION")
        try:
            for table in APP_TABLES:
                if table not in present or not _same_key(con, table):
                    continue
                # Table names come from APP_TABLES above, never from a caller.
                con.execute(f"DELETE FROM main.{table}")
                con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM published.{table}")
                copied += con.execute(f"SELECT count(*) FROM main.{table}").fetchall()[0][0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.execute("DETACH published")
    return copied


def upgrade_schema(path: str | Path) -> tuple[int, int] | None:
    """Bring a published file made by an older factorscope to the current schema, once.

    Readers open files read-only and so cannot migrate them; a reader command (serve,
    sql, export, report) calls this first. The migration runs on a staging copy and is
    published like any stage's work, so a kill leaves the old file as it was. Returns
    (old version, new version), or None when the file is current (or missing, or
    not a factorscope file: the caller's own checks report those).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        con = connect(path, read_only=True)
    except WarehouseError:
        return None
    try:
        current = schema_version(con)
    except duckdb.Error:
        return None
    finally:
        con.close()
    latest = max(version for version, _name, _sql in migrations())
    if current < 1 or current >= latest:
        return None
    with staged_database(path):
        pass  # a write connection migrates the staging copy; leaving publishes it
    return current, latest
