"""The database is for every SQL client: a DuckDB 1.x CLI opens what the pipeline wrote.

``duckdb-cli`` (the dev extra) is the newest CLI on PyPI, a 1.x release: it reads
storage versions up to DuckDB 1.x's, not 2.x's default. The pipeline writes with
``STORAGE_COMPATIBILITY`` so that it can; a file written without it would be refused
("Trying to read a database file with version number 69 ...").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factorscope.warehouse.connection import connect

from .conftest import copy_db

SCHEMA_MD = Path(__file__).resolve().parents[1] / "docs" / "SCHEMA.md"


def _cli() -> str:
    beside = Path(sys.executable).with_name("duckdb")
    found = str(beside) if beside.exists() else shutil.which("duckdb")
    assert found, "duckdb-cli is not installed (pip install -e '.[dev]')"
    return found


def _run_cli(db: Path, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_cli(), "-readonly", "-csv", str(db), "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_is_a_1x_release():
    version = subprocess.run(
        [_cli(), "-version"], capture_output=True, text=True, timeout=30
    ).stdout
    assert re.match(r"v1\.\d+\.\d+", version.strip()), version


def test_pipeline_database_opens_in_the_1x_cli(tiny_pipeline_db: Path, tmp_path: Path):
    db = copy_db(tiny_pipeline_db, tmp_path)
    blocks = re.findall(r"```sql\n(.*?)```", SCHEMA_MD.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    con = connect(db, read_only=True)
    try:
        expected_levels = con.execute("SELECT count(*) FROM factor_levels").fetchall()[0][0]
    finally:
        con.close()
    # Every documented query runs in the 1.x CLI (views are SQL text re-bound there).
    for sql in blocks:
        done = _run_cli(db, sql)
        assert done.returncode == 0, f"{sql}\n{done.stderr}"
        assert done.stdout.strip(), sql
    done = _run_cli(db, "SELECT count(*) AS n FROM factor_levels")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == expected_levels > 0


@pytest.mark.timeout(120)
def test_a_file_written_without_the_policy_is_refused_by_the_cli(tmp_path: Path):
    """Proves the test above can fail: DuckDB 2.x's default format is not readable."""
    import duckdb

    plain = tmp_path / "plain.duckdb"
    con = duckdb.connect(str(plain))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    if duckdb.__version__.startswith("2"):  # a 1.x DuckDB writes what the CLI reads anyway
        assert _run_cli(plain, "SELECT x FROM t").returncode != 0
    ours = tmp_path / "ours.duckdb"
    con = connect(ours)
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    done = _run_cli(ours, "SELECT x FROM t")
    assert done.returncode == 0 and done.stdout.split()[-1] == "1", done.stderr
