"""The comparison contract itself (tests/contract.py): it passes noise and catches changes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from factorscope.warehouse.connection import connect

from .conftest import copy_db
from .contract import (
    ATOL,
    RTOL,
    TopK,
    assert_databases_match,
    assert_dictionaries_close,
    assert_tables_match,
    read_table,
)

CODES_KEY = ("layer", "factor", "token_id")
TOP = TopK(group=("factor", "layer"), rank="rank", value="alpha", ident=("token_id",))


def _codes(n: int = 1000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "layer": np.repeat(np.arange(n // 100, dtype=np.int16), 100),
            "factor": np.tile(np.arange(100, dtype=np.int32), n // 100),
            "token_id": np.arange(n, dtype=np.int64),
            "alpha": rng.uniform(0.01, 3.0, n).astype(np.float32),
        }
    )


def _set(frame: pl.DataFrame, row: int, col: str, value) -> pl.DataFrame:
    s = frame[col].to_list()
    s[row] = value
    return frame.with_columns(pl.Series(col, s, dtype=frame[col].dtype))


def _message(expected, actual, **kw) -> str:
    with pytest.raises(AssertionError) as info:
        assert_tables_match(expected, actual, name="t", **kw)
    return str(info.value)


def test_floats_within_tolerance_pass_and_beyond_fail():
    codes = _codes()
    noisy = codes.with_columns(pl.col("alpha") * (1 + RTOL / 10))
    assert_tables_match(codes, noisy, name="codes", key=CODES_KEY)
    assert_tables_match(codes, noisy, name="codes")  # row by row, same order
    moved = _set(codes, 7, "alpha", float(codes["alpha"][7]) * (1 + 10 * RTOL) + 10 * ATOL)
    message = _message(codes, moved, key=CODES_KEY)
    assert "differing rows: 1" in message and "token_id=7" in message
    assert "expected: {layer: 0, factor: 7, token_id: 7" in message
    # an id or a count is exact: off by one fails
    assert "differing rows: 1" in _message(codes, _set(codes, 3, "factor", 4), key=("token_id",))
    assert "rows: expected 1,000, actual 999" in _message(codes, codes.head(999), key=CODES_KEY)
    with pytest.raises(AssertionError, match="not unique"):
        assert_tables_match(codes, codes, name="t", key=("layer",))


def test_float_lists_compare_elementwise():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((50, 32)).astype(np.float32)
    frame = pl.DataFrame({"token_id": np.arange(50), "vector": vectors.tolist()})
    frame = frame.with_columns(pl.col("vector").cast(pl.List(pl.Float32)))
    noisy = frame.with_columns(pl.Series("vector", (vectors * (1 + 1e-7)).tolist()))
    assert_tables_match(frame, noisy, name="hs", key=("token_id",))
    bumped = vectors.copy()
    bumped[20, 31] += 0.01
    message = _message(frame, frame.with_columns(pl.Series("vector", bumped.tolist())))
    assert "differing rows: 1" in message and "(32 values)" in message
    shorter = frame.with_columns(pl.Series("vector", vectors[:, :31].tolist()))
    assert "differing rows: 50" in _message(frame, shorter, key=("token_id",))


def test_sparse_rows_may_appear_only_near_zero():
    codes = _codes()
    tiny = pl.DataFrame(
        {"layer": [0], "factor": [5], "token_id": [99_999], "alpha": [ATOL / 2]},
        schema=codes.schema,
    )
    assert_tables_match(codes, pl.concat([codes, tiny]), name="codes", key=CODES_KEY, sparse=True)
    big = tiny.with_columns(pl.lit(0.5, pl.Float32).alias("alpha"))
    message = _message(codes, pl.concat([codes, big]), key=CODES_KEY, sparse=True)
    assert "token_id=99999" in message and "(no such row)" in message
    _message(codes, pl.concat([codes, tiny]), key=CODES_KEY)  # not sparse: any extra row fails


def _top(alphas: list[float], ids: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "factor": [0] * len(ids),
            "layer": [1] * len(ids),
            "rank": list(range(1, len(ids) + 1)),
            "alpha": alphas,
            "token_id": ids,
            "word": [f"w{i}" for i in ids],
        }
    )


def test_topk_swaps_pass_only_at_ties_or_the_cut():
    expected = _top([0.9, 0.5, 0.5 * (1 - RTOL / 10), 0.2, 0.1], [1, 2, 3, 4, 5])
    # 2 and 3 tie within tolerance: swapped is fine (and their words follow them)
    assert_tables_match(
        expected, _top([0.9, 0.5, 0.5, 0.2, 0.1], [1, 3, 2, 4, 5]), name="t", topk=TOP
    )
    # at the cut a new id may enter (the old 6th item tied with the 5th)
    assert_tables_match(
        expected, _top([0.9, 0.5, 0.5, 0.2, 0.1], [1, 2, 3, 4, 6]), name="t", topk=TOP
    )
    # clearly different values swapped: the values by rank match, the ids do not tie
    message = _message(expected, _top([0.9, 0.5, 0.5, 0.2, 0.1], [1, 2, 3, 5, 4]), topk=TOP)
    assert "differing rows: 1" in message and "rank=4" in message  # rank 5 is the cut
    # an id replaced inside the list, not at the cut
    assert "rank=1" in _message(
        expected, _top([0.9, 0.5, 0.5, 0.2, 0.1], [7, 2, 3, 4, 5]), topk=TOP
    )
    # a value moved beyond tolerance
    _message(expected, _top([0.9, 0.5, 0.5, 0.25, 0.1], [1, 2, 3, 4, 5]), topk=TOP)
    # same id, different word: the rest of the row is data, exact
    renamed = expected.with_columns(pl.Series("word", ["w1", "w2", "w3", "x", "w5"]))
    assert "word" in _message(expected, renamed, topk=TOP)
    # an extra near-zero entry is a code switched on (sparse), not beyond
    extra = _top([0.9, 0.5, 0.5, 0.2, 0.1, ATOL / 3], [1, 2, 3, 4, 5, 9])
    assert_tables_match(expected, extra, name="t", topk=TOP, sparse=True)
    _message(expected, _top([0.9, 0.5, 0.5, 0.2, 0.1, 0.05], [1, 2, 3, 4, 5, 9]), topk=TOP)


def test_topk_rank_may_be_computed():
    frame = pl.DataFrame({"word": ["a"] * 3, "factor": [4, 2, 9], "v": [0.3, 0.3, 0.1]})
    rule = TopK(group=("word",), rank="__rank", value="v", ident=("factor",))
    swapped = frame.with_columns(pl.Series("v", [0.3, 0.3 * (1 + RTOL / 10), 0.1]))
    assert_tables_match(frame, swapped, name="w", topk=rule)
    with pytest.raises(AssertionError):
        assert_tables_match(
            frame, frame.with_columns(pl.Series("v", [0.3, 0.2, 0.1])), name="w", topk=rule
        )


@pytest.mark.timeout(60)
def test_a_million_row_mismatch_is_reported_briefly():
    codes = _codes(1_000_000)
    changed = codes.with_columns(
        pl.when(pl.col("token_id") % 1000 == 17)
        .then(pl.col("alpha") + 1)
        .otherwise(pl.col("alpha"))
        .alias("alpha")
    )
    started = time.perf_counter()
    message = _message(codes, changed, key=CODES_KEY)
    assert time.perf_counter() - started < 30
    assert len(message) < 1500 and message.count("\n") < 10
    assert "differing rows: 1,000" in message and "largest |diff| 1" in message


def test_read_table_checks_names_and_closes(tiny_pipeline_db: Path):
    frame = read_table(tiny_pipeline_db, "sentences", order_by="sentence_idx")
    assert frame["sentence_idx"].to_list() == sorted(frame["sentence_idx"].to_list())
    with pytest.raises(ValueError):
        read_table(tiny_pipeline_db, "codes; DROP TABLE codes")
    con = connect(tiny_pipeline_db)  # a write connection: nothing left open
    con.close()


ALL_TABLES = (
    "sentences",
    "tokens",
    "hidden_states",
    "runs",
    "ingest_chunks",
    "dictionary_atoms",
    "codes",
    "encode_chunks",
    "encode_chunk_stats",
    "layer_quality",
    "summary_top_contexts",
    "summary_importance",
    "summary_levels",
    "summary_histogram",
    "summary_neighbors",
    "summary_word_factors",
    "auto_labels",
)


def _edit(db: Path, sql: str) -> None:
    con = connect(db)
    try:
        con.execute(sql)
    finally:
        con.close()


def test_databases_match_themselves_and_catch_edits(tiny_pipeline_db: Path, tmp_path: Path):
    assert_databases_match(tiny_pipeline_db, tiny_pipeline_db, ALL_TABLES)
    noisy = copy_db(tiny_pipeline_db, tmp_path)
    _edit(noisy, f"UPDATE codes SET alpha = alpha * (1 + {RTOL / 10})")
    _edit(noisy, f"UPDATE summary_importance SET importance = importance * (1 + {RTOL / 10})")
    assert_databases_match(tiny_pipeline_db, noisy, ("codes", "summary_importance"))
    for table, sql in (
        ("codes", "UPDATE codes SET alpha = alpha + 0.01 WHERE token_id = 1024 + 1"),
        ("codes", "DELETE FROM codes WHERE alpha = (SELECT max(alpha) FROM codes)"),
        ("tokens", "UPDATE tokens SET word = 'x' WHERE token_id = 1025"),
        # the factor whose IS varies most over layers: its peak moved to its lowest IS
        (
            "summary_levels",
            "WITH s AS (SELECT factor, arg_min(layer, importance) AS low FROM summary_importance "
            "GROUP BY factor ORDER BY max(importance) - min(importance) DESC LIMIT 1) "
            "UPDATE summary_levels SET peak_layer = s.low FROM s "
            "WHERE summary_levels.factor = s.factor",
        ),
        ("summary_histogram", "UPDATE summary_histogram SET count = count + 3 WHERE bin = 0"),
        ("summary_importance", "UPDATE summary_importance SET n_active = n_active + 1"),
        # IS moves by at most ATOL x n_active / K when every alpha moves by ATOL; here
        # n_active <= 30 and K = 1000, so ATOL / 10 is beyond it
        (
            "summary_importance",
            f"UPDATE summary_importance SET importance = importance + {ATOL / 10}",
        ),
        ("layer_quality", "UPDATE layer_quality SET dead_factors = dead_factors + 1"),
        ("auto_labels", "UPDATE auto_labels SET label = label || 'x'"),
        ("summary_neighbors", "DELETE FROM summary_neighbors WHERE factor = 0"),
        (
            "hidden_states",
            "UPDATE hidden_states SET vector = list_transform(vector, lambda x: x + 1)",
        ),
    ):
        folder = tmp_path / f"{table}-{len(sql)}"
        folder.mkdir()
        db = copy_db(tiny_pipeline_db, folder)
        _edit(db, sql)
        with pytest.raises(AssertionError, match=table):
            assert_databases_match(tiny_pipeline_db, db, (table,))


def test_relearned_dictionaries_are_close_by_cosine(tiny_pipeline_db: Path, tmp_path: Path):
    assert_dictionaries_close(tiny_pipeline_db, tiny_pipeline_db)
    db = copy_db(tiny_pipeline_db, tmp_path)
    _edit(db, "UPDATE dictionary_atoms SET vector = list_transform(vector, lambda x: x * 1.5)")
    assert_dictionaries_close(tiny_pipeline_db, db)  # cosine ignores the scale
    _edit(
        db,
        "UPDATE dictionary_atoms SET vector = list_transform(vector, "
        "lambda x, i: CASE WHEN i = 1 THEN x + 0.2 ELSE x END) WHERE factor = 3",
    )
    with pytest.raises(AssertionError, match=r"1 of 48 atoms below cosine 0\.995.*factor 3"):
        assert_dictionaries_close(tiny_pipeline_db, db)
