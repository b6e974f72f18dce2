"""The typed query functions the app calls."""

from __future__ import annotations

import polars as pl
import pytest

from factorscope.errors import InputError, WarehouseError
from factorscope.warehouse import queries as q
from factorscope.warehouse.synthetic import build_synthetic_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "q.duckdb"
    build_synthetic_db(path, n_sentences=100, n_factors=32, hidden_size=8, seed=2)
    return path


@pytest.fixture()
def con(db):
    with q.WarehouseReader(db).connect() as c:
        yield c


def test_overview(con):
    info = q.run_overview(con)
    assert info["n_factors"] == 32 and info["n_layers"] == 7 and info["n_sentences"] == 100
    assert sum(info["level_counts"].values()) > 0
    assert q.dictionary_size(con) == 32
    assert q.layers(con) == list(range(7))


@pytest.mark.parametrize(
    ("factor", "message"),
    [(-1, "0..31"), (32, "factor 32 does not exist"), ("3", "integer"), (2.0, "integer")],
)
def test_bad_factor(con, factor, message):
    with pytest.raises(InputError, match=message):
        q.top_contexts(con, factor, 0)


def test_bad_layer(con):
    with pytest.raises(InputError, match=r"layer 9 does not exist: this run has layers 0\.\.6"):
        q.top_contexts(con, 0, 9)


def test_top_contexts_beyond_the_materialised_list_agree(con):
    factor = int(q.random_factor(con, "mid", seed=1))
    layer = q.factor_level(con, factor)["peak_layer"]
    head = q.top_contexts(con, factor, layer, k=50)
    wide = q.top_contexts(con, factor, layer, k=260)
    assert head.columns == wide.columns
    assert head.equals(wide.head(50))
    page = q.top_contexts(con, factor, layer, k=20, offset=190)
    assert page["rank"].to_list() == wide["rank"].to_list()[190:210]
    assert page.drop("alpha").equals(wide.slice(190, 20).drop("alpha"))


def test_importance_level_and_random(con):
    curve = q.importance_curve(con, 0)
    assert curve["layer"].to_list() == list(range(7))
    level = q.factor_level(con, 0)
    assert level is None or level["peak_layer"] == int(curve["importance"].arg_max())
    counts = q.level_counts(con)
    assert set(counts) == {"low", "mid", "high"}
    assert q.random_factor(con, "low", seed=3) == q.random_factor(con, "low", seed=3)
    with pytest.raises(InputError):
        q.random_factor(con, "top")


def test_words_histogram_intervals_neighbors(con):
    frame = q.word_factors(con, " The ", limit=5)
    assert frame.height == 5 and set(frame["word"]) == {"the"}
    assert frame["mean_alpha"].is_sorted(descending=True)
    assert q.word_factors(con, "the", layer=2)["layer"].unique().to_list() == [2]
    hist = q.factor_histogram(con, 5, 3, bins=10)
    assert hist.columns == ["bin_low", "bin_high", "count"]
    n = con.execute("SELECT count(*) FROM codes WHERE factor = 5 AND layer = 3").fetchall()[0][0]
    assert hist["count"].sum() == n
    samples = q.interval_samples(con, 5, 3, n_intervals=4, per_interval=3)
    assert samples.height <= 12 and samples["interval"].max() == 3
    assert samples.equals(q.interval_samples(con, 5, 3, n_intervals=4, per_interval=3))
    neighbors = q.factor_neighbors(con, 5, limit=3)
    assert neighbors.columns == ["neighbor", "cosine", "coactivation"]
    assert neighbors["cosine"].is_sorted(descending=True)


def test_labels_round_trip(db):
    reader = q.WarehouseReader(db)
    with reader.connect() as con:
        auto = q.factor_label(con, 4)
    assert auto["source"] == "auto"
    q.set_label(db, 4, "  the   left hand ")
    with reader.connect() as con:
        assert q.factor_label(con, 4)["label"] == "the left hand"
        bulk = q.factor_labels(con, [4, 5])  # one query: the user's label wins
        assert bulk[4] == "the left hand"
        assert bulk.get(5) == (q.factor_label(con, 5) or {}).get("label")
        found = q.search_labels(con, "LEFT HAND")
        assert found.filter(pl.col("source") == "user")["factor"].to_list() == [4]
    q.set_label(db, 4, "")
    with reader.connect() as con:
        assert q.factor_label(con, 4)["source"] == "auto"
    with pytest.raises(InputError):
        q.set_label(db, 99, "nope")


def test_lime_cache_and_token_context(db):
    q.lime_cache_put(
        db,
        "k1",
        factor=1,
        layer=2,
        sentence_idx=3,
        word_index=1,
        n_samples=10,
        result={"weights": [["left", 0.5]]},
    )
    with q.WarehouseReader(db).connect() as con:
        assert q.lime_cache_get(con, "k1")["result"] == {"weights": [["left", 0.5]]}
        assert q.lime_cache_get(con, "nope") is None
        ctx = q.token_context(con, 3)
        assert ctx["tokens"][0]["word"] == ctx["text"].split()[0]
        with pytest.raises(InputError, match="sentence 1000 does not exist"):
            q.token_context(con, 1000)
        assert q.layer_quality(con).height == 7


def test_missing_file(tmp_path):
    reader = q.WarehouseReader(tmp_path / "none.duckdb")
    with pytest.raises(WarehouseError, match="no database"), reader.connect():
        pass


def test_status_storage_accounts_for_the_file(tiny_pipeline_db) -> None:
    """Bytes per code row and per token come from the file's real blocks."""
    from factorscope.warehouse.connection import connect
    from factorscope.warehouse.status import database_status

    st = database_status(tiny_pipeline_db)["published"]["storage"]
    assert st["file_bytes"] == tiny_pipeline_db.stat().st_size
    assert 0.0 <= st["free_share"] < 1.0
    tables = st["table_bytes"]
    assert tables["codes"] > 0 and tables["tokens"] > 0
    assert sum(tables.values()) + st["summary_bytes"] <= st["file_bytes"]
    con = connect(tiny_pipeline_db, read_only=True)
    try:
        n_codes, n_tokens = con.sql(
            "SELECT (SELECT count(*) FROM codes), count(*) FROM tokens"
        ).fetchall()[0]
    finally:
        con.close()
    assert st["bytes_per_code_row"] == tables["codes"] / n_codes
    assert st["bytes_per_token"] == st["file_bytes"] / n_tokens


def test_the_factor_page_reads_stored_interval_samples_equal_to_the_live_draw(
    tiny_pipeline_db,
) -> None:
    """summary_intervals (drawn at refresh) gives the rows the live query draws, exactly."""
    from factorscope.warehouse import queries
    from factorscope.warehouse.connection import connect

    con = connect(tiny_pipeline_db, read_only=True)
    try:
        pairs = con.sql(
            "SELECT DISTINCT factor, layer FROM factor_intervals ORDER BY ALL LIMIT 12"
        ).fetchall()
        assert len(pairs) == 12
        for factor, layer in pairs:
            stored = queries.factor_page(con, factor, layer)["intervals"]
            live = queries.interval_samples(con, factor, layer)
            assert stored.columns == live.columns
            assert stored.drop("alpha").rows() == live.drop("alpha").rows()
            assert stored["alpha"].to_list() == pytest.approx(live["alpha"].to_list())
        # other counts than the refresh stored are drawn live
        other = queries.factor_page(con, pairs[0][0], pairs[0][1], n_intervals=3)["intervals"]
        assert other["interval"].max() <= 2
    finally:
        con.close()
