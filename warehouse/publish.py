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
(DuckDB refuses that: "WAL does not match database file"); the set-aside log is removed
once the new file has the name (it is put back if the publish was killed before that).

One writer at a time: a stage holds ``fcntl.flock`` on ``<db>.writer.lock`` (its pid and
command written in it) from the staging copy to the publish (:func:`writer_lock`); a
second writer fails at once with one line naming the first, and ``status`` tells
"a writer is working" from that lock. The app's label writes take only ``<db>.lock``,
so they are not held up by a running stage. A staging copy is verified (every block
read, so DuckDB checks its checksum) when it is made and when a stage resumes in it, so
no stage writes into, or publishes again, a damaged file; a full disk removes the
staging files that hold the space (the partial copy, the staged codes) and says so in
one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from factorscope.crashpoints import crashpoint, disk_fault
from factorscope.errors import DatabaseFileError, DiskFullError, WarehouseError, WriterBusyError
from factorscope.warehouse.connection import (
    connect,
    explain_failure,
    file_problem,
    is_disk_full,
    migrations,
    schema_version,
    unusable,
    verify_file,
)

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


def writer_lock_path(path: str | Path) -> Path:
    """The lock file a stage holds while it writes the staging copy of ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".writer.lock")


WRITER_NAME = "writer"
"""How this process names itself in ``<db>.writer.lock`` (the CLI sets the command)."""

_HELD: dict[str, list[int]] = {}  # real path of a database -> [lock fd, depth]
_HELD_LOCK = threading.Lock()


def _owner(fd: int) -> str:
    """The holder as written in its writer lock file, e.g. ``encode (pid 123)``."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if len(text) >= 2 and text[0].isdigit():
        return f"{' '.join(text[1:])} (pid {text[0]})"
    return "writer"


@contextlib.contextmanager
def writer_lock(path: str | Path) -> Iterator[None]:
    """Hold ``<db>.writer.lock`` while this process writes the database at ``path``.

    A second writer (another process) fails at once with :class:`WriterBusyError`
    naming the holder; the same process may enter again (a stage inside a stage). The
    kernel drops the lock when its holder dies, even by ``kill -9``.
    """
    key = os.path.realpath(path)
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield
        finally:
            with _HELD_LOCK:
                held[1] -= 1
        return
    fd = os.open(writer_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _owner(fd)
        # The holder writes its name just after taking the lock: give it a moment.
        deadline = time.monotonic() + 1.0
        while owner == "writer" and time.monotonic() < deadline:
            time.sleep(0.02)
            owner = _owner(fd)
        os.close(fd)
        raise WriterBusyError(
            f"another {owner} is working on {path}: wait for it to finish (or stop it), "
            "then run the command again"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        with contextlib.suppress(OSError):  # a full disk may refuse even these bytes
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {WRITER_NAME}\n".encode(), 0)
        with _HELD_LOCK:
            _HELD[key] = [fd, 1]
        yield
    finally:
        with _HELD_LOCK:
            _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def writer_busy(path: str | Path) -> str | None:
    """Who holds the writer lock of ``path`` ("encode (pid 123)"), or None if no one."""
    with _HELD_LOCK:
        if os.path.realpath(path) in _HELD:
            return f"{WRITER_NAME} (pid {os.getpid()})"
    try:
        fd = os.open(writer_lock_path(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _owner(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


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
    with writer_lock(path):
        try:
            if fresh:
                discard_staging(path)
            elif not wip.exists() and path.exists():
                _copy_for_staging(path, wip)
            elif wip.exists():
                verify_file(wip)  # resumed: never write into a damaged staging copy
            con = connect(wip)
        except Exception as e:
            _raise_explained(e, path)
            raise
        try:
            yield con
        except BaseException as e:
            with contextlib.suppress(duckdb.Error):
                con.close()
            _raise_explained(e, path)
            raise
        try:
            _publish(con, path, carry_if)
        except Exception as e:
            _raise_explained(e, path)
            raise


def _copy_for_staging(path: Path, wip: Path) -> None:
    """Copy the published file to ``<db>.wip`` (through ``.wip.copying``), verified.

    Every block of the copy is read once (:func:`verify_file`), so a damaged published
    file is refused before a stage writes into its copy and publishes it again. A copy
    that fails (a full disk, a damaged file) is removed: it holds nothing to resume.
    """
    partial = wip.with_name(wip.name + ".copying")
    try:
        shutil.copyfile(path, partial)
        disk_fault("publish.copy", partial)
        verify_file(partial)
    except BaseException as e:
        copied = partial.stat().st_size if partial.exists() else 0
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        if isinstance(e, Exception) and is_disk_full(e):
            folder = path.resolve().parent
            free = shutil.disk_usage(folder).free
            raise DiskFullError(
                f"disk full at {folder}: the staging copy of {path} needs "
                f"{_mib(path.stat().st_size)}, {_mib(free)} free; removed the partial copy "
                f"{partial.name} ({_mib(copied)}); {path} is intact: free some space, then "
                "run the same command again"
            ) from e
        raise
    # A log left by an earlier staging copy must not pair with this new one.
    with contextlib.suppress(FileNotFoundError):
        wal_path(wip).unlink()
    os.replace(partial, wip)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _raise_explained(error: Exception | BaseException, path: Path) -> None:
    """Re-raise a failure of a stage's staging work as one line, if it is not a bug.

    A full disk: the staging files that hold the space and cannot be resumed from
    cheaply (the partial copy; the staged codes, whose chunks are then encoded again)
    are removed, and the message says what went and that ``path`` is intact. A damaged
    file (found by a failed checksum): the one that holds the block is named.
    Anything else returns, for the caller to re-raise as it is.
    """
    if not isinstance(error, Exception):
        return  # KeyboardInterrupt, SystemExit: the CLI says "interrupted"
    wip = wip_path(path)
    if is_disk_full(error) and not isinstance(error, DiskFullError):
        explained = explain_failure(error, candidates=[wip, path])
        removed = []
        partial = wip.with_name(wip.name + ".copying")
        if partial.exists():
            removed.append(f"the partial copy {partial.name} ({_mib(partial.stat().st_size)})")
            partial.unlink()
        codes = codes_staging_path(path)
        if codes.exists():
            size = _tree_bytes(codes)
            shutil.rmtree(codes, ignore_errors=True)
            removed.append(
                f"the staged codes {codes.name} ({_mib(size)}: chunks whose codes were only "
                "there are encoded again)"
            )
        freed = f"removed {' and '.join(removed)}; " if removed else ""
        raise DiskFullError(
            f"{explained}; {freed}{path} is intact: free some space, then run the same "
            "command again to resume"
        ) from error
    explained = explain_failure(error, candidates=[wip, path])
    if explained is not None and explained is not error:
        raise explained from error


def _publish(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    carry_if: Callable[[duckdb.DuckDBPyConnection], bool] | None,
) -> None:
    """Carry the app's tables, checkpoint, and replace ``path`` by the staging copy."""
    wip = wip_path(path)
    try:
        disk_fault("publish.checkpoint", wip)
        con.execute("CHECKPOINT")  # the long part, before the app's writers are held up
        with publish_lock(path):
            _restore_set_aside(path)
            carry_app_tables(con, path, carry_if=carry_if)
            crashpoint("publish.carried")
            con.execute("CHECKPOINT")
            con.close()
            if wal_path(wip).exists():
                raise WarehouseError(f"{wip} still has a write-ahead log after its checkpoint")
            stale = wal_path(path)
            if stale.exists():
                # Left by a killed write of the app; the carry above read its rows.
                os.replace(stale, _set_aside_path(path))
                log.warning("set aside the write-ahead log %s of the replaced file", stale)
            crashpoint("publish.replace")
            os.replace(wip, path)
            _drop_set_aside(path)
        shutil.rmtree(codes_staging_path(path), ignore_errors=True)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.close()
        raise
    log.info("published %s", path)


def _set_aside_path(path: Path) -> Path:
    """Where the publish of ``path`` sets aside the published file's stale log: named
    after that file's inode, so a later publish can tell whether the file it belonged
    to still has the name (the publish was killed before its replace)."""
    return path.with_name(f"{path.name}.wal.replaced-{os.stat(path).st_ino}")


def _restore_set_aside(path: Path) -> None:
    """Put back a log set aside by a publish killed before it replaced ``path``.

    That log still belongs to the published file (same inode), and its rows (a label
    saved by a killed app write) would otherwise be missing from the carry.
    """
    if not path.exists() or wal_path(path).exists():
        return
    mine = _set_aside_path(path)
    if mine.exists():
        os.replace(mine, wal_path(path))
        log.warning("put back the write-ahead log %s set aside by an interrupted publish", mine)


def _drop_set_aside(path: Path) -> None:
    """Remove every log set aside for ``path`` (``<db>.wal.replaced*``): the file they
    belonged to no longer has the name, and its rows were carried into the new one."""
    for aside in glob.glob(glob.escape(str(path)) + ".wal.replaced*"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


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
    problem = file_problem(published)
    if problem is not None:  # never attached: DuckDB would try a SQLite extension
        if carry_if is None:
            raise unusable(published, problem)
        log.warning("%s %s: no labels or LIME results are kept from it", published, problem)
        return 0
    for attempt in range(attempts):
        try:
            con.execute("ATTACH ? AS published (READ_ONLY)", [str(published)])
            break
        except duckdb.Error as e:
            explained = explain_failure(e, candidates=[published])
            if isinstance(explained, DatabaseFileError) and carry_if is not None:
                # Replaced by another run's file (an overwrite): nothing of it is kept.
                log.warning("%s: no labels or LIME results are kept from it", explained)
                return 0
            if attempt == attempts - 1 or "lock" not in str(e).lower():
                if isinstance(explained, DatabaseFileError):
                    raise explained from e
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
    except DatabaseFileError:
        raise  # damaged, foreign or newer: no reader may use it either
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
