"""`factorscope serve` runs a production server, and the factor page is one cached request.

The server tests run the real command as a subprocess on a free loopback port; the
cache tests call :mod:`factorscope.dash_app.logic` directly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from factorscope.cli import main
from factorscope.dash_app import logic
from factorscope.warehouse.queries import WarehouseReader
from factorscope.warehouse.synthetic import build_synthetic_db

from .live import CHROMIUM, chromium_browser, start_serve


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "synthetic.duckdb"
    return build_synthetic_db(path, n_sentences=300, n_layers=3, n_factors=32)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """``serve(db, *flags)`` starts ``factorscope serve``; (process, base URL, log path)."""
    procs: list[subprocess.Popen] = []

    def start(db: Path, *flags: str) -> tuple[subprocess.Popen, str, Path]:
        log = tmp_path / f"serve-{len(procs)}.log"
        proc, base = start_serve(db, log, *flags)
        procs.append(proc)
        return proc, base, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def _factor_page(base: str, factor: int) -> dict:
    """The page router's answer for /factor/<factor>, as the browser asks for it."""
    deps = json.loads(_get(base + "/_dash-dependencies")[2])
    router = next(d for d in deps if "_pages_content.children" in d["output"])
    values = {
        "_pages_location.pathname": f"/factor/{factor}",
        "_pages_location.search": "",
    }
    body = {
        "output": router["output"],
        "outputs": [
            {"id": spec.rsplit(".", 1)[0], "property": spec.rsplit(".", 1)[1]}
            for spec in router["output"].strip(".").split("...")
        ],
        "inputs": [
            {**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in router["inputs"]
        ],
        "state": [
            {**s, "value": values.get(f"{s['id']}.{s['property']}")}
            for s in router.get("state", [])
        ],
        "changedPropIds": ["_pages_location.pathname"],
    }
    request = urllib.request.Request(
        base + "/_dash-update-component",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=20)


# --------------------------------------------------------------------------- the server


@pytest.mark.slow
def test_serve_runs_waitress_and_stops_on_sigterm(serve, syn_db):
    proc, base, log = serve(syn_db, "--threads", "2")
    status, headers, _ = _get(base + "/_dash-layout")
    assert status == 200 and headers["Server"] == "waitress"
    status, headers, html = _get(base + "/factor/3")
    assert status == 200 and headers["Server"] == "waitress" and b"_dash-renderer" in html
    answer = json.dumps(_factor_page(base, 3))
    assert "Factor 3" in answer and "factor-contexts-table" in answer
    assert _stop(proc, signal.SIGTERM) == 0
    text = log.read_text()
    assert "with waitress, 2 threads" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_serve_stops_on_ctrl_c(serve, syn_db):
    proc, _base, log = serve(syn_db)
    assert _stop(proc, signal.SIGINT) == 0
    assert "with waitress, 8 threads" in log.read_text()


@pytest.mark.slow
def test_debug_runs_the_development_server(serve, syn_db):
    proc, base, log = serve(syn_db, "--debug")
    _, headers, _ = _get(base + "/_dash-layout")
    assert headers["Server"].startswith("Werkzeug"), headers
    assert "with the development server" in log.read_text()
    assert _stop(proc, signal.SIGTERM) == 0


@pytest.mark.parametrize("value", ["0", "257", "many"])
def test_threads_out_of_range_is_one_line_exit_2(capsys, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    code = main(["serve", "--threads", value])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "--threads" in err and "Traceback" not in err
    assert "serving" not in out


# --------------------------------------------------------------------------- the cache


def test_cache_is_bounded_lru(syn_db):
    cache = logic.PageCache(max_entries=3)
    first = logic.factor_view(syn_db, 0, 0, cache=cache)
    for factor in (1, 2):
        logic.factor_view(syn_db, factor, 0, cache=cache)
    assert len(cache) == 3
    assert logic.factor_view(syn_db, 0, 0, cache=cache) is first  # a hit, now the newest
    logic.factor_view(syn_db, 3, 0, cache=cache)  # pushes out factor 1, the oldest
    assert len(cache) == 3
    assert logic.factor_view(syn_db, 0, 0, cache=cache) is first
    misses = cache.misses
    logic.factor_view(syn_db, 1, 0, cache=cache)
    assert cache.misses == misses + 1
    assert len(cache) == 3
    with pytest.raises(ValueError, match="max_entries"):
        logic.PageCache(max_entries=0)


def test_default_layer_and_peak_layer_share_a_view(syn_db):
    cache = logic.PageCache(max_entries=8)
    view = logic.factor_view(syn_db, 5, cache=cache)
    assert logic.factor_view(syn_db, 5, view.layer, cache=cache) is view
    assert logic.factor_view(syn_db, "5", str(view.layer), cache=cache) is view


def test_cached_view_matches_the_plain_queries(syn_db):
    from factorscope.warehouse import queries

    view = logic.factor_view(syn_db, 7, 1, cache=logic.PageCache())
    with WarehouseReader(syn_db).connect() as con:
        top = queries.top_contexts(con, 7, 1, k=logic.TOP_CONTEXTS)
        assert view.top.equals(top)
        assert view.contexts.equals(top.head(logic.CONTEXTS_PER_PAGE))
        assert view.histogram.equals(queries.factor_histogram(con, 7, 1, bins=30))
        assert view.intervals == queries.interval_samples(con, 7, 1).to_dicts()
        assert view.neighbors.equals(queries.factor_neighbors(con, 7, limit=10))
        assert view.importance.equals(queries.importance_curve(con, 7))
        assert view.level == (queries.factor_level(con, 7) or {}).get("level")
    assert logic.contexts_page(syn_db, 7, 1, 2).equals(top.slice(50, 50))


def test_a_contexts_page_alone_reads_one_page(syn_db):
    logic.PAGE_CACHE.clear(syn_db)
    frame = logic.contexts_page(syn_db, 9, 2, 3)
    assert logic.cached_view(syn_db, 9, 2) is None  # no whole page gathered for it
    view = logic.factor_view(syn_db, 9, 2)
    assert logic.cached_view(syn_db, 9, 2) is view
    assert frame.equals(logic.contexts_page(syn_db, 9, 2, 3))
    assert frame.equals(view.top.slice(100, 50))


def test_a_new_publish_invalidates_the_cache(tmp_path):
    db = build_synthetic_db(tmp_path / "pub.duckdb", n_sentences=200, n_layers=2, n_factors=16)
    cache = logic.PageCache(max_entries=16)
    before = logic.factor_view(db, 4, 1, cache=cache)
    assert logic.factor_view(db, 4, 1, cache=cache) is before
    build_synthetic_db(db, n_sentences=200, n_layers=2, n_factors=16, seed=1)  # publish anew
    after = logic.factor_view(db, 4, 1, cache=cache)
    assert after is not before
    assert not after.top.equals(before.top)
    assert len(cache) == 1  # the views of the old file are gone, not just unreachable
    fresh = logic.factor_view(db, 4, 1, cache=logic.PageCache())
    assert after.top.equals(fresh.top)
    WarehouseReader(db).close()


def test_saving_a_label_shows_at_once(tmp_path):
    db = build_synthetic_db(tmp_path / "lab.duckdb", n_sentences=200, n_layers=2, n_factors=16)
    assert logic.factor_view(db, 2, 0).label != "cached?"
    logic.save_label(db, 2, "cached?")
    assert logic.factor_view(db, 2, 0).label == "cached?"
    WarehouseReader(db).close()


# --------------------------------------------------------------------------- the browser


@pytest.mark.browser
@pytest.mark.slow
def test_a_factor_view_is_one_request(serve, syn_db):
    """Opening a factor page, or switching its layer, asks the server once for data."""
    if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
        pytest.fail("no /usr/bin/chromium: run `make setup-test`", pytrace=False)
    _proc, base, _log = serve(syn_db)
    with chromium_browser() as browser:
        pg = browser.new_page()
        pg.set_default_timeout(20_000)
        posts: list[str] = []
        errors: list[str] = []
        pg.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.goto(f"{base}/factor/3?layer=1", wait_until="networkidle")
        pg.locator("#factor-is-graph .js-plotly-plot").wait_for()
        assert len(posts) == 1, posts
        posts.clear()
        pg.locator("#factor-layer-select label").get_by_text("2", exact=True).click()
        pg.wait_for_url(f"{base}/factor/3?layer=2")
        pg.wait_for_load_state("networkidle")
        pg.locator("#factor-layer-select input[value='2']:checked").wait_for(state="attached")
        assert len(posts) == 1, posts
        assert errors == [], errors
