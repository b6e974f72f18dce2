"""The worked example of docs/ARCHITECTURE.md: one summary SQL file, partial + merge.

The histogram's file is run as a single run runs it (the merge of one partial) and as
a sharded run does (the merge of the partials of two shards); both give the same rows.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
SQL = resources.files("factorscope.warehouse").joinpath("summary_sql", "histogram.sql")
PARAMS = {"per_octave": 4}


def _codes(seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 500
    return pa.table(
        {
            "layer": pa.array(rng.integers(0, 3, n).astype(np.int16)),
            "factor": pa.array(rng.integers(0, 5, n).astype(np.int32)),
            "token_id": pa.array(np.arange(n, dtype=np.int64)),
            "alpha": pa.array(rng.exponential(1.0, n).astype(np.float32)),
        }
    )


def _partial(codes: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.register("codes", codes)
    partial, _ = con.extract_statements(SQL.read_text("utf-8"))
    con.execute(partial, PARAMS)
    return con.sql("SELECT * FROM _p_histogram").to_arrow_table()


def _merge(partials: list[pa.Table]) -> list[tuple]:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE summary_histogram (factor INTEGER, layer SMALLINT, bin INTEGER, count BIGINT)"
    )
    con.register("_p_histogram", pa.concat_tables(partials))
    _, merge = con.extract_statements(SQL.read_text("utf-8"))
    con.execute(merge)
    return con.sql("SELECT * FROM summary_histogram ORDER BY ALL").fetchall()


def test_the_documented_example_is_the_shipped_file() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text("utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert SQL.read_text("utf-8") in blocks


def test_single_run_is_the_merge_of_one_partial_and_equals_shards() -> None:
    codes = _codes()
    single = _merge([_partial(codes)])
    token = codes.column("token_id").to_numpy()
    shards = [_partial(codes.filter(pa.array(token % 2 == k))) for k in (0, 1)]
    assert _merge(shards) == single
    direct = duckdb.connect()
    direct.register("codes", codes)
    expected = direct.sql(
        "SELECT factor, layer, CAST(floor(log2(alpha) * 4) AS INTEGER) AS bin, count(*) "
        "FROM codes WHERE alpha > 0 GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert single == expected
