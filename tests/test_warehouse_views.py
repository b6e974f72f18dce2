"""Every public view agrees with a brute-force NumPy / polars computation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from factorscope.warehouse import publish
from factorscope.warehouse.connection import connect
from factorscope.warehouse.summaries import CONTEXT_WORDS, refresh_summaries
from factorscope.warehouse.synthetic import build_synthetic_db

TOP_K = 15
IMPORTANCE_K = 40
WORD_TOP = 5


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "v.duckdb"
    build_synthetic_db(path, n_sentences=120, n_factors=40, hidden_size=12, seed=5)
    with publish.staged_database(path) as con:
        refresh_summaries(
            con, top_k=TOP_K, importance_k=IMPORTANCE_K, word_top=WORD_TOP, neighbors_n=4
        )
    return path


@pytest.fixture(scope="module")
def data(db):
    con = connect(db, read_only=True)
    out = {
        # the views' (and codes') dictionary_id is one value here: compared without it
        name: con.sql(f"SELECT COLUMNS(lambda c: c <> 'dictionary_id') FROM {name}").pl()
        for name in (
            "codes",
            "tokens",
            "sentences",
            "factor_top_contexts",
            "factor_importance",
            "factor_levels",
            "word_factors",
            "factor_histogram",
            "factor_neighbors",
            "factor_labels",
            "dictionary_atoms",
        )
    }
    con.close()
    return out


def _brute_top(data) -> pl.DataFrame:
    codes = data["codes"].sort(
        ["factor", "layer", "alpha", "token_id"], descending=[False, False, True, False]
    )
    codes = codes.with_columns(
        pl.int_range(1, pl.len() + 1).over(["factor", "layer"]).alias("rank")
    )
    return codes.filter(pl.col("rank") <= TOP_K)


def test_top_contexts_match_brute_force(data):
    expected = _brute_top(data)
    got = data["factor_top_contexts"].sort(["factor", "layer", "rank"])
    assert got.height == expected.height
    assert got["token_id"].to_list() == expected["token_id"].to_list()
    assert np.allclose(got["alpha"].to_numpy(), expected["alpha"].to_numpy())

    tokens = {r["token_id"]: r for r in data["tokens"].iter_rows(named=True)}
    texts = dict(data["sentences"].select("sentence_idx", "text").iter_rows())
    by_sentence: dict[int, dict[int, tuple[int, int]]] = {}
    for t in tokens.values():
        by_sentence.setdefault(t["sentence_idx"], {})[t["word_index"]] = (
            t["word_start"],
            t["word_end"],
        )
    for row in got.iter_rows(named=True):
        tok = tokens[row["token_id"]]
        words = by_sentence[tok["sentence_idx"]]
        near = [span for wi, span in words.items() if abs(wi - tok["word_index"]) <= CONTEXT_WORDS]
        start = min(s for s, _ in near)
        end = max(e for _, e in near)
        assert row["context"] == texts[tok["sentence_idx"]][start:end]
        assert row["context"][row["highlight_start"] : row["highlight_end"]] == tok["word"]
        assert row["word"] == tok["word"]


def _brute_importance(data) -> dict[tuple[int, int], float]:
    out = {}
    for (factor, layer), group in data["codes"].group_by(["factor", "layer"]):
        alphas = np.sort(group["alpha"].to_numpy().astype(np.float64))[::-1]
        out[(factor, layer)] = alphas[:IMPORTANCE_K].sum() / IMPORTANCE_K
    return out


def test_importance_matches_brute_force(data):
    expected = _brute_importance(data)
    got = {
        (f, layer): v
        for f, layer, v in data["factor_importance"].select("factor", "layer", "importance").rows()
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)
    # Some (factor, layer) have fewer non-zeros than K: zeros count in the mean.
    counts = data["codes"].group_by(["factor", "layer"]).len()
    assert (counts["len"] < IMPORTANCE_K).any()


def test_levels_match_brute_force(data):
    importance = _brute_importance(data)
    n_layers = 7
    expected = {}
    for factor in range(40):
        curve = np.array([importance.get((factor, layer), 0.0) for layer in range(n_layers)])
        if curve.max() <= 0:
            continue
        peak = int(np.argmax(curve))  # first maximum: the lowest layer wins ties
        level = "low" if peak < n_layers / 3 else "mid" if peak < 2 * n_layers / 3 else "high"
        expected[factor] = (peak, level)
    got = {f: (p, lv) for f, p, lv in data["factor_levels"].rows()}
    assert got == expected
    assert {lv for _, lv in got.values()} == {"low", "mid", "high"}


def test_word_factors_match_brute_force(data):
    tokens = data["tokens"].with_columns(pl.col("word").str.to_lowercase().alias("w"))
    occ = dict(tokens.group_by("w").len().rows())
    joined = data["codes"].join(tokens.select("token_id", "w"), on="token_id")
    agg = joined.group_by(["w", "layer", "factor"]).agg(
        pl.col("alpha").cast(pl.Float64).sum().alias("s"), pl.len().alias("hits")
    )
    agg = agg.with_columns(
        (pl.col("s") / pl.col("w").replace_strict(occ, return_dtype=pl.Float64)).alias("mean")
    )
    agg = agg.sort(["w", "layer", "mean", "factor"], descending=[False, False, True, False])
    agg = agg.with_columns(pl.int_range(1, pl.len() + 1).over(["w", "layer"]).alias("r")).filter(
        pl.col("r") <= WORD_TOP
    )
    got = data["word_factors"].sort(
        ["word", "layer", "mean_alpha", "factor"], descending=[False, False, True, False]
    )
    assert got.height == agg.height
    assert got["factor"].to_list() == agg["factor"].to_list()
    assert got["hits"].to_list() == agg["hits"].to_list()
    assert np.allclose(got["mean_alpha"].to_numpy(), agg["mean"].to_numpy())


def test_histogram_matches_brute_force(data):
    codes = data["codes"]
    bins = np.floor(np.log2(codes["alpha"].to_numpy().astype(np.float64)) * 4).astype(int)
    expected = (
        codes.with_columns(pl.Series("bin", bins, dtype=pl.Int32))
        .group_by(["factor", "layer", "bin"])
        .len()
    )
    expected = {(f, layer, b): n for f, layer, b, n in expected.rows()}
    got = {
        (f, layer, b): n
        for f, layer, b, n in data["factor_histogram"]
        .select("factor", "layer", "bin", "count")
        .rows()
    }
    assert got == expected
    row = data["factor_histogram"].row(0, named=True)
    assert row["bin_low"] == pytest.approx(2 ** (row["bin"] / 4))


def test_neighbors_match_brute_force(data):
    atoms = np.array(data["dictionary_atoms"].sort("factor")["vector"].to_list(), dtype=np.float64)
    cos = atoms @ atoms.T
    top = data["factor_top_contexts"]
    sets = {f: set(g["token_id"].to_list()) for (f,), g in top.group_by(["factor"])}
    got = data["factor_neighbors"]
    for f, g, c, co in got.rows():
        assert f != g
        assert c == pytest.approx(cos[f, g], abs=1e-5)
        a, b = sets.get(f, set()), sets.get(g, set())
        union = len(a | b)
        assert co == pytest.approx(len(a & b) / union if union else 0.0)
    for f in range(atoms.shape[0]):
        order = np.argsort(-np.where(np.arange(atoms.shape[0]) == f, -np.inf, cos[f]))
        mine = set(got.filter(pl.col("factor") == f)["neighbor"].to_list())
        assert set(order[:4].tolist()) <= mine


def test_auto_labels_are_top_words_at_the_peak(data):
    levels = dict((f, p) for f, p, _ in data["factor_levels"].rows())
    labels = data["factor_labels"].filter(pl.col("source") == "auto")
    assert labels.height == len(levels)
    top = data["factor_top_contexts"]
    for factor, label, _ in labels.rows()[:10]:
        rows = top.filter((pl.col("factor") == factor) & (pl.col("layer") == levels[factor]))
        words = rows.sort("rank")["word"].str.to_lowercase().to_list()
        counts = {w: words.count(w) for w in words}
        best = sorted(counts, key=lambda w: (-counts[w], words.index(w)))[:3]
        assert label == " / ".join(best)
