"""Exports write every relation; every example query in docs/SCHEMA.md runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factorscope.errors import InputError
from factorscope.warehouse.connection import connect
from factorscope.warehouse.export import export, read_back
from factorscope.warehouse.safe_sql import run_safe_query
from factorscope.warehouse.synthetic import build_synthetic_db

SCHEMA_MD = Path(__file__).resolve().parents[1] / "docs" / "SCHEMA.md"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "e.duckdb"
    build_synthetic_db(path, n_sentences=40, n_factors=16, hidden_size=8)
    return path


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_every_table_and_view(db, tmp_path, fmt):
    files = export(db, tmp_path / fmt, fmt=fmt)
    names = {f.stem for f in files}
    con = connect(db, read_only=True)
    expected = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    n_codes = con.execute("SELECT count(*) FROM codes").fetchall()[0][0]
    con.close()
    assert names == expected
    assert {"codes", "factor_top_contexts", "user_labels"} <= names
    assert read_back(tmp_path / fmt / f"codes.{fmt}").num_rows == n_codes
    assert not list((tmp_path / fmt).glob("*.partial"))


def test_export_rejects_unknown_format(db, tmp_path):
    with pytest.raises(InputError):
        export(db, tmp_path, fmt="xlsx")


def test_schema_md_examples_run(db):
    blocks = re.findall(r"```sql\n(.*?)```", SCHEMA_MD.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 10
    for sql in blocks:
        frame, _ = run_safe_query(db, sql)
        assert frame.width >= 1, sql
