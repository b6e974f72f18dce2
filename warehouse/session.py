"""Session settings of a writer connection (its own module: the connection policy and
the summary refresh both use it, and neither may import the other's module for it)."""

from __future__ import annotations

import sys

import duckdb


def writer_session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Session settings of a writer connection or cursor (DuckDB keeps them per session).

    DuckDB's own bar for long statements (the sort of a large encode's codes) helps in a
    terminal and floods a log file with a line per percent: shown on a terminal only.
    """
    con.execute(f"SET enable_progress_bar = {'true' if sys.stderr.isatty() else 'false'}")
    return con
