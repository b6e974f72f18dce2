"""Several encoded dictionaries in one warehouse: codes, summaries and labels keyed by
dictionary, the public views on the active one, and migrating a version-2 file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from factorscope.cli import main
from factorscope.warehouse import queries
from factorscope.warehouse.connection import WRITE_CONFIG, connect, migrations
from tests.conftest import TINY_FACTORS, copy_db
from tests.contract import assert_tables_match
from tests.test_cli_errors import assert_one_line_error, run_cli


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_encoded(tiny_pipeline_db, tmp_path_factory) -> Path:
    """The tiny pipeline (dictionary 1 encoded, factor 3 labelled) plus dictionary 2
    (24 factors, seed 1) learned and encoded by the real CLI."""
    db = copy_db(tiny_pipeline_db, tmp_path_factory.mktemp("two"))
    queries.set_label(db, 3, "label of dictionary one")
    assert main(["learn", "--db", str(db), "-m", "24", "--seed", "1", "--lambda", "0.05"]) == 0
    assert main(["encode", "--db", str(db), "--dictionary", "2"]) == 0
    return db


def test_encoding_another_dictionary_keeps_the_first_ones_codes_and_summaries(
    tiny_pipeline_db, two_encoded
):
    before = _rows(tiny_pipeline_db, "SELECT count(*), sum(alpha) FROM codes")[0]
    by_dictionary = dict(
        _rows(two_encoded, "SELECT dictionary_id, count(*) FROM codes GROUP BY ALL")
    )
    assert set(by_dictionary) == {1, 2} and by_dictionary[1] == before[0]
    for table in ("summary_importance", "summary_top_contexts", "summary_levels", "auto_labels"):
        kept = _rows(two_encoded, f"SELECT DISTINCT dictionary_id FROM {table} ORDER BY 1")
        assert kept == [(1,), (2,)], table
    # dictionary 1's summaries are those of the one-dictionary file, row for row
    assert_tables_match(
        _frame(tiny_pipeline_db, "SELECT * FROM factor_importance_all ORDER BY ALL"),
        _frame(
            two_encoded, "SELECT * FROM factor_importance_all WHERE dictionary_id = 1 ORDER BY ALL"
        ),
        name="factor_importance of dictionary 1",
        key=["factor", "layer"],
    )


def _frame(db: Path, sql: str):
    con = connect(db, read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def test_the_views_show_the_last_encoded_dictionary_and_any_other_on_request(two_encoded):
    assert _rows(two_encoded, "SELECT dictionary_id FROM active_dictionary") == [(2,)]
    assert _rows(two_encoded, "SELECT DISTINCT dictionary_id FROM factor_levels") == [(2,)]
    assert _rows(two_encoded, "SELECT max(factor) FROM factor_levels")[0][0] < 24
    reader = queries.WarehouseReader(two_encoded)
    with reader.connect(dictionary_id=1) as con:
        assert queries.active_dictionary_id(con) == 1
        assert queries.dictionary_size(con) == TINY_FACTORS
        one = con.execute("SELECT count(*) FROM factor_levels").fetchall()[0][0]
    with reader.connect() as con:
        assert queries.active_dictionary_id(con) == 2
        assert [d["dictionary_id"] for d in queries.encoded_dictionaries(con)] == [1, 2]
    all_one = _rows(two_encoded, "SELECT count(*) FROM factor_levels_all WHERE dictionary_id = 1")
    assert one == all_one[0][0] > 0
    reader.close()


def test_labels_stay_on_their_own_dictionary_across_a_new_encode(two_encoded):
    assert _rows(two_encoded, "SELECT dictionary_id, factor, label FROM user_labels") == [
        (1, 3, "label of dictionary one")
    ]
    # the active dictionary (2) shows no user label on its factor 3
    assert _rows(two_encoded, "SELECT count(*) FROM factor_labels WHERE source = 'user'") == [(0,)]
    reader = queries.WarehouseReader(two_encoded)
    with reader.connect(dictionary_id=1) as con:
        assert queries.factor_label(con, 3)["label"] == "label of dictionary one"
    with reader.connect() as con:
        assert queries.factor_label(con, 3)["source"] == "auto"
    reader.close()


def test_a_label_set_on_another_dictionary_is_kept_there(two_encoded, tmp_path):
    db = copy_db(two_encoded, tmp_path)
    queries.set_label(db, 5, "second", dictionary_id=2)
    queries.set_label(db, 5, "first", dictionary_id=1)
    assert _rows(
        db, "SELECT dictionary_id, label FROM user_labels WHERE factor = 5 ORDER BY 1"
    ) == [
        (1, "first"),
        (2, "second"),
    ]


def test_compare_of_two_encoded_dictionaries_has_peak_layers(two_encoded, tmp_path, capsys):
    db = copy_db(two_encoded, tmp_path)
    code, out, err = run_cli(capsys, "compare", "1", "2", "--db", db)
    assert code == 0, err
    assert "matched pairs with the same IS peak layer" in out
    row = _rows(db, "SELECT peak_agreement, level_agreement FROM comparisons")[0]
    assert 0 <= row[0] <= 1 and 0 <= row[1] <= 1
    filled = _rows(
        db,
        "SELECT count(*) FROM comparison_matches m JOIN factor_levels_all a "
        "ON a.dictionary_id = 1 AND a.factor = m.factor_a AND a.peak_layer = m.peak_layer_a "
        "WHERE m.method = 'cosine'",
    )[0][0]
    assert filled > 0


def test_picking_an_unencoded_dictionary_is_one_clear_error(two_encoded, tmp_path, capsys):
    db = copy_db(two_encoded, tmp_path)
    assert main(["learn", "--db", str(db), "-m", "16", "--lambda", "0.05"]) == 0
    reader = queries.WarehouseReader(db)
    with pytest.raises(Exception, match="not encoded here; encoded: 1, 2"), reader.connect(3):
        pass
    reader.close()
    code, _, err = run_cli(capsys, "encode", "--db", db, "--dictionary", "9")
    assert_one_line_error(code, err, "no dictionary with id 9")


# ----------------------------------------------------------------------------- migration

# The summary tables as main's files created them at schema version 2 (not keyed).
_V2_SUMMARY_TABLES = """
CREATE TABLE summary_importance (factor INTEGER NOT NULL, layer SMALLINT NOT NULL,
    importance DOUBLE NOT NULL, n_active BIGINT NOT NULL, max_alpha FLOAT NOT NULL);
CREATE TABLE summary_levels (factor INTEGER PRIMARY KEY, peak_layer SMALLINT NOT NULL,
    level VARCHAR NOT NULL);
CREATE TABLE auto_labels (factor INTEGER PRIMARY KEY, label VARCHAR NOT NULL);
"""

LATEST = max(version for version, _name, _sql in migrations())

_COPIED = {
    "runs": "* EXCLUDE (n_segments, n_resplit, n_resplit_into)",
    "sentences": "* EXCLUDE (metadata)",
    "tokens": "*",
    "hidden_states": "*",
    "ingest_chunks": "*",
    "dictionaries": "* EXCLUDE (encoded_at, kind, parent_id, encode_solver)",
    "dictionary_atoms": "*",
    "codes": "layer, factor, token_id, alpha",
    "encode_chunks": "*",
    "encode_chunk_stats": "*",
    "layer_quality": "*",
    "summary_importance": "factor, layer, importance, n_active, max_alpha",
    "summary_levels": "factor, peak_layer, level",
    "auto_labels": "factor, label",
    "summary_meta": "key, value",
}


def _version_2_file(source: Path, target: Path) -> None:
    """``source``'s run in a file of schema version 2 (as main wrote it), with a label."""
    con = duckdb.connect(str(target), config=dict(WRITE_CONFIG))
    try:
        for version, _name, sql in migrations():
            if version <= 2:
                con.execute(sql)
        con.execute(_V2_SUMMARY_TABLES)
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(source)])
        for table, columns in _COPIED.items():
            where = " WHERE dictionary_id = 1" if table in ("summary_meta",) else ""
            # Names from the fixed table above.
            con.execute(f"INSERT INTO main.{table} SELECT {columns} FROM src.{table}{where}")
        con.execute("INSERT INTO user_labels (factor, label) VALUES (3, 'kept'), (7, 'also')")
        con.execute("DETACH src")
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(2,)]
    finally:
        con.close()


def test_migrating_a_version_2_file_keeps_codes_labels_and_summaries(tiny_pipeline_db, tmp_path):
    old = tmp_path / "old.duckdb"
    _version_2_file(tiny_pipeline_db, old)
    before = duckdb.connect(str(old), read_only=True)
    n_codes, alpha_sum = before.execute("SELECT count(*), sum(alpha) FROM codes").fetchall()[0]
    before.close()
    connect(old).close()  # a writer's connection migrates
    assert _rows(old, "SELECT max(version) FROM schema_version") == [(LATEST,)]
    assert _rows(old, "SELECT dictionary_id, count(*), sum(alpha) FROM codes GROUP BY ALL") == [
        (1, n_codes, pytest.approx(alpha_sum))
    ]
    assert _rows(old, "SELECT dictionary_id, factor, label FROM user_labels ORDER BY factor") == [
        (1, 3, "kept"),
        (1, 7, "also"),
    ]
    # the summaries, recreated keyed, are refilled: the documented queries give the same rows
    for sql in (
        "SELECT factor, peak_layer, level FROM factor_levels ORDER BY factor",
        "SELECT factor, layer, rank, token_id FROM factor_top_contexts ORDER BY ALL",
        "SELECT factor, label FROM factor_labels WHERE source = 'auto' ORDER BY factor",
    ):
        assert _rows(old, sql) == _rows(tiny_pipeline_db, sql), sql
    assert _rows(old, "SELECT label FROM factor_labels WHERE source = 'user' AND factor = 3") == [
        ("kept",)
    ]


def test_publishing_over_a_version_2_file_keeps_its_labels(tiny_pipeline_db, tmp_path, capsys):
    old = tmp_path / "old.duckdb"
    _version_2_file(tiny_pipeline_db, old)
    code, _, err = run_cli(capsys, "learn", "--db", old, "-m", "16", "--lambda", "0.05")
    assert code == 0, err
    assert _rows(old, "SELECT dictionary_id, factor, label FROM user_labels ORDER BY factor") == [
        (1, 3, "kept"),
        (1, 7, "also"),
    ]


def test_a_reader_command_upgrades_a_version_2_file_once(tiny_pipeline_db, tmp_path, capsys):
    """sql / export / report / serve read files read-only, so they migrate an old one first."""
    old = tmp_path / "old.duckdb"
    _version_2_file(tiny_pipeline_db, old)
    code, out, err = run_cli(capsys, "sql", "SELECT count(*) AS n FROM factor_levels", "--db", old)
    assert code == 0, err
    assert "upgraded" in err and f"from schema version 2 to {LATEST}" in err
    n_levels = _rows(tiny_pipeline_db, "SELECT count(*) FROM factor_levels")[0][0]
    assert str(n_levels) in out  # the view reads the migrated, refilled summaries
    assert _rows(old, "SELECT max(version) FROM schema_version") == [(LATEST,)]
    assert _rows(old, "SELECT label FROM factor_labels WHERE source = 'user' AND factor = 3") == [
        ("kept",)
    ]
    stamp = old.stat().st_mtime_ns
    code, _, err = run_cli(capsys, "sql", "SELECT 1 AS one", "--db", old)
    assert code == 0 and "upgraded" not in err
    assert old.stat().st_mtime_ns == stamp  # a current file is not touched


# ----------------------------------------------------------------------------- the app


def test_the_app_reads_the_dictionary_of_the_url_and_caches_per_dictionary(two_encoded):
    from factorscope.dash_app import logic

    logic.PAGE_CACHE.clear()
    with logic.dictionary_scope("1"):
        one = logic.factor_view(two_encoded, 3, 1)
        assert logic.factor_href(3, 1) == "/factor/3?layer=1&dictionary=1"
        assert [d["dictionary_id"] for d in logic.encoded_dictionaries(two_encoded)] == [1, 2]
    default = logic.factor_view(two_encoded, 3, 1)
    assert logic.factor_href(3, 1) == "/factor/3?layer=1"
    assert (one.dictionary_id, one.n_factors, one.label) == (
        1,
        TINY_FACTORS,
        "label of dictionary one",
    )
    assert (default.dictionary_id, default.n_factors) == (2, 24)
    assert default.label != one.label
    keys = {key[2] for key in logic.PAGE_CACHE._views}
    assert keys == {1, 2}  # one cached view per dictionary, never the other's
    with logic.dictionary_scope("1"):
        assert logic.factor_view(two_encoded, 3, 1) is one
        logic.save_label(two_encoded, 3, "renamed in one")
        assert logic.factor_view(two_encoded, 3, 1).label == "renamed in one"
        queries.set_label(two_encoded, 3, "label of dictionary one", dictionary_id=1)
    with pytest.raises(Exception, match="not a dictionary id"), logic.dictionary_scope("x"):
        pass


def test_lime_and_analysis_use_the_dictionary_of_the_page(two_encoded):
    """A factor page of dictionary 1 explains dictionary 1's factor, not the active one's."""
    from factorscope import saliency
    from factorscope.dash_app.config import AppConfig

    cfg = AppConfig(db_path=two_encoded)
    one, active = cfg.analyzer(1), cfg.analyzer()
    assert (one.dictionary_id, one.n_factors) == (1, TINY_FACTORS)
    assert (active.dictionary_id, active.n_factors) == (2, 24)
    assert cfg.analyzer(1) is one  # kept, one per dictionary
    text = _rows(two_encoded, "SELECT text FROM sentences ORDER BY sentence_idx LIMIT 1")[0][0]
    result = saliency.explain_cached(two_encoded, one, text, 0, 1, 3, n_samples=20)
    assert result["cached"] is False
    assert _rows(two_encoded, "SELECT DISTINCT dictionary_id FROM lime_cache") == [(1,)]


@pytest.mark.browser
@pytest.mark.slow
def test_the_picker_switches_dictionary_and_the_url_carries_it(two_encoded, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    from tests.live import CHROMIUM, chromium_browser, console_page, start_serve, stop

    if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
        pytest.fail("no /usr/bin/chromium: run `make setup-test`", pytrace=False)
    proc, base = start_serve(two_encoded, tmp_path / "serve.log")
    try:
        with chromium_browser() as browser, console_page(browser) as pg:
            pg.goto(f"{base}/factor/3?layer=1&dictionary=1", wait_until="networkidle")
            pg.locator("#factor-is-graph .js-plotly-plot").wait_for()
            assert pg.locator("#factor-label-input").input_value() == "label of dictionary one"
            assert pg.locator(".alert-danger").count() == 0
            # a layer button keeps the dictionary in the URL
            pg.locator("#factor-layer-select label").get_by_text("2", exact=True).click()
            pg.wait_for_url(f"{base}/factor/3?layer=2&dictionary=1")
            # the picker lists the encoded dictionaries and navigates to the chosen one
            options = pg.locator(".dash-dropdown-options [role=option]")  # a portal menu
            # The layer click re-renders the page: a click that lands on the picker
            # being replaced opens nothing, so open it again (three tries).
            pg.wait_for_load_state("networkidle")
            for attempt in range(3):
                pg.locator("#dictionary-select").click()
                try:
                    options.first.wait_for(timeout=5_000)
                    break
                except PlaywrightTimeout:
                    if attempt == 2:
                        raise
            assert options.count() == 2, options.all_inner_texts()
            options.filter(has_text="dictionary 2").first.click()
            pg.wait_for_url("**dictionary=2**")
            factor = pg.url.split("/factor/")[1].split("?")[0]
            expect(pg.locator("#factor-input")).to_have_value(factor)
            expect(pg.locator("#factor-label-input")).not_to_have_value("label of dictionary one")
            expect(pg.locator("#dictionary-select")).to_contain_text("dictionary 2")
            assert pg.locator(".alert-danger").count() == 0
            assert pg.console_errors == [], pg.console_errors
    finally:
        stop([proc])
