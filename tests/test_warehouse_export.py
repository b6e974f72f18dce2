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
    files = export(db, tmp_path / fmt, fmt=fmt, views="both")
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
    with pytest.raises(InputError, match="views must be one of all, active, both"):
        export(db, tmp_path, views="some")


def _catalog(db: Path) -> tuple[set[str], set[str]]:
    """(tables, views) of the database."""
    con = connect(db, read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'main'"
        ).fetchall()
    finally:
        con.close()
    return {n for n, t in rows if t != "VIEW"}, {n for n, t in rows if t == "VIEW"}


def test_export_writes_each_view_once_by_default(db, tmp_path):
    tables, views = _catalog(db)
    every = {name for name in views if name.endswith("_all")}
    active = {name.removesuffix("_all") for name in every}
    assert {"factor_top_contexts_all", "factor_labels_all"} <= every and active <= views
    alone = views - every - active  # views without an _all twin (active_dictionary)
    by_default = {f.stem for f in export(db, tmp_path / "default")}
    assert by_default == tables | every | alone
    assert not by_default & active  # not factor_top_contexts and factor_top_contexts_all
    assert {f.stem for f in export(db, tmp_path / "all", views="all")} == by_default
    only_active = {f.stem for f in export(db, tmp_path / "active", views="active")}
    assert only_active == tables | active | alone
    both = {f.stem for f in export(db, tmp_path / "both", views="both")}
    assert both == tables | views
    # an _all view has every dictionary's rows, with the dictionary_id to filter on
    levels_all = read_back(tmp_path / "default" / "factor_levels_all.parquet")
    assert "dictionary_id" in levels_all.schema.names


def test_export_command_views_flag(db, tmp_path, capsys):
    from factorscope.cli import main

    assert main(["export", str(tmp_path / "a"), "--db", str(db), "--views", "active"]) == 0
    written = {Path(line).stem for line in capsys.readouterr().out.split()}
    assert "factor_levels" in written and "factor_levels_all" not in written
    assert main(["export", str(tmp_path / "b"), "--db", str(db)]) == 0
    written = {Path(line).stem for line in capsys.readouterr().out.split()}
    assert "factor_levels_all" in written and "factor_levels" not in written
    assert main(["export", str(tmp_path / "c"), "--db", str(db), "--views", "some"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--views" in err and "'some'" in err, err
    assert main(["export", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--views" in help_text and "_all" in help_text


def test_schema_md_examples_run(db):
    blocks = re.findall(r"```sql\n(.*?)```", SCHEMA_MD.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 10
    for sql in blocks:
        frame, _ = run_safe_query(db, sql)
        assert frame.width >= 1, sql
