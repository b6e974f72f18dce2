"""One run, one story, in Chromium: the dictionary chosen holds on every page.

A run with two encoded dictionaries, made by the real CLI (ingest, learn, encode, learn
another, encode it): dictionary 2 is the active one, and a reader who picked
dictionary 1 must see dictionary 1 on every page and behind every link (issue 22).
Also the Analyze page's word-across-layers view: the two "left"s of the example
sentence, their top factors at every layer side by side, and where they part.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_FACTORS, tiny_run_args

from .live import (
    CHROMIUM,
    CLI,
    chromium_browser,
    console_page,
    pick_dictionary,
    start_serve,
    stop,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000

if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.fail("Debian chromium is not installed (make setup-test)", pytrace=False)


def _cli(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FACTORSCOPE_PROGRESS": "0"}
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def two_dictionary_db(tmp_path_factory, tiny_model_dir, sentence_corpus) -> Path:
    db = tmp_path_factory.mktemp("two-dictionaries") / "run.duckdb"
    base = ["--db", str(db)]
    _cli("ingest", *base, *tiny_run_args(sentence_corpus, tiny_model_dir))
    _cli("learn", *base, "-m", str(TINY_FACTORS), "--lambda", "0.05", "--seed", "0")
    _cli("encode", *base)
    _cli("learn", *base, "-m", "12", "--lambda", "0.05", "--seed", "1")
    _cli("encode", *base, "--dictionary", "2")
    return db


@pytest.fixture(scope="module")
def base_url(two_dictionary_db: Path, tmp_path_factory) -> Iterator[str]:
    proc, base = start_serve(two_dictionary_db, tmp_path_factory.mktemp("log") / "serve.log")
    try:
        yield base
    finally:
        stop([proc])


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    with console_page(browser, height=1000, timeout_ms=TIMEOUT_MS) as pg:
        yield pg


def _no_alert(page) -> None:
    assert page.locator(".alert-danger").count() == 0, page.locator(
        ".alert-danger"
    ).all_inner_texts()
    assert page.console_errors == []


def test_analyze_shows_the_chosen_dictionary_and_where_two_words_part(page, base_url) -> None:
    page.goto(f"{base_url}/analyze?dictionary=1")
    page.locator("#analyze-header").get_by_text("dictionary 1").wait_for()
    page.locator("#analyze-run").click()
    view = page.locator(".fs-word-view")
    view.wait_for()
    select = view.locator("select.fs-word-select")
    assert select.locator("option").first.inner_text() == "left ×2"
    table = view.locator("table.fs-word-table")
    assert table.locator("thead th").count() == 4  # layer, 2 occurrences, top factor
    assert table.locator("tbody tr").count() == 3  # the tiny BERT's layers 0..2
    verdict = view.locator(".fs-word-verdict").inner_text()
    assert re.search(r"The 2 occurrences of “left” (share|have)", verdict), verdict
    hrefs = page.eval_on_selector_all("#analyze-output a.fs-f", "as => as.map(a => a.href)")
    assert hrefs and all(h.endswith("&dictionary=1") for h in hrefs), hrefs[:3]
    # another word of the sentence: one occurrence, one column
    select.select_option(label="room")
    view.locator(".fs-word-verdict").get_by_text("occurs once").wait_for()
    assert table.locator("thead th").count() == 2
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "analyze-word-across-layers.png"), full_page=True)
    _no_alert(page)


def test_the_chosen_dictionary_holds_on_every_page_and_link(page, base_url) -> None:
    """Dictionary 2 is active; dictionary 1, picked in the navbar, holds everywhere."""
    page.goto(f"{base_url}/factor/3")
    page.locator("#dictionary-badge").get_by_text("dictionary 2").wait_for()
    pick_dictionary(page, 1)
    page.wait_for_url(re.compile(r".*/factor/\d+\?dictionary=1$"))
    page.locator("#dictionary-badge").get_by_text("dictionary 1").wait_for()
    for nav, path in (("analyze", "/analyze"), ("search", "/search"), ("run", "/run")):
        page.locator(f"#nav-{nav}").click()
        page.wait_for_url(re.compile(rf"{path}\?dictionary=1$"))
        own = {"analyze": "#analyze-text", "search": "#search-word", "run": "#run-quality"}
        page.locator(own[nav]).wait_for()  # this page's own element, not the last page's
        badge = "#analyze-header" if nav == "analyze" else "#dictionary-badge"
        page.locator(badge).get_by_text("dictionary 1").wait_for()
        _no_alert(page)
    # the Run page counts what the ingest did not store
    page.locator("#run-corpus").get_by_text("segments after sentence splitting").wait_for()
    # Senses: dictionary 1 is not probed: the page says so and gives the command
    page.locator("#nav-senses").click()
    page.wait_for_url(re.compile(r"/senses\?dictionary=1$"))
    message = page.locator("#senses-message")
    message.get_by_text("factorscope probe --corpus wordnet --dictionary 1").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "senses-dictionary-not-probed.png"), full_page=True)
    # picking dictionary 2 on a page other than a factor page keeps the page
    page.locator("#nav-run").click()
    page.wait_for_url(re.compile(r"/run\?dictionary=1$"))
    pick_dictionary(page, 2)
    page.wait_for_url(re.compile(r"/run\?dictionary=2$"))
    page.locator("#dictionary-badge").get_by_text("dictionary 2").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "run-dictionary-2.png"), full_page=True)
    _no_alert(page)
