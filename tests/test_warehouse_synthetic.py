"""The synthetic database is complete and internally consistent."""

from __future__ import annotations

import numpy as np
import pytest

from factorscope.warehouse.connection import connect
from factorscope.warehouse.synthetic import build_synthetic_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "syn.duckdb"
    build_synthetic_db(path, n_sentences=150, n_factors=48, hidden_size=16, chunk_size=64)
    return path


def _rows(path, sql):
    con = connect(path, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_stage_is_done(db):
    assert _rows(db, "SELECT status, n_sentences, n_layers FROM runs") == [("ingested", 150, 7)]
    assert _rows(db, "SELECT status FROM dictionaries") == [("encoded",)]
    assert _rows(db, "SELECT count(*) FROM encode_chunks") == [(3,)]
    assert _rows(db, "SELECT count(*) FROM layer_quality") == [(7,)]
    assert _rows(db, "SELECT count(*) > 0 FROM hidden_states") == [(True,)]
    assert not db.with_name(db.name + ".wip").exists()


def test_tokens_match_their_text(db):
    rows = _rows(
        db,
        "SELECT s.text, t.word, t.word_start, t.word_end, t.token_id, t.sentence_idx, "
        "t.position FROM tokens t JOIN sentences s USING (sentence_idx)",
    )
    for text, word, start, end, token_id, sentence_idx, position in rows:
        assert text[start:end] == word
        assert token_id == sentence_idx * 1024 + position


def test_codes_are_sparse_and_cover_all_levels(db):
    (n_codes, n_tokens) = _rows(db, "SELECT (SELECT count(*) FROM codes), count(*) FROM tokens")[0]
    mean_l0 = n_codes / (n_tokens * 7)
    assert 5 < mean_l0 < 16
    levels = dict(_rows(db, "SELECT level, count(*) FROM factor_levels GROUP BY level"))
    assert set(levels) == {"low", "mid", "high"}
    norms = _rows(
        db, "SELECT list_sum(list_transform(vector, lambda v: v * v)) FROM dictionary_atoms"
    )
    assert np.allclose([n for (n,) in norms], 1.0, atol=1e-5)
    assert _rows(db, "SELECT count(*) FROM codes WHERE alpha <= 0") == [(0,)]
    dup = (
        "SELECT count(*) FROM (SELECT layer, factor, token_id FROM codes "
        "GROUP BY ALL HAVING count(*) > 1)"
    )
    assert _rows(db, dup) == [(0,)]


def test_same_seed_same_codes(tmp_path):
    a = build_synthetic_db(tmp_path / "a.duckdb", n_sentences=20, n_factors=16, seed=3)
    b = build_synthetic_db(tmp_path / "b.duckdb", n_sentences=20, n_factors=16, seed=3)
    sql = "SELECT layer, factor, token_id, alpha FROM codes ORDER BY layer, factor, token_id"
    assert _rows(a, sql) == _rows(b, sql)
