"""Browser smoke tests: the real app in a subprocess, driven by headless Debian Chromium.

Each page is opened, used as a person would, screenshotted into SCREENSHOTS, and the
browser console must stay free of errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import CHROMIUM, chromium_browser, console_page, free_port, stop, wait_until_serving

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000

if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.skip("Debian chromium is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


SERVER_SCRIPT = """
import sys
from factorscope.dash_app import serve
serve(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), lime_default_samples=40)
"""


@pytest.fixture
def start_server(tmp_path: Path):
    """Start ``serve(db)`` in a subprocess; returns the base URL. Stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(db: Path) -> str:
        port = free_port()
        log = (tmp_path / f"server-{port}.log").open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(db), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(proc, url, tmp_path / log.name, timeout_s=60)
        return url

    yield start
    stop(procs)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    """A fresh page that records console errors; the test must call ``check_console``."""
    with console_page(browser, timeout_ms=TIMEOUT_MS) as pg:
        yield pg


def check_console(pg) -> None:
    assert pg.console_errors == [], pg.console_errors


def shot(pg, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from factorscope.warehouse.synthetic import build_synthetic_db

    path = tmp_path_factory.mktemp("browser") / "synthetic.duckdb"
    return build_synthetic_db(path, n_sentences=600, n_layers=5, n_factors=128)


def _busy_factor(db: Path) -> tuple[int, int]:
    from factorscope.dash_app import logic
    from factorscope.warehouse.queries import WarehouseReader

    try:
        for factor in range(128):
            view = logic.factor_view(db, factor)
            if view.total_contexts == logic.TOP_CONTEXTS and view.level != "high":
                return factor, view.layer
    finally:
        # The reader keeps one connection per process; let the server's label save write.
        WarehouseReader(db).close()
    raise AssertionError("no busy factor")


def _wait_rows(pg, n: int) -> None:
    pg.wait_for_function(
        f"document.querySelectorAll('#factor-contexts-table tr.fs-context-row').length === {n}"
    )


def test_factor_explorer(start_server, page, syn_db):
    factor, layer = _busy_factor(syn_db)
    base = start_server(syn_db)
    pg = page

    pg.goto(f"{base}/factor/{factor}?layer={layer}")
    pg.get_by_role("heading", name=re.compile(f"Factor {factor}")).wait_for()
    pg.locator("#factor-is-graph .js-plotly-plot .scatterlayer").wait_for()
    pg.locator("#factor-hist-graph .js-plotly-plot").wait_for()
    assert pg.locator("#factor-contexts-total").inner_text() == "200 contexts"

    # 200 contexts, 50 a page, each with its word highlighted.
    seen = 0
    for number in range(1, 5):
        if number > 1:
            pg.locator("#factor-contexts-page").get_by_text(str(number), exact=True).click()
            pg.wait_for_function(
                "document.querySelector('#factor-contexts-table td.fs-rank')"
                f".textContent === '{(number - 1) * 50 + 1}'"
            )
        _wait_rows(pg, 50)
        seen += pg.locator("#factor-contexts-table tr.fs-context-row").count()
        assert pg.locator("#factor-contexts-table mark").count() == 50
    assert seen == 200
    shot(pg, "factor")

    # Bad input: a message, no navigation.
    box = pg.locator("#factor-input")
    for raw, message in (
        ("abc", "is not a factor number"),
        ("-4", "negative"),
        ("99999", "does not exist"),
    ):
        box.fill(raw)
        box.press("Enter")
        pg.locator("#factor-feedback").get_by_text(re.compile(message)).wait_for()
    assert pg.url.endswith(f"/factor/{factor}?layer={layer}")
    shot(pg, "factor-bad-input")

    # Label editing.
    pg.locator("#factor-label-input").fill("the browser's label")
    pg.locator("#factor-label-save").click()
    pg.wait_for_function("document.querySelector('#factor-label-feedback').textContent !== ''")
    assert pg.locator("#factor-label-feedback").inner_text() == f"Saved label of factor {factor}."

    # A good one navigates, to the factor's peak layer.
    box.fill("5")
    pg.locator("#factor-go").click()
    pg.wait_for_url(re.compile(r"/factor/5$"))
    pg.get_by_role("heading", name=re.compile("Factor 5")).wait_for()

    # Switch layers.
    other = (
        "0"
        if pg.locator("#factor-layer-select input:checked").get_attribute("value") != "0"
        else "1"
    )
    pg.locator("#factor-layer-select label").get_by_text(other, exact=True).click()
    pg.wait_for_url(re.compile(rf"/factor/5\?layer={other}$"))
    pg.get_by_text(f"Top contexts at layer {other}").wait_for()

    # Random high-level factor.
    pg.locator("#factor-random-high").click()
    pg.wait_for_function("location.search === ''")
    pg.locator("h3 .badge").get_by_text("high level").wait_for()
    pg.locator("#factor-is-graph .js-plotly-plot").wait_for()
    shot(pg, "factor-random-high")

    # Home shows a factor too; a bad URL shows a message.
    pg.goto(f"{base}/")
    pg.get_by_role("heading", name=re.compile(r"Factor \d+")).wait_for()
    pg.goto(f"{base}/factor/banana")
    pg.get_by_text("is not a factor number").wait_for()
    check_console(pg)


def _auto_labelled_factor(db: Path) -> tuple[int, str, int]:
    """(factor, automatic label, peak layer) of a factor without a user's label."""
    from factorscope.dash_app import logic
    from factorscope.warehouse.queries import WarehouseReader

    try:
        for factor in range(128):
            view = logic.factor_view(db, factor)
            if view.auto_label and view.user_label is None and view.peak_layer is not None:
                return factor, view.auto_label, view.peak_layer
    finally:
        WarehouseReader(db).close()
    raise AssertionError("no factor with only an automatic label")


def shot_of(locator, name: str) -> None:
    """A screenshot of one part of the page (what an issue's item is about)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _is_point(pg, layer: int) -> tuple[float, float]:
    """Page coordinates of the IS curve's point at ``layer`` (the curve is trace 0)."""
    point = pg.locator("#factor-is-graph .scatterlayer .trace").first.locator("path.point")
    box = point.nth(layer).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_factor_page_labels_intervals_and_is_clicks(start_server, page, syn_db):
    """Issue 22's factor page items: the automatic label beside an empty Label box, the
    label limit, interval bounds, and the IS curve's hover and click."""
    factor, auto, peak = _auto_labelled_factor(syn_db)
    base = start_server(syn_db)
    pg = page
    pg.goto(f"{base}/factor/{factor}")
    pg.get_by_role("heading", name=re.compile(f"Factor {factor}")).wait_for()

    # The Label box holds only a user's label; the automatic one is beside it, marked.
    box = pg.locator("#factor-label-input")
    assert box.input_value() == ""
    assert "up to 200 characters" in box.get_attribute("placeholder")
    assert box.get_attribute("maxlength") is None
    marked = pg.locator("#factor-label-auto")
    assert marked.inner_text() == f"auto: {auto}"
    assert "not reviewed" in marked.get_attribute("title")

    # Interval headers give the interval's bounds and how many contexts fall in it.
    headers = pg.locator("#factor-intervals h6").all_inner_texts()
    assert headers and all(re.search(r"α in [\[(][\d.]+, [\d.]+[\])]", h) for h in headers)
    assert all(re.search(r"[\d,]+ contexts?", h) for h in headers)
    shot(pg, "issue22-factor-page")
    shot_of(box.locator("xpath=ancestor::div[contains(@class, 'row')][1]"), "issue22-auto-label")
    shot_of(pg.locator("#factor-intervals"), "issue22-interval-bounds")

    # A label over the limit is refused (pasted whole, not cut by the browser).
    box.fill("z" * 600)
    assert pg.locator("#factor-label-count").inner_text() == "600 / 200"
    pg.locator("#factor-label-save").click()
    feedback = pg.locator("#factor-label-feedback")
    feedback.get_by_text("label is too long (600 > 200 characters): shorten it").wait_for()
    assert "text-danger" in feedback.get_attribute("class")
    shot_of(
        box.locator("xpath=ancestor::div[contains(@class, 'row')][1]"), "issue22-label-too-long"
    )

    # The IS curve: hovering a point names its layer and IS; clicking it shows that layer.
    pg.locator("#factor-is-graph .scatterlayer .trace path.point").first.wait_for()
    other = 0 if peak != 0 else 1
    pg.mouse.move(*_is_point(pg, other))
    hover = pg.locator("#factor-is-graph .hoverlayer .hovertext").first
    hover.wait_for()
    # the tooltip is SVG text (no innerText)
    assert re.fullmatch(rf"layer {other} · IS \d+\.\d{{3}}", hover.text_content().strip())
    shot_of(pg.locator("#factor-is-graph"), "issue22-is-hover")
    pg.mouse.click(*_is_point(pg, other))
    pg.wait_for_url(re.compile(rf"/factor/{factor}\?layer={other}$"))
    pg.get_by_text(f"Top contexts at layer {other}").wait_for()
    assert pg.locator("#factor-layer-select input:checked").get_attribute("value") == str(other)
    assert pg.locator("#factor-label-input").input_value() == ""
    shot(pg, "issue22-is-click-layer")
    check_console(pg)


def test_sql_console(start_server, page, syn_db):
    base = start_server(syn_db)
    pg = page
    pg.goto(f"{base}/sql")
    pg.locator("#sql-run").click()
    pg.locator("#sql-table .dash-spreadsheet-container").wait_for()
    pg.locator("#sql-examples").select_option("Layer quality")
    pg.wait_for_function("document.querySelector('#sql-text').value.includes('layer_quality')")
    pg.locator("#sql-run").click()
    pg.locator("#sql-feedback").get_by_text("5 rows").wait_for()
    assert pg.locator("#sql-download-btn").is_enabled()
    with pg.expect_download() as download:
        pg.locator("#sql-download-btn").click()
    assert download.value.suggested_filename == "factorscope-query.csv"
    shot(pg, "sql")
    pg.locator("#sql-text").fill("DROP TABLE codes")
    pg.locator("#sql-run").click()
    pg.locator(".fs-sql-error").wait_for()
    assert pg.locator("#sql-download-btn").is_disabled()
    pg.locator("#sql-text").fill("SELEC nonsense")
    pg.locator("#sql-run").click()
    pg.locator(".fs-sql-error").wait_for()
    shot(pg, "sql-refused")
    check_console(pg)


def test_run_and_search(start_server, page, syn_db):
    base = start_server(syn_db)
    pg = page
    pg.goto(f"{base}/run")
    pg.get_by_text("Reconstruction quality per layer").wait_for()
    assert pg.locator("#run-quality tbody tr").count() == 5
    shot(pg, "run")
    pg.locator("#nav-search").click()
    pg.wait_for_url(re.compile("/search$"))
    pg.locator("#search-word").fill("the")
    pg.locator("#search-word-go").click()
    pg.locator("#search-word-output a").first.wait_for()
    shot(pg, "search")
    pg.locator("#search-word-output a").first.click()
    pg.wait_for_url(re.compile(r"/factor/\d+\?layer=\d+$"))
    pg.get_by_role("heading", name=re.compile(r"Factor \d+")).wait_for()
    check_console(pg)


@pytest.fixture
def pipeline_db(request) -> Path:
    try:
        return request.getfixturevalue("tiny_pipeline_db")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_pipeline_db fixture is not available")


LONG_TEXT = " ".join(
    ["She left the room and turned left at the station, where the unbelievably old bank."] * 14
)  # 210 words: more pieces than the run's max_length (128)
HOSTILE = '<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2">'


def test_analyze_long_text_escaped_and_linked(start_server, page, pipeline_db, tmp_path):
    from factorscope.dash_app import logic
    from factorscope.warehouse.queries import WarehouseReader

    from .conftest import TINY_FACTORS, copy_db

    db = copy_db(pipeline_db, tmp_path)
    for factor in range(TINY_FACTORS):
        logic.save_label(db, factor, HOSTILE)
    WarehouseReader(db).close()
    base = start_server(db)
    pg = page
    pg.goto(f"{base}/analyze")
    tables = pg.locator("#analyze-output table.fs-decomp")

    # A short hostile sentence first (the model loads): it and the labels stay text.
    pg.locator("#analyze-text").fill(f"He left {HOSTILE} the bank.")
    pg.locator("#analyze-run").click()
    tables.first.wait_for(timeout=60_000)
    output = pg.locator("#analyze-output")
    assert pg.evaluate("window.__pwned") is None
    assert output.locator("img, script, b").count() == 0
    assert f"({HOSTILE})" in output.inner_text()
    words = output.locator("td.fs-decomp-word").all_inner_texts()
    assert {"<", "script", ">", "/"} <= set(words)

    # ~200 words: the first layer's table shows well within the hang guard.
    pg.locator("#analyze-text").fill(LONG_TEXT)
    pg.locator("#analyze-run").click()
    pg.wait_for_function(
        "document.querySelectorAll('#analyze-output table.fs-decomp tr').length >= 100",
        timeout=15_000,
    )
    assert tables.count() == 1  # only the open layer is drawn
    rows = output.locator("table.fs-decomp tr")
    assert rows.count() == 128 - 2  # max_length pieces, less [CLS] and [SEP]
    pg.locator("#analyze-message").get_by_text("stopped after").wait_for()
    words = output.locator("td.fs-decomp-word").all_inner_texts()
    assert not [w for w in words if w.startswith("##")]  # the text of a piece, not the piece
    assert output.locator("td.fs-piece-cont").count() > 0  # "unbelievably" is split
    assert re.search(r"\d\.\d\d·f\d+", output.inner_text())
    n_layers = output.locator("details.fs-layer").count()
    assert n_layers >= 2
    output.locator("summary.fs-layer-summary").nth(1).click()
    tables.nth(1).wait_for()
    assert tables.nth(1).locator("tr").count() == 128 - 2
    shot(pg, "analyze-long")

    link = tables.nth(1).locator("a.fs-f").first
    href = link.get_attribute("href")
    assert re.fullmatch(r"/factor/\d+\?layer=\d+(&dictionary=\d+)?", href)
    link.click()
    pg.wait_for_url(re.compile(re.escape(href) + "$"))
    factor = href.split("/")[2].split("?")[0]
    pg.get_by_role("heading", name=re.compile(f"Factor {factor}")).wait_for()
    assert pg.evaluate("window.__pwned") is None
    check_console(pg)


def test_analyze_and_lime(start_server, page, pipeline_db):
    base = start_server(pipeline_db)
    pg = page
    pg.goto(f"{base}/analyze")
    pg.locator("#analyze-text").fill("He left the bank.")
    pg.locator("#analyze-run").click()
    link = pg.locator("#analyze-output a").first
    link.wait_for(timeout=60_000)
    assert re.search(r"\d+·", pg.locator("#analyze-output").inner_text())
    shot(pg, "analyze")
    link.click()
    pg.wait_for_url(re.compile(r"/factor/\d+\?layer=\d+(&dictionary=\d+)?$"))
    pg.get_by_role("heading", name=re.compile(r"Factor \d+")).wait_for()
    pg.locator("#lime-samples").fill("40")
    pg.locator("#lime-count").fill("1")
    pg.locator("#lime-run").click()
    pg.locator("#lime-output .fs-lime-target").first.wait_for(timeout=90_000)
    assert pg.locator("#lime-output .fs-lime-word").count() >= 2
    shot(pg, "lime")
    check_console(pg)
