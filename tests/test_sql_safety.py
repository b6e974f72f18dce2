"""The SQL console refuses every way out of read-only querying, and changes nothing."""

from __future__ import annotations

import hashlib
import os

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
        ("SELECT * FROM query('DELETE FROM codes')", "failed"),
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
    """docs/SCHEMA.md states the same timeout as `sql --help` (the one constant)."""
    from pathlib import Path

    from factorscope.limits import SQL_MAX_MB, SQL_TIMEOUT_S

    schema = (Path(__file__).parents[1] / "docs" / "SCHEMA.md").read_text("utf-8")
    assert f"{SQL_TIMEOUT_S:g} s" in schema and f"{SQL_MAX_MB} MB" in schema
