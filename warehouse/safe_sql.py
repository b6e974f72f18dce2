"""The read-only SQL console (`factorscope sql`, the app's SQL page).

Only one statement is accepted, and only if DuckDB's own parser says it is a query:
SELECT / WITH / FROM / DESCRIBE / SHOW / SUMMARIZE / EXPLAIN / PIVOT / UNPIVOT. (DuckDB
parses a PIVOT whose columns it must first look up as a MULTI statement -- a temporary
enum type, then the query --; that is allowed only when the statement's own keyword is
PIVOT, and the read-only connection still refuses anything that writes or reads a file.)

**Each query runs in its own worker process** (:mod:`.console_worker`), on a read-only
connection with external access disabled and the configuration locked (no files read
or written, no extensions, no settings changed, no spilling to a temp folder). Why a
process: measured with DuckDB 2.0.1, its memory limit (``max_memory``) holds for what
its buffer manager tracks -- ``string_agg``, recursive CTEs, sorts, joins stop with an
"Out of Memory Error" -- but not for ``list_resize([]::INT[], 1e8)`` (56 s, 6.3 GB
under a 512 MB limit), ``repeat('x', 1.5e9)`` (20 s, 2.9 GB) or a list-valued
``range(3e8)`` (past 15 GB), and none of those checks DuckDB's interrupt, so a timer
could not stop them either. The worker instead runs under an OS limit
(``RLIMIT_DATA``, :func:`console_memory_mb` MB plus the result cap), where the same
queries fail at once with DuckDB's "Out of Memory Error", and it is killed
(``SIGKILL``) shortly after the timeout if DuckDB's interrupt did not end the query: its
memory goes back to the system with it. DuckDB's own ``max_memory`` in the worker is
60% of the limit, so the queries DuckDB tracks stop with its message first. The rows
come back as an Arrow IPC stream, capped at ``row_cap`` rows and ``byte_cap`` bytes
(batches stop being read there). The worker runs at a lower CPU priority (nice 10) on
half the cores, so the app's pages come first on a busy machine, and it imports only
``duckdb`` and ``pyarrow`` (start-up about 0.2 s).

At most :data:`~factorscope.limits.SQL_CONSOLE_SLOTS` queries run at once in a process
(the app's server: so the console adds at most that many times the memory limit to it,
and holds that many of its threads); another one is refused at once with one line
rather than waiting on a server thread.

**Refused names** (:data:`HIDDEN_NAMES`): external access being off, the only files
DuckDB still reads are the database itself and its WAL (and an attached warehouse's
Parquet folders), so ``read_blob`` / ``read_text`` have no use here but reading the raw
database file. These reveal the server's file system paths (the database's, the home
folder's) or settings in DuckDB 2.0.1, and are refused wherever they appear (as a
function, a table, a quoted name, a string naming a table, or ``SHOW <setting>``):
``duckdb_databases``, ``pragma_database_list`` (and ``PRAGMA database_list``, refused as
a PRAGMA), ``duckdb_settings``, ``current_setting``, ``pg_settings``,
``duckdb_profiling_settings``, the path-valued settings (``allowed_paths``,
``allowed_directories``, ``secret_directory``, ``home_directory``,
``extension_directory``, ``temp_directory``, ...), ``duckdb_extensions``,
``duckdb_secrets``, ``which_secret``, ``duckdb_temporary_files``,
``duckdb_external_file_cache``, DuckDB's logs (``duckdb_logs``, ``enable_logging``, ...)
and ``getenv`` (DuckDB's CLI has it). ``query``, ``query_table`` and
``json_execute_serialized_sql`` run SQL from a string, past these checks: refused as
calls. The worker also runs with ``HOME`` set to a path that does not exist, so an
error that names the home folder (a missing extension's) names that instead.
Not hidden: ``current_database()`` (the file's stem, not its folder), and an attached
warehouse's Parquet folders, which its ``codes`` view names (``duckdb_views()``,
``EXPLAIN``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from factorscope.errors import FactorscopeError, SqlRefusedError, WarehouseError
from factorscope.limits import (
    LIMITS,
    SQL_CONSOLE_SLOTS,
    SQL_MAX_MB,
    SQL_MAX_MEMORY_MB,
    SQL_MAX_ROWS,
    SQL_MEMORY_ENV,
    SQL_TIMEOUT_S,
)
from factorscope.warehouse.connection import READ_CONFIG, connect
from factorscope.warehouse.console_worker import EXIT_MEMORY
from factorscope.warehouse.parquet import attached_roots

ALLOWED = "SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PIVOT and UNPIVOT"

_FILE_READERS = frozenset({"read_blob", "read_text"})
_PATH_REVEALERS = frozenset(
    {
        "duckdb_databases",
        "pragma_database_list",
        "database_list",
        "duckdb_settings",
        "current_setting",
        "pg_settings",
        "duckdb_profiling_settings",
        "duckdb_extensions",
        "duckdb_extension_repositories",
        "duckdb_secrets",
        "which_secret",
        "duckdb_temporary_files",
        "duckdb_external_file_cache",
        "duckdb_logs",
        "duckdb_logs_parsed",
        "duckdb_log_contexts",
        "enable_logging",
        "disable_logging",
        "truncate_duckdb_logs",
        "getenv",
        # settings whose value is a path (SHOW <setting>)
        "allowed_paths",
        "allowed_directories",
        "secret_directory",
        "home_directory",
        "extension_directory",
        "extension_directories",
        "extension_repository_directory",
        "temp_directory",
        "log_query_path",
        "profile_output",
        "profiling_output",
        "file_search_path",
        "custom_extension_repository",
        "autoinstall_extension_repository",
    }
)
HIDDEN_NAMES = _FILE_READERS | _PATH_REVEALERS
"""Names the console refuses wherever they appear (see the module docstring)."""
SQL_FROM_TEXT = frozenset({"query", "query_table", "json_execute_serialized_sql"})
"""Table functions that run SQL given as a string: refused when called."""

_WORKER = "factorscope.warehouse.console_worker"
_KILL_GRACE_S = 1.5
"""Seconds past the timeout before the worker is killed: its start-up (about 0.2 s) and
DuckDB's own interrupt, which ends an interruptible query with a cleaner state."""
_DUCKDB_SHARE = 0.6
"""DuckDB's ``max_memory`` in the worker, as a share of the console's memory limit."""
_WORKER_NICE = 10
_SLOTS = threading.BoundedSemaphore(SQL_CONSOLE_SLOTS)
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
    _refuse_hidden_names(statement.query)
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


def _tokens(sql: str) -> list[tuple[str, Any]]:
    """(text, kind) of every token but comments ([] if it cannot be tokenized)."""
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error:
        return []
    ends = [t[0] for t in tokens[1:]] + [len(sql)]
    return [
        (sql[start:end].strip(), kind)
        for (start, kind), end in zip(tokens, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]


def _refuse_hidden_names(sql: str) -> None:
    """:class:`SqlRefusedError` if ``sql`` names one of :data:`HIDDEN_NAMES` or calls a
    :data:`SQL_FROM_TEXT` function.

    Names are compared as DuckDB resolves them: case-insensitively, with or without
    double quotes, whatever schema qualifies them; a string constant is refused if it
    contains a hidden name at all (``FROM 'duckdb_databases'`` reads the table function).
    """
    tokens = _tokens(sql)
    for i, (text, kind) in enumerate(tokens):
        if kind == duckdb.token_type.string_const:
            found = [name for name in sorted(HIDDEN_NAMES) if name in text.lower()]
            name = found[0] if found else None
        elif kind in (duckdb.token_type.identifier, duckdb.token_type.keyword):
            name = text.strip('"').lower()
            calls = i + 1 < len(tokens) and tokens[i + 1][0].startswith("(")
            if name in SQL_FROM_TEXT and calls:
                raise SqlRefusedError(
                    f"{name}() is disabled in the console: it runs SQL given as text, past "
                    "the console's checks; write the query itself"
                )
            if name not in HIDDEN_NAMES:
                name = None
        else:
            name = None
        if name in _FILE_READERS:
            raise SqlRefusedError(
                f"{name} is disabled in the console: the only file it could read is the "
                "database itself; query its tables instead"
            )
        if name is not None:
            raise SqlRefusedError(
                f"{name} is disabled in the console: it shows the server's file paths or settings"
            )


def _keywords(sql: str) -> list[str]:
    """The statement's keywords, upper-case, in order ([] if it cannot be tokenized)."""
    return [text.upper() for text, kind in _tokens(sql) if kind == duckdb.token_type.keyword]


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


def console_memory_mb() -> int:
    """The console's memory limit per query in MB: ``SQL_MAX_MEMORY_MB``, or
    ``$FACTORSCOPE_SQL_MEMORY_MB`` (checked against ``LIMITS``) on a bigger machine."""
    raw = os.environ.get(SQL_MEMORY_ENV)
    if raw is None or not raw.strip():
        return SQL_MAX_MEMORY_MB
    limit = LIMITS["sql_memory_mb"]
    return int(limit.check(raw.strip(), limit.flag))


@contextlib.contextmanager
def console_slot() -> Any:
    """Hold one of the :data:`~factorscope.limits.SQL_CONSOLE_SLOTS`, or refuse at once.

    Refusing rather than waiting keeps the server's threads for its pages: a query that
    waited would hold one of them as long as the queries ahead of it run.
    """
    if not _SLOTS.acquire(blocking=False):
        raise SqlRefusedError(
            f"the SQL console is busy with {SQL_CONSOLE_SLOTS} queries; try again in a moment"
        )
    try:
        yield
    finally:
        _SLOTS.release()


def run_safe_query(
    db_path: str | Path,
    sql: str,
    *,
    row_cap: int = SQL_MAX_ROWS,
    timeout_s: float = SQL_TIMEOUT_S,
    byte_cap: int = SQL_MAX_MB * 1_000_000,
) -> tuple[pl.DataFrame, bool]:
    """Run one read-only query; returns (the rows within both caps, whether more existed).

    At most ``row_cap`` rows and about ``byte_cap`` bytes (Arrow size) are read. The
    query runs in a worker process under the console's memory limit and is killed at
    the timeout (see the module docstring). Raises :class:`SqlRefusedError` (one line)
    for anything but one read-only query, a syntax error, an error while running (its
    first line), a query stopped by the timeout or the memory limit, a console already
    running :data:`~factorscope.limits.SQL_CONSOLE_SLOTS` queries, or a first row
    already larger than ``byte_cap``; :class:`WarehouseError` for a missing database.
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
    memory_mb = console_memory_mb()
    # Opened here and closed at once: connection.connect's checks of the file (a DuckDB
    # file, factorscope's, not newer than this code) give the same errors as every reader.
    try:
        connect(path, read_only=True).close()
    except duckdb.Error as e:
        raise WarehouseError(f"cannot open database {path}: {_first_line(e)}") from e
    threads = max(1, (os.cpu_count() or 2) // 2)
    request = {
        "db": os.path.abspath(path),
        "roots": attached_roots(path),
        "sql": query,
        "row_cap": row_cap,
        "byte_cap": byte_cap,
        "timeout_s": float(timeout_s),
        "memory_bytes": memory_mb * 1_000_000 + byte_cap,
        "nice": _WORKER_NICE,
        "config": {
            **READ_CONFIG,
            "max_memory": f"{int(memory_mb * _DUCKDB_SHARE)}MB",
            "threads": threads,
        },
    }
    with console_slot():
        header, payload = _run_worker(request, timeout_s, memory_mb)
    if not header.get("ok"):
        raise _refusal(header, timeout_s, memory_mb)
    try:
        table = pa.ipc.open_stream(payload).read_all()
    except pa.ArrowInvalid as e:
        raise SqlRefusedError(f"query failed: its rows came back incomplete ({e})") from e
    if header.get("over_bytes") and table.num_rows == 0:
        raise SqlRefusedError(
            f"the result's first row is larger than the {byte_cap / 1e6:g} MB cap: select "
            "fewer or shorter columns (e.g. left(text, 200)) or raise the cap (sql --max-mb)"
        )
    truncated = bool(header.get("over_bytes")) or table.num_rows > row_cap
    return _to_polars(table.slice(0, row_cap)), truncated


def _memory_message(memory_mb: int) -> str:
    return (
        f"query stopped: it needed more than {memory_mb:,} MB of memory, the console's "
        "limit per query (aggregate, filter or LIMIT what it builds)"
    )


def _timeout_message(timeout_s: float) -> str:
    return f"query cancelled: it ran longer than the {timeout_s:g} s limit"


def _worker_env() -> dict[str, str]:
    """The worker's environment: nothing of the server's but what Python needs.

    ``HOME`` points nowhere, so DuckDB's home-derived paths (secrets, extensions) and
    its errors name no real folder.
    """
    env = {"HOME": "/nonexistent", "PATH": os.defpath, "LC_ALL": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _run_worker(
    request: dict[str, Any], timeout_s: float, memory_mb: int
) -> tuple[dict[str, Any], bytes]:
    """Run ``request`` in a worker process: (its header, the Arrow IPC bytes after it).

    The worker is killed ``_KILL_GRACE_S`` after the timeout, and whenever this call
    ends early (an exception, an interrupt): no worker outlives its query.
    """
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-s", "-m", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=_worker_env(),
        )
    except OSError as e:
        raise WarehouseError(f"cannot start the SQL console's worker: {e}") from e
    try:
        try:
            out, err = proc.communicate(
                json.dumps(request).encode("utf-8"), timeout=timeout_s + _KILL_GRACE_S
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SqlRefusedError(_timeout_message(timeout_s)) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    line, _, payload = out.partition(b"\n")
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if isinstance(header, dict) and (not header.get("ok") or proc.returncode == 0):
        return header, payload
    return _died(proc.returncode, err, memory_mb), b""


def _died(code: int, stderr: bytes, memory_mb: int) -> dict[str, Any]:
    """The header for a worker that ended without a complete answer."""
    text = stderr.decode("utf-8", "replace")
    if code == EXIT_MEMORY or "MemoryError" in text or "bad_alloc" in text:
        return {"ok": False, "error": "memory", "message": "worker out of memory"}
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return {"ok": False, "error": "died", "message": name}
    last = text.strip().splitlines()[-1] if text.strip() else f"exit code {code}"
    return {"ok": False, "error": "failed", "message": f"the console's worker failed: {last}"}


def _refusal(header: dict[str, Any], timeout_s: float, memory_mb: int) -> FactorscopeError:
    """The one-line error for a worker's failed answer."""
    kind, message = header.get("error"), str(header.get("message", ""))
    if kind == "memory":
        return SqlRefusedError(_memory_message(memory_mb))
    if kind == "interrupted":
        return SqlRefusedError(_timeout_message(timeout_s))
    if kind == "open":
        return WarehouseError(f"cannot open database: {message}")
    if kind == "died":
        return SqlRefusedError(
            f"query stopped: its worker died of {message}, most likely past the console's "
            f"memory limit of {memory_mb:,} MB per query"
        )
    if "read-only mode" in message:
        return SqlRefusedError(
            "refused: the console is read-only and this query would write (a data-modifying CTE?)"
        )
    return SqlRefusedError(f"query failed: {message}")


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
