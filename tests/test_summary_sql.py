"""The worked example of docs/ARCHITECTURE.md: adding a summary is one SQL file and one
typed reader.

The example file (tests/data/summary_example/80_density.sql, shown whole in the doc)
is added to the shipped summaries; a real refresh then creates its table and view,
fills them, and the reader reads them. Its partial and merge give the same rows for a
single run (the merge of one partial) as for two shards.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from factorscope.errors import WarehouseError
from factorscope.warehouse import publish, summary_files
from factorscope.warehouse.connection import connect
from factorscope.warehouse.queries import _frame
from factorscope.warehouse.summaries import refresh_summaries
from factorscope.warehouse.synthetic import build_synthetic_db

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "data" / "summary_example" / "80_density.sql"


def factor_density(con: duckdb.DuckDBPyConnection, factor: int) -> pl.DataFrame:
    """The example's typed reader: one factor's density at every layer."""
    return _frame(
        con,
        "SELECT layer, n_active, density FROM factor_density WHERE factor = ? ORDER BY layer",
        [factor],
    )


@pytest.fixture
def with_example(monkeypatch: pytest.MonkeyPatch) -> summary_files.SummaryFile:
    example = summary_files.parse(EXAMPLE.name, EXAMPLE.read_text("utf-8"))
    shipped = summary_files.summaries()
    monkeypatch.setattr(summary_files, "summaries", lambda: (*shipped, example))
    return example


def test_the_documented_example_is_the_tested_file() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text("utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert EXAMPLE.read_text("utf-8") in blocks


def test_adding_the_file_adds_the_table_view_and_rows(tmp_path: Path, with_example) -> None:
    db = tmp_path / "x.duckdb"
    build_synthetic_db(db, n_sentences=60, n_factors=12, hidden_size=8, seed=2)
    with publish.staged_database(db) as con:
        refresh_summaries(con, top_k=5, importance_k=10, word_top=3, neighbors_n=2)
    con = connect(db, read_only=True)
    try:
        n_tokens = con.sql("SELECT count(*) FROM tokens").fetchall()[0][0]
        expected = con.sql(
            "SELECT layer, count(*) AS n FROM codes WHERE factor = 3 GROUP BY layer ORDER BY layer"
        ).pl()
        got = factor_density(con, 3)
    finally:
        con.close()
    assert got.height == expected.height > 0
    assert got["n_active"].to_list() == expected["n"].to_list()
    np.testing.assert_allclose(got["density"].to_numpy(), expected["n"].to_numpy() / n_tokens)


def _codes(seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 500
    return pa.table(
        {
            "layer": pa.array(rng.integers(0, 3, n).astype(np.int16)),
            "dictionary_id": pa.array(np.full(n, 1, dtype=np.int32)),
            "factor": pa.array(rng.integers(0, 5, n).astype(np.int32)),
            "token_id": pa.array(np.arange(n, dtype=np.int64)),
            "alpha": pa.array(rng.exponential(1.0, n).astype(np.float32)),
        }
    )


def _partial(summary: summary_files.SummaryFile, codes: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("codes", codes)
    con.execute(summary.partial, {"dictionary_id": 1})
    return con.sql(f"SELECT * FROM {summary.partial_table}").to_arrow_table()


def _merge(summary: summary_files.SummaryFile, partials: list[pa.Table]) -> list[tuple]:
    con = duckdb.connect()
    con.execute(summary.table_sql)
    con.register("tokens", pa.table({"token_id": pa.array(np.arange(500, dtype=np.int64))}))
    con.register(summary.partial_table, pa.concat_tables(partials))
    con.execute(summary.merge, {"dictionary_id": 1})
    return con.sql(f"SELECT * FROM {summary.table} ORDER BY ALL").fetchall()


def test_single_run_is_the_merge_of_one_partial_and_equals_shards() -> None:
    example = summary_files.parse(EXAMPLE.name, EXAMPLE.read_text("utf-8"))
    codes = _codes()
    single = _merge(example, [_partial(example, codes)])
    token = codes.column("token_id").to_numpy()
    shards = [_partial(example, codes.filter(pa.array(token % 2 == k))) for k in (0, 1)]
    assert _merge(example, shards) == single
    assert sum(row[3] for row in single) == codes.num_rows


def test_every_shipped_summary_has_a_table_and_a_way_to_be_filled() -> None:
    from factorscope.warehouse.summaries import PYTHON_FILLED

    shipped = summary_files.summaries()
    assert [s.order for s in shipped] == sorted(s.order for s in shipped)
    for summary in shipped:
        assert summary.merge or summary.name in PYTHON_FILLED, summary.name


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("density.sql", "-- @table\nCREATE TABLE IF NOT EXISTS t (a INT);", "NN_<name>"),
        ("80_density.sql", "-- @merge\nSELECT 1;", "@table"),
        (
            "80_density.sql",
            "-- @table\nCREATE TABLE IF NOT EXISTS t (a INT);\n-- @bogus\n",
            "@bogus",
        ),
        (
            "80_density.sql",
            "-- @table\nCREATE TABLE IF NOT EXISTS t (a INT);\n-- @partial\n"
            "CREATE TEMP TABLE _p_other AS SELECT 1;\n-- @merge\nSELECT 1;",
            "_p_density",
        ),
    ],
)
def test_a_malformed_summary_file_is_refused(name: str, text: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=re.escape(message)):
        summary_files.parse(name, text)
