"""The SQL console refuses every way out of read-only querying, and changes nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from pathlib import Path

import pytest

from factorscope.errors import SqlRefusedError
from factorscope.warehouse.safe_sql import CONSOLE_EXAMPLES, run_safe_query
from factorscope.warehouse.synthetic import build_synthetic_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("safe") / "s.duckdb"
    build_synthetic_db(path, n_sentences=40, n_factors=16, hidden_size=8)
    return path


def _state(folder):
    return {
        p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _escapes(out: str) -> list[tuple[str, str]]:
    """(sql, a word the refusal message must contain)."""
    return [
        (f"COPY codes TO '{out}/x.csv'", "COPY"),
        (f"COPY (SELECT 1) TO '{out}/y.parquet' (FORMAT parquet)", "COPY"),
        (f"EXPORT DATABASE '{out}/dump'", "not allowed"),
        (f"ATTACH '{out}/other.duckdb' AS other", "ATTACH"),
        ("INSTALL httpfs", "not allowed"),
        ("LOAD httpfs", "not allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
        ("SELECT * FROM read_text('/etc/hostname')", "disabled"),
        ("SELECT * FROM read_parquet('/tmp/*.parquet')", "disabled"),
        ("SELECT * FROM glob('/etc/*')", "disabled"),
        ("SELECT * FROM '/etc/passwd'", "failed"),
        ("SET enable_external_access = true", "SET"),
        ("RESET enable_external_access", "not allowed"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("INSERT INTO user_labels VALUES (1, 'x', now())", "INSERT"),
        ("UPDATE codes SET alpha = 0", "UPDATE"),
        ("DELETE FROM codes", "DELETE"),
        ("DROP TABLE codes", "DROP"),
        ("ALTER TABLE codes RENAME TO c", "ALTER"),
        ("SELECT 1; DROP TABLE codes", "one statement"),
        ("SELECT 1; /* hidden */ DELETE FROM codes", "one statement"),
        ("SELECT 1 /* ; */ ; -- x\n UPDATE codes SET alpha = 1", "one statement"),
        ("CALL pragma_version()", "CALL"),
        ("WITH x AS (DELETE FROM codes RETURNING *) SELECT * FROM x", "read-only"),
        (f"EXPLAIN ANALYZE COPY codes TO '{out}/z.csv'", "EXPLAIN"),
        ("CHECKPOINT", "not allowed"),
        ("VACUUM", "not allowed"),
        ("BEGIN TRANSACTION", "not allowed"),
        ("DETACH main", "not allowed"),
        ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "CREATE"),
        ("SELECT * FROM query('DELETE FROM codes')", "disabled"),
        ("SELECT * FROM duckdb_extensions()", "disabled"),
        ("", "no SQL"),
        ("-- only a comment", "no SQL statement"),
        ("SELEC 1", "syntax error"),
    ]


def test_each_escape_is_refused_and_nothing_changes(db, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = _state(db.parent)
    escapes = _escapes(str(out))
    assert len(escapes) >= 25
    for sql, word in escapes:
        with pytest.raises(SqlRefusedError) as caught:
            run_safe_query(db, sql, timeout_s=5)
        message = str(caught.value)
        assert word.lower() in message.lower(), (sql, message)
        assert "\n" not in message, (sql, message)
    assert _state(db.parent) == before
    assert list(out.iterdir()) == []
    assert not any(p.name.endswith((".wal", ".tmp")) for p in db.parent.iterdir())


def test_runaway_recursive_cte_is_cancelled(db):
    before = _state(db.parent)
    sql = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"
    with pytest.raises(SqlRefusedError, match=r"cancelled|failed"):
        run_safe_query(db, sql, timeout_s=0.5)
    assert _state(db.parent) == before


def test_queries_run_and_are_capped(db):
    frame, truncated = run_safe_query(db, "SELECT * FROM codes", row_cap=10)
    assert frame.height == 10 and truncated
    frame, truncated = run_safe_query(
        db, "SELECT level, count(*) AS n FROM factor_levels GROUP BY 1"
    )
    assert not truncated and set(frame["level"]) <= {"low", "mid", "high"}
    for sql in (
        "DESCRIBE codes",
        "SHOW TABLES",
        "SUMMARIZE factor_levels",
        "EXPLAIN SELECT 1",
        "FROM runs",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "SELECT 1, 1",
    ):
        frame, _ = run_safe_query(db, sql)
        assert frame.height >= 1, sql


def test_reader_connections_stay_usable_after_console(db):
    from factorscope.warehouse.queries import WarehouseReader, level_counts

    reader = WarehouseReader(db)
    with reader.connect() as con:
        run_safe_query(db, "SELECT 1")
        assert sum(level_counts(con).values()) > 0
    assert os.path.exists(db)


@pytest.mark.parametrize("name", list(CONSOLE_EXAMPLES))
def test_console_examples_run(db, name):
    """Every example the app's console offers is accepted and returns a result."""
    frame, _ = run_safe_query(db, CONSOLE_EXAMPLES[name], row_cap=50)
    assert frame.width > 0, name


def test_pivot_and_unpivot_are_read_only_queries(db, tmp_path):
    """PIVOT (a MULTI statement to DuckDB) and UNPIVOT run, and still cannot write or read."""
    before = _state(db.parent)
    frame, _ = run_safe_query(db, "PIVOT codes ON layer USING count(*) GROUP BY factor")
    assert frame.height > 0 and "factor" in frame.columns
    frame, _ = run_safe_query(
        db, "SELECT * FROM (PIVOT (SELECT layer, factor FROM codes) ON layer USING count(*))"
    )
    assert frame.height > 0
    frame, _ = run_safe_query(
        db, "UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v", row_cap=10
    )
    assert sorted(frame["k"]) == ["a", "b"]
    out = tmp_path / "pivot"
    out.mkdir()
    for sql, word in (
        ("PIVOT read_csv('/etc/passwd') ON column0", "disabled"),
        ("WITH d AS (DELETE FROM codes RETURNING *) PIVOT d ON layer USING count(*)", "read-only"),
        ("CREATE TABLE p AS PIVOT codes ON layer USING count(*)", "CREATE"),
        (f"COPY (PIVOT codes ON layer USING count(*)) TO '{out}/p.csv'", "COPY"),
        ("PIVOT codes ON layer USING count(*); DROP TABLE codes", "one statement"),
    ):
        with pytest.raises(SqlRefusedError) as caught:
            run_safe_query(db, sql, timeout_s=5)
        assert word.lower() in str(caught.value).lower(), (sql, str(caught.value))
    assert list(out.iterdir()) == []
    assert _state(db.parent) == before


def test_result_bytes_are_capped(db):
    """Rows stop at the byte cap; a first row over the cap is refused with how to narrow it."""
    frame, truncated = run_safe_query(
        db, "SELECT repeat('x', 100000) AS s FROM range(1000)", byte_cap=1_000_000
    )
    assert truncated and 0 < frame.height < 1000
    assert frame.estimated_size() <= 1_100_000
    with pytest.raises(SqlRefusedError, match=r"larger than the 1 MB cap.*--max-mb"):
        run_safe_query(db, "SELECT repeat('x', 3000000)", byte_cap=1_000_000)
    frame, truncated = run_safe_query(db, "SELECT 1 AS x")
    assert not truncated and frame.height == 1


def test_sql_timeout_is_documented_once():
    """docs/SCHEMA.md states the same limits as `sql --help` (the one constant each)."""
    from factorscope.limits import (
        SQL_CONSOLE_SLOTS,
        SQL_MAX_MB,
        SQL_MAX_MEMORY_MB,
        SQL_MEMORY_ENV,
        SQL_TIMEOUT_S,
    )

    schema = (Path(__file__).parents[1] / "docs" / "SCHEMA.md").read_text("utf-8")
    assert f"{SQL_TIMEOUT_S:g} s" in schema and f"{SQL_MAX_MB} MB" in schema
    assert f"{SQL_MAX_MEMORY_MB:,} MB" in schema and SQL_MEMORY_ENV in schema
    assert f"at most {SQL_CONSOLE_SLOTS}" in schema


# --------------------------------------------------------------------------- issue 23
# The console cannot exhaust the server: memory and time limits that hold for every
# function, a small pool of console slots, no reading of the database file or of the
# server's paths, and a CLI query that may start with an SQL comment.


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB; children are not counted."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux's clear_refs), where allowed."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _children() -> list[int]:
    """Processes whose parent is this one (the console's workers, if any were left)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.append(int(stat.parent.name))
    return found


HOSTILE = [
    # (sql, a regex the one-line refusal must match; None: a result is fine too)
    ("SELECT length(list_resize([]::INT[], 100000000))", None),
    ("SELECT length(list_resize([]::INT[], 300000000))", r"needed more than [\d,]+ MB"),
    ("SELECT length(repeat('x', 1500000000))", r"needed more than [\d,]+ MB"),
    ("SELECT length(range(300000000))", r"needed more than [\d,]+ MB"),
    (
        "SELECT length(string_agg('xxxxxxxxxxxxxxxxxxxx', ',')) FROM range(100000000)",
        r"needed more than [\d,]+ MB",
    ),
    (
        "WITH RECURSIVE t(n, s) AS (SELECT 1, 'x' UNION ALL "
        "SELECT n + 1, s || s FROM t WHERE n < 40) SELECT max(length(s)) FROM t",
        r"needed more than [\d,]+ MB",
    ),
    (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
        r"needed more than|ran longer than the 4 s limit",
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("sql", "refusal"), HOSTILE, ids=[s[:40] for s, _ in HOSTILE])
def test_hostile_queries_stop_within_the_limits(db, sql, refusal):
    """Each ends (a result or one line) within the timeout and a few seconds, and the
    calling process's memory does not grow: the query ran, and failed, elsewhere."""
    timeout_s = 4
    _reset_peak_rss()
    before = _peak_rss_mb()
    started = time.monotonic()
    try:
        frame, _ = run_safe_query(db, sql, timeout_s=timeout_s)
        message = None
    except SqlRefusedError as e:
        message = str(e)
    elapsed = time.monotonic() - started
    assert elapsed < timeout_s + 4, (sql, elapsed)
    assert _peak_rss_mb() - before < 300, (sql, before, _peak_rss_mb())
    if refusal is not None:
        assert message is not None and re.search(refusal, message), (sql, message)
    elif message is None:
        assert frame.height == 1
    if message is not None:
        assert "\n" not in message and message.startswith("query "), message
    assert _children() == []


@pytest.mark.timeout(30)
def test_timeout_kills_a_query_deaf_to_interrupts(db):
    """list_sort inside one vector never checks DuckDB's interrupt: the worker is killed."""
    sql = "SELECT sum(length(list_sort(list_reverse(range(3000000))))) FROM range(20)"
    started = time.monotonic()
    with pytest.raises(SqlRefusedError, match=r"^query cancelled: it ran longer than the 0.5 s"):
        run_safe_query(db, sql, timeout_s=0.5)
    assert time.monotonic() - started < 3.5
    assert _children() == []


@pytest.mark.timeout(60)
def test_pool_refuses_a_third_query_at_once(db):
    """Two console queries hold both slots; a third is refused at once, in the app too."""
    from factorscope.dash_app import logic
    from factorscope.limits import SQL_CONSOLE_SLOTS

    assert SQL_CONSOLE_SLOTS == 2
    slow = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"
    outcomes: list[str] = []

    def run_slow() -> None:
        try:
            run_safe_query(db, slow, timeout_s=3)
            outcomes.append("ran")
        except SqlRefusedError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=run_slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # both workers started and running
    started = time.monotonic()
    with pytest.raises(SqlRefusedError) as caught:
        run_safe_query(db, "SELECT 1")
    assert time.monotonic() - started < 0.5
    assert str(caught.value) == ("the SQL console is busy with 2 queries; try again in a moment")
    result = logic.run_console_query(db, "SELECT 1")
    assert result.error is not None and "busy with 2 queries" in result.error
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and all("busy" not in o for o in outcomes), outcomes
    frame, _ = run_safe_query(db, "SELECT 1 AS x")  # the slots are free again
    assert frame["x"].to_list() == [1]


def _path_queries(db: Path) -> list[str]:
    return [
        f"SELECT * FROM read_blob('{db}')",
        f"SELECT * FROM read_text('{db}')",
        f"SELECT count(*) FROM read_blob('{db.parent}/' || '{db.name}')",
        f"SELECT count(*) FROM \"READ_BLOB\"('{db}')",
        f"SELECT count(*) FROM system.main.read_blob(['{db}'])",
        f"SELECT * FROM read_blob /* gap */ ('{db}')",
        f"EXPLAIN SELECT * FROM read_blob('{db}')",
        "SELECT database_name, path FROM duckdb_databases()",
        "SELECT path FROM duckdb_databases",
        "SELECT * FROM 'duckdb_databases'",
        "SELECT * FROM pragma_database_list",
        "PRAGMA database_list",
        "SELECT current_setting('temp_directory'), current_setting('home_directory')",
        "SELECT 'allowed_paths'.current_setting()",
        "SELECT * FROM duckdb_settings() WHERE name = 'allowed_paths'",
        "FROM duckdb_settings() SELECT value",
        "SELECT * FROM pg_catalog.pg_settings",
        "SELECT * FROM pg_settings",
        "SHOW allowed_paths",
        "SHOW secret_directory",
        "SELECT getenv('HOME')",
        "SELECT * FROM duckdb_secrets()",
        "SELECT * FROM which_secret('s3://x', 's3')",
        "SELECT * FROM query('SELECT path FROM duckdb_' || 'databases()')",
        "SELECT * FROM query_table('duckdb_' || 'databases')",
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
        "SUMMARIZE SELECT path FROM duckdb_databases()",
        "WITH d AS (SELECT * FROM duckdb_databases()) PIVOT d ON database_name USING count(*)",
    ]


def test_database_file_and_server_paths_are_refused(db):
    """read_blob / read_text could read the database file itself (DuckDB allows its own
    files with external access off), and these names show the server's paths."""
    home = os.path.expanduser("~")
    for sql in _path_queries(db):
        with pytest.raises(SqlRefusedError) as caught:
            run_safe_query(db, sql, timeout_s=5)
        message = str(caught.value)
        assert "\n" not in message, (sql, message)
        assert str(db.parent) not in message and home not in message, (sql, message)
        assert "disabled" in message or "PRAGMA" in message, (sql, message)


def test_ordinary_names_near_the_hidden_ones_still_run(db):
    frame, _ = run_safe_query(db, "SELECT 1 AS query, 2 AS path, current_database() AS d")
    assert frame.row(0) == (1, 2, db.stem)
    frame, _ = run_safe_query(db, "SELECT count(*) AS n FROM duckdb_tables()")
    assert frame["n"][0] > 0


def test_every_path_valued_setting_is_hidden(db):
    """Guard for a DuckDB upgrade: a setting whose value names a path must be listed."""
    import duckdb

    from factorscope.warehouse.connection import READ_CONFIG
    from factorscope.warehouse.safe_sql import HIDDEN_NAMES

    con = duckdb.connect(str(db), read_only=True, config=dict(READ_CONFIG))
    try:
        rows = con.sql("SELECT name, value FROM duckdb_settings()").fetchall()
    finally:
        con.close()
    absolute = re.compile(r"(^|[\[, ])/\w")  # an absolute path, alone or in a list
    with_paths = {name for name, value in rows if absolute.search(str(value))}
    assert with_paths, "expected allowed_paths at least"
    assert with_paths <= HIDDEN_NAMES, with_paths - HIDDEN_NAMES


def test_memory_limit_comes_from_the_environment(db, monkeypatch):
    from factorscope.errors import InputError
    from factorscope.limits import SQL_MEMORY_ENV

    monkeypatch.setenv(SQL_MEMORY_ENV, "300")
    with pytest.raises(SqlRefusedError, match=r"needed more than 300 MB"):
        run_safe_query(db, "SELECT length(list_resize([]::INT[], 100000000))", timeout_s=5)
    monkeypatch.setenv(SQL_MEMORY_ENV, "12")
    with pytest.raises(InputError, match=SQL_MEMORY_ENV):
        run_safe_query(db, "SELECT 1")


def test_cli_query_may_start_with_a_comment(db, capsys):
    from factorscope.cli import main

    code = main(["sql", "--db", str(db), "--csv", "-- top\nSELECT 41 + 1 AS answer"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == ["answer", "42"]
    code = main(["sql", "--db", str(db), "--bogus"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "--bogus" in err and "--help" in err, err
    code = main(["sql", "--db", str(db), "SELECT 1", "--bogus"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "--bogus" in err, err


@pytest.mark.timeout(60)
def test_cli_memory_stop_is_one_line(db, capsys):
    from factorscope.cli import main

    code = main(["sql", "--db", str(db), "--timeout", "5", "SELECT repeat('x', 1500000000)"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: query stopped: it needed more than"), err
