"""Write to a private copy, publish atomically.

DuckDB allows one writer process and, while it writes, no reader in another process.
So that `factorscope serve` keeps answering from the last complete data while
`ingest` / `learn` / `encode` run, writers never open the published file: they work
on ``<db>.wip`` (a copy of the published file, or a new file) and, when a stage
finishes, checkpoint it and ``os.replace`` it over the published path. Readers open
short-lived read-only connections on the published path and so see either the old
or the new file, never a half-written one.

A killed writer leaves ``<db>.wip`` behind; the next writer resumes in it, which is
what makes the stages resumable after ``kill -9``.

Tables the app writes into the published file itself (``user_labels``,
``lime_cache``) are copied from the published file into the staging copy just before
it is published, so a label saved while an encode ran is not lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from factorscope.errors import WarehouseError
from factorscope.warehouse.connection import connect

log = logging.getLogger(__name__)

APP_TABLES = ("user_labels", "lime_cache")
"""Tables written by the app into the published file; the published rows win."""


def wip_path(path: str | Path) -> Path:
    """Where writers stage their work for the database at ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".wip")


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
    path: str | Path, *, fresh: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A write connection on the staging copy, published over ``path`` on success.

    On any exception the staging copy is kept (for resume) and the published file is
    left exactly as it was. ``fresh=True`` stages an empty database instead of a copy
    of the published one (a leftover staging copy is discarded); the app's tables are
    still carried over.
    """
    path = Path(path)
    wip = wip_path(path)
    if fresh:
        discard_staging(path)
    elif not wip.exists() and path.exists():
        partial = wip.with_name(wip.name + ".copying")
        shutil.copyfile(path, partial)
        os.replace(partial, wip)
    con = connect(wip)
    try:
        yield con
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.close()
        raise
    try:
        carry_app_tables(con, path)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.close()
        raise
    con.execute("CHECKPOINT")
    con.close()
    os.replace(wip, path)
    log.info("published %s", path)


def discard_staging(path: str | Path) -> bool:
    """Drop an unfinished staging copy; returns whether there was one."""
    wip = wip_path(path)
    found = False
    for leftover in (wip, Path(str(wip) + ".wal")):
        if leftover.exists():
            leftover.unlink()
            found = True
    return found


def carry_app_tables(
    con: duckdb.DuckDBPyConnection, published: str | Path, *, attempts: int = 20
) -> int:
    """Replace the staging copy's app tables by the published file's; returns rows copied.

    The published file is attached read-only; while the app holds its short write
    lock (a label being saved) the attach is retried for a few seconds.
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
        present = {
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'published'"
            ).fetchall()
        }
        con.execute("BEGIN TRANSACTION")
        try:
            for table in APP_TABLES:
                if table not in present:
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
