"""The read-only SQL console (`factorscope sql`, the app's SQL page).

A query runs on its own read-only connection with external access disabled and the
configuration locked (no files read or written, no extensions, no settings changed,
no spilling to a temp folder). Only one statement is accepted, and only if DuckDB's
own parser says it is a query: SELECT / WITH / FROM / DESCRIBE / SHOW / SUMMARIZE /
EXPLAIN / PIVOT / UNPIVOT. (DuckDB parses a PIVOT whose columns it must first look up
as a MULTI statement -- a temporary enum type, then the query --; that is allowed only
when the statement's own keyword is PIVOT, and the read-only connection still refuses
anything that writes or reads a file.) Results are capped at ``row_cap`` rows and
``byte_cap`` bytes (batches stop being read there), and a timer interrupts a query that
runs longer than ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from factorscope.errors import SqlRefusedError, WarehouseError
from factorscope.limits import SQL_MAX_MB, SQL_MAX_ROWS, SQL_TIMEOUT_S
from factorscope.warehouse.connection import connect

ALLOWED = "SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PIVOT and UNPIVOT"
_PIVOT_WORDS = {"PIVOT", "UNPIVOT", "PIVOT_WIDER", "PIVOT_LONGER"}
_QUERY_WORDS = {"SELECT", "WITH", "FROM"}

_ALLOWED_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALYZE\s+)?", re.IGNORECASE)


# Example queries offered by the app's SQL console (each is run by the tests).
CONSOLE_EXAMPLES: dict[str, str] = {
    "Tables and views": (
        "SELECT table_name, table_type\nFROM information_schema.tables\nORDER BY table_name"
    ),
    "Run": "SELECT model, corpus, n_layers, hidden_size, n_sentences, n_tokens\nFROM runs",
    "Top tokens of factor 0 at layer 0": (
        "SELECT c.alpha, t.word, s.text\n"
        "FROM codes c\n"
        "JOIN tokens t USING (token_id)\n"
        "JOIN sentences s USING (sentence_idx)\n"
        "WHERE c.dictionary_id = (SELECT dictionary_id FROM active_dictionary)\n"
        "  AND c.layer = 0 AND c.factor = 0\n"
        "ORDER BY c.alpha DESC\n"
        "LIMIT 20"
    ),
    "Most active factors per layer": (
        "SELECT layer, factor, count(*) AS hits, avg(alpha) AS mean_alpha\n"
        "FROM codes\n"
        "WHERE dictionary_id = (SELECT dictionary_id FROM active_dictionary)\n"
        "GROUP BY layer, factor\n"
        "QUALIFY row_number() OVER (PARTITION BY layer ORDER BY count(*) DESC) <= 5\n"
        "ORDER BY layer, hits DESC"
    ),
    "Words that activate factor 0 most": (
        "SELECT t.word, count(*) AS hits, max(c.alpha) AS max_alpha\n"
        "FROM codes c JOIN tokens t USING (token_id)\n"
        "WHERE c.dictionary_id = (SELECT dictionary_id FROM active_dictionary) AND c.factor = 0\n"
        "GROUP BY t.word\n"
        "ORDER BY hits DESC\n"
        "LIMIT 20"
    ),
    "Layer quality": "SELECT * FROM layer_quality ORDER BY dictionary_id, layer",
    "Sentences containing 'left'": (
        "SELECT sentence_idx, text\nFROM sentences\nWHERE text ILIKE '%left%'\nLIMIT 20"
    ),
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_query(sql: str) -> str:
    """The one statement of ``sql`` if the console may run it, else :class:`SqlRefusedError`."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefusedError("no SQL given: type a query such as SELECT * FROM factor_levels")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise SqlRefusedError(f"SQL syntax error: {_first_line(e)}") from e
    if not statements:
        raise SqlRefusedError("no SQL statement found (only comments?)")
    if len(statements) > 1:
        raise SqlRefusedError(f"only one statement at a time is allowed, found {len(statements)}")
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.MULTI and _is_pivot(statement.query):
        return statement.query
    if kind not in _ALLOWED_TYPES:
        name = _first_keyword(statement.query) if kind == duckdb.StatementType.MULTI else kind.name
        raise SqlRefusedError(
            f"{name} statements are not allowed: the console is read-only and runs "
            f"only {ALLOWED} queries"
        )
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs what it explains: the inner statement must be a query too.
        match = _EXPLAIN.match(statement.query)
        if match is None:
            raise SqlRefusedError("EXPLAIN must start the statement (no comment before it)")
        inner = statement.query[match.end() :]
        try:
            inner_statements = duckdb.extract_statements(inner)
        except duckdb.Error as e:
            raise SqlRefusedError(f"SQL syntax error: {_first_line(e)}") from e
        if len(inner_statements) != 1 or inner_statements[0].type != duckdb.StatementType.SELECT:
            raise SqlRefusedError(f"EXPLAIN is allowed only on {ALLOWED} queries")
    return statement.query


def _keywords(sql: str) -> list[str]:
    """The statement's keywords, upper-case, in order ([] if it cannot be tokenized)."""
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error:
        return []
    ends = [t[0] for t in tokens[1:]] + [len(sql)]
    return [
        sql[start:end].strip().upper()
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind == duckdb.token_type.keyword
    ]


def _first_keyword(sql: str) -> str:
    words = _keywords(sql)
    return words[0] if words else "MULTI"


def _is_pivot(sql: str) -> bool:
    """Whether a MULTI statement is a query with a PIVOT (DuckDB splits only PIVOTs so).

    Its first keyword must start a query (SELECT / WITH / FROM / PIVOT / UNPIVOT), so
    ``CREATE TABLE ... AS PIVOT ...`` is refused here, before it reaches the connection.
    """
    words = _keywords(sql)
    return (
        bool(words)
        and words[0] in _QUERY_WORDS | _PIVOT_WORDS
        and any(word in _PIVOT_WORDS for word in words)
    )


def _rows_within(batch: pa.RecordBatch, budget: int) -> int:
    """How many leading rows of ``batch`` fit in ``budget`` bytes (binary search)."""
    low, high = 0, batch.num_rows
    while low < high:
        mid = (low + high + 1) // 2
        if batch.slice(0, mid).nbytes <= budget:
            low = mid
        else:
            high = mid - 1
    return low


# Over 80 lines: the guards of the read-only console (parse, refuse, cap, time out) kept in one
# place to audit.
def run_safe_query(
    db_path: str | Path,
    sql: str,
    *,
    row_cap: int = SQL_MAX_ROWS,
    timeout_s: float = SQL_TIMEOUT_S,
    byte_cap: int = SQL_MAX_MB * 1_000_000,
) -> tuple[pl.DataFrame, bool]:
    """Run one read-only query; returns (the rows within both caps, whether more existed).

    At most ``row_cap`` rows and about ``byte_cap`` bytes (Arrow size) are read.
    Raises :class:`SqlRefusedError` for anything but one read-only query, a syntax
    error, an error while running (its first line), a query cancelled by the timeout,
    or a first row already larger than ``byte_cap``.
    """
    if isinstance(row_cap, bool) or not isinstance(row_cap, int) or row_cap < 1:
        raise SqlRefusedError(f"row_cap must be a positive integer, got {row_cap!r}")
    if isinstance(byte_cap, bool) or not isinstance(byte_cap, int) or byte_cap < 1:
        raise SqlRefusedError(f"byte_cap must be a positive integer, got {byte_cap!r}")
    if not timeout_s > 0:
        raise SqlRefusedError(f"timeout_s must be positive, got {timeout_s!r}")
    query = check_query(sql)
    path = Path(db_path)
    if not path.exists():
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    try:
        con = connect(path, read_only=True)
    except duckdb.Error as e:
        raise WarehouseError(f"cannot open database {path}: {_first_line(e)}") from e
    fired = threading.Event()

    def _cancel() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, _cancel)
    timer.daemon = True
    try:
        timer.start()
        try:
            reader = con.sql(query).to_arrow_reader(min(row_cap + 1, 10_000))
            batches: list[pa.RecordBatch] = []
            n = 0
            size = 0
            over_bytes = False
            for batch in reader:
                if size + batch.nbytes > byte_cap:
                    keep = _rows_within(batch, byte_cap - size)
                    batches.append(batch.slice(0, keep))
                    n += keep
                    over_bytes = True
                    break
                batches.append(batch)
                n += batch.num_rows
                size += batch.nbytes
                if n > row_cap:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.Error as e:
            if fired.is_set():
                raise SqlRefusedError(
                    f"query cancelled: it ran longer than the {timeout_s:g} s limit"
                ) from e
            if "read-only mode" in str(e):
                raise SqlRefusedError(
                    "refused: the console is read-only and this query would write "
                    "(a data-modifying CTE?)"
                ) from e
            raise SqlRefusedError(f"query failed: {_first_line(e)}") from e
    finally:
        timer.cancel()
        with contextlib.suppress(duckdb.Error):
            con.close()
    if over_bytes and table.num_rows == 0:
        raise SqlRefusedError(
            f"the result's first row is larger than the {byte_cap / 1e6:g} MB cap: select "
            "fewer or shorter columns (e.g. left(text, 200)) or raise the cap (sql --max-mb)"
        )
    truncated = over_bytes or table.num_rows > row_cap
    table = table.slice(0, row_cap)
    return _to_polars(table), truncated


def _to_polars(table: pa.Table) -> pl.DataFrame:
    """A polars frame with unique column names (SELECT 1, 1 gives two columns named 1)."""
    seen: dict[str, int] = {}
    names = []
    for name in table.column_names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}_{count + 1}")
    table = table.rename_columns(names)
    try:
        return pl.from_arrow(table)
    except Exception:  # an Arrow type polars lacks: show it as text
        return pl.from_arrow(
            pa.table(
                {
                    n: pa.array([str(v) for v in c.to_pylist()])
                    for n, c in zip(names, table.columns, strict=True)
                }
            )
        )
