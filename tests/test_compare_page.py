"""The Compare page over a database built by the real CLI: ingest (tiny BERT), learn two
seeds in one command, encode both, compare; then `factorscope serve` and Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factorscope.cli import main
from factorscope.dash_app import logic
from tests.conftest import copy_db
from tests.test_cli_errors import tiny_run_args


@pytest.fixture(scope="module")
def compared_cli_db(tmp_path_factory, sentence_corpus, tiny_model_dir) -> Path:
    db = tmp_path_factory.mktemp("compare-page") / "run.duckdb"
    steps = [
        ["ingest", "--db", str(db), *tiny_run_args(sentence_corpus, tiny_model_dir)],
        ["learn", "--db", str(db), "-m", "24", "--seed", "0,1", "--lambda", "0.05"],
        ["encode", "--db", str(db), "--dictionary", "1"],
        ["encode", "--db", str(db), "--dictionary", "2"],
        ["compare", "1", "2", "--db", str(db)],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    return db


def _page_text(db: Path, **query: str) -> str:
    """The Compare page's layout for ``query`` over ``db``, as the text it renders."""
    import json

    import dash

    from factorscope.dash_app import create_app

    create_app(db, lime_auto_contexts=0)
    pages = {page["path"]: page for page in dash.page_registry.values()}
    rendered = pages["/compare"]["layout"](**query)
    return json.dumps(rendered.to_plotly_json(), default=lambda o: o.to_plotly_json())


def test_without_comparisons_the_page_names_the_command(tiny_pipeline_db, tmp_path):
    db = copy_db(tiny_pipeline_db, tmp_path)
    text = _page_text(db)
    assert "No comparison in this database yet" in text
    assert f"factorscope compare A B --db {db}" in text


def test_a_pair_not_compared_names_its_command(compared_cli_db):
    text = _page_text(compared_cli_db, a="2", b="1")
    assert "factorscope compare 2 1" in text and "Mean matched cosine" not in text
    text = _page_text(compared_cli_db, a="1", b="2", factor="99")
    assert "Mean matched cosine" in text and "does not exist" in text


def test_the_side_by_side_view_reads_both_dictionaries(compared_cli_db):
    pair = logic.compare_pair(compared_cli_db, 1, 2)
    assert pair["summary"]["n_matched"] == 24 and len(pair["cosines"]) == 24
    factor = int(pair["matches"]["factor_a"][0])
    view = logic.compare_factor(compared_cli_db, 1, 2, factor)
    assert view["matched"] and view["factor_b"] == int(pair["matches"]["factor_b"][0])
    assert view["a"]["dictionary"] == 1 and view["b"]["dictionary"] == 2
    assert view["a"]["encoded"] and view["b"]["encoded"]
    assert view["a"]["top"].height > 0 and view["b"]["importance"].height == 3
    with pytest.raises(Exception, match="have not been compared"):
        logic.compare_pair(compared_cli_db, 2, 1)


@pytest.mark.browser
@pytest.mark.slow
def test_the_compare_page_and_a_matched_pair_in_the_browser(compared_cli_db, tmp_path):
    from playwright.sync_api import expect

    from tests.live import CHROMIUM, chromium_browser, console_page, start_serve, stop

    if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
        pytest.fail("no /usr/bin/chromium: run `make setup-test`", pytrace=False)
    proc, base = start_serve(compared_cli_db, tmp_path / "serve.log")
    try:
        with chromium_browser() as browser, console_page(browser) as pg:
            pg.goto(f"{base}/factor/0", wait_until="networkidle")
            pg.locator("#nav-compare").click()
            expect(pg).to_have_url(f"{base}/compare")
            expect(pg.locator("#compare-list")).to_contain_text("1 ↔ 2")
            expect(pg.locator("#compare-stats")).to_contain_text("Mean matched cosine")
            pg.locator("#compare-hist .js-plotly-plot").wait_for()
            expect(pg.locator("#compare-splits")).to_be_visible()
            # a matched pair, side by side
            pg.locator("#compare-pairs").get_by_text("side by side").first.click()
            expect(pg).to_have_url(re.compile(r".*/compare\?a=1&b=2&factor=\d+$"))
            expect(pg.locator("#compare-feedback")).to_contain_text("matched one-to-one")
            side = pg.locator("#compare-side")
            expect(side.locator(".js-plotly-plot")).to_have_count(2)
            expect(side.locator(".fs-contexts")).to_have_count(2)
            assert pg.locator(".alert-danger").count() == 0
            # the B factor's link opens its own dictionary's factor page
            side.locator("a[href*='dictionary=2']").first.click()
            expect(pg).to_have_url(re.compile(r".*/factor/\d+\?dictionary=2$"))
            pg.locator("#factor-is-graph .js-plotly-plot").wait_for()
            expect(pg.locator("#dictionary-select")).to_contain_text("dictionary 2")
            assert pg.locator(".alert-danger").count() == 0
            assert pg.console_errors == [], pg.console_errors
    finally:
        stop([proc])
