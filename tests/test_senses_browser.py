"""The Senses page in headless Chromium, over a database probed by the real CLI.

``factorscope ingest/learn/encode`` (tiny BERT) and ``factorscope probe --corpus wordnet``
run as subprocesses, ``factorscope serve`` serves the result, and Chromium opens
``/senses?lemma=left``: the separation curve, the sense groups of "left" with factor
links, the word menu (navigating to another word), and no error alert or console error.
The same page on the run before probing says how to probe it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_FACTORS, tiny_run_args

from .live import CHROMIUM, CLI, chromium_browser, console_page, start_serve, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000

if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.fail("Debian chromium is not installed (make setup-test)", pytrace=False)
if not Path("/usr/share/wordnet/data.verb").is_file():  # pragma: no cover
    pytest.fail("wordnet-base is not installed (make setup-test)", pytrace=False)


def _cli(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FACTORSCOPE_PROGRESS": "0"}
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def databases(tmp_path_factory, tiny_model_dir, sentence_corpus) -> tuple[Path, Path]:
    """(unprobed, probed) databases made by the real CLI."""
    root = tmp_path_factory.mktemp("senses")
    db = root / "run.duckdb"
    base = ["--db", str(db)]
    _cli("ingest", *base, *tiny_run_args(sentence_corpus, tiny_model_dir))
    _cli("learn", *base, "-m", str(TINY_FACTORS), "--lambda", "0.05", "--seed", "0")
    _cli("encode", *base)
    unprobed = root / "unprobed.duckdb"
    shutil.copyfile(db, unprobed)
    _cli("probe", *base, "--corpus", "wordnet", "--lemmas", "left,play")
    return unprobed, db


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(db: Path) -> str:
        proc, base = start_serve(db, tmp_path / f"serve-{len(procs)}.log")
        procs.append(proc)
        return base

    yield start
    stop(procs)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    with console_page(browser, height=1000, timeout_ms=TIMEOUT_MS) as pg:
        yield pg


def _shot(pg, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_senses_page_shows_the_curve_and_the_sense_groups_of_left(databases, serve, page):
    _, probed = databases
    base = serve(probed)
    page.goto(base + "/senses?lemma=left")
    page.wait_for_selector("#senses-curve .main-svg")
    page.wait_for_selector("#senses-groups .fs-sense-group")
    # the curve: codes, states and chance traces with their bands
    legend = page.inner_text("#senses-curve")
    for name in ("codes", "hidden states", "chance"):
        assert name in legend, legend
    assert page.locator("#senses-curve .scatterlayer .trace").count() >= 6
    # the figure: at least two senses of "left", each row the sentence with "left" marked
    groups = page.locator("#senses-groups .fs-sense-group")
    assert groups.count() >= 2
    headers = page.locator("#senses-groups .fs-sense-header").all_inner_texts()
    assert any(h.startswith("adj.all") for h in headers), headers
    assert any(h.startswith("verb.") for h in headers), headers
    marks = page.locator("#senses-groups mark.fs-hit").all_inner_texts()
    assert marks and all(m.lower() == "left" for m in marks), marks
    rows = page.locator("#senses-groups tr.fs-sense-row")
    assert rows.count() == len(marks) >= 10
    # every row: a top factor per layer (3 layers), linked to the factor's page
    links = rows.first.locator("a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert [h.split("?")[1] for h in hrefs] == ["layer=0", "layer=1", "layer=2"], hrefs
    assert all(h.startswith("/factor/") for h in hrefs)
    assert page.locator("#senses-lemma").input_value() == "left"
    assert page.locator(".alert-danger").count() == 0
    _shot(page, "senses-left")

    # the word menu navigates to the URL of another word
    page.select_option("#senses-lemma", "play")
    page.wait_for_url("**/senses?lemma=play")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#senses-groups mark.fs-hit'))"
        ".every(m => m.textContent.toLowerCase() === 'play')"
    )
    assert page.locator(".alert-danger").count() == 0

    # a word that was not probed: the page stays, with a note naming the probed words
    page.goto(base + "/senses?lemma=zebra")
    note = page.wait_for_selector("#senses-note")
    assert "'zebra' was not probed" in note.inner_text() and "left" in note.inner_text()
    page.wait_for_selector("#senses-groups .fs-sense-group")
    assert page.locator(".alert-danger").count() == 0
    _shot(page, "senses-unprobed-word")
    page.goto(base + "/senses?lemma=play")
    page.wait_for_selector("#senses-groups .fs-sense-group")

    # a factor link opens the factor page at that layer
    page.locator("#senses-groups tr.fs-sense-row a").nth(2).click()
    page.wait_for_url("**/factor/*?layer=2")
    page.wait_for_selector("#factor-contexts-table")
    assert page.locator(".alert-danger").count() == 0
    assert page.console_errors == [], page.console_errors


def test_senses_page_before_probing_says_how(databases, serve, page):
    unprobed, _ = databases
    base = serve(unprobed)
    page.goto(base + "/senses?lemma=left")
    message = page.wait_for_selector("#senses-message")
    assert "factorscope probe --corpus wordnet" in message.inner_text()
    assert page.locator(".alert-danger").count() == 0
    assert page.console_errors == [], page.console_errors
