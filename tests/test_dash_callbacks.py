"""The plain functions behind the Dash callbacks, on a synthetic database."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import dash
import numpy as np
import pytest

from factorscope import saliency
from factorscope.dash_app import components as ui
from factorscope.dash_app import lime_jobs, logic
from factorscope.errors import InputError
from factorscope.warehouse import queries
from factorscope.warehouse.queries import WarehouseReader
from factorscope.warehouse.synthetic import build_synthetic_db

N_FACTORS = 128
N_LAYERS = 5


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dash") / "synthetic.duckdb"
    return build_synthetic_db(path, n_sentences=600, n_layers=N_LAYERS, n_factors=N_FACTORS)


@pytest.fixture(scope="module")
def app(syn_db: Path) -> dash.Dash:
    from factorscope.dash_app import create_app

    return create_app(
        syn_db, analyzer_factory=lambda _path, _dictionary: KeywordAnalyzer(), lime_auto_contexts=0
    )


def _levels(db: Path) -> dict[int, str]:
    with WarehouseReader(db).connect() as con:
        out = {}
        for factor in range(N_FACTORS):
            info = queries.factor_level(con, factor)
            if info and info.get("level"):
                out[factor] = info["level"]
        return out


def _text(component) -> str:
    """All the text a Dash component tree renders (for asserting on messages)."""
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())


_WORD = re.compile(r"\w+|[^\w\s]")  # the fake's "tokenizer": the real one is tested elsewhere


class KeywordAnalyzer:
    """α = 1 when 'cat' survives the masking, minus 0.5 when 'not' does; decompose is fixed."""

    n_layers = N_LAYERS
    n_factors = N_FACTORS

    def words(self, text):
        return [
            saliency.Word(m.start(), m.end(), (m.group().lower(),)) for m in _WORD.finditer(text)
        ]

    def alpha_for(self, texts, targets, layer, factor):
        assert len(texts) == len(targets)
        words = [_WORD.findall(t) for t in texts]
        return np.array([("cat" in w) - 0.5 * ("not" in w) for w in words], dtype=float)

    def decompose(self, text, *, top=8):
        return [
            {
                "word": w,
                "piece": w,
                "position": i + 1,
                "word_index": i,
                "layers": [
                    {"layer": layer, "factors": [(i % N_FACTORS, 0.5), (7, 0.25)][:top]}
                    for layer in range(N_LAYERS)
                ],
            }
            for i, w in enumerate(_WORD.findall(text))
        ]


# --------------------------------------------------------------------------- factor input


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("abc", "is not a factor number"),
        ("12abc", "is not a factor number"),
        ("-3", "is negative"),
        ("99999999999999999999999", "does not exist"),
        (str(N_FACTORS), "does not exist"),
        ("", "No factor given"),
        ("   ", "No factor given"),
        (None, "No factor given"),
        ("3.5", "is not a whole number"),
        ("2.0", "is not a whole number"),
        ("1e3", "is not a whole number"),
        (3.25, "is not a whole number"),
        (True, "is not a factor number"),
    ],
)
def test_parse_factor_refuses_with_a_clear_message(raw, fragment):
    with pytest.raises(InputError, match=re.escape(fragment)) as info:
        logic.parse_factor(raw, N_FACTORS)
    assert f"0 to {N_FACTORS - 1}" in str(info.value)
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize(("raw", "want"), [("0", 0), (" 17 ", 17), ("+5", 5), (42, 42), (3.0, 3)])
def test_parse_factor_accepts_whole_numbers(raw, want):
    assert logic.parse_factor(raw, N_FACTORS) == want


def test_parse_layer():
    assert logic.parse_layer(None, [0, 1, 2]) is None
    assert logic.parse_layer("2", [0, 1, 2]) == 2
    for bad in ("9", "x", "-1", "1.5"):
        with pytest.raises(InputError, match="does not exist: choose one of 0, 1, 2"):
            logic.parse_layer(bad, [0, 1, 2])


def test_parse_n_samples():
    assert logic.parse_n_samples("200") == 200
    for bad in (None, "", "abc", "5", "100000", "2.5"):
        with pytest.raises(InputError, match="Samples must be a whole number"):
            logic.parse_n_samples(bad)


def test_factor_href():
    assert logic.factor_href(5) == "/factor/5"
    assert logic.factor_href(5, 3) == "/factor/5?layer=3"


# --------------------------------------------------------------------------- factor page data


def test_layer_defaults_to_peak(syn_db):
    for factor in (0, 1, 2, 50):
        view = logic.factor_view(syn_db, str(factor))
        with WarehouseReader(syn_db).connect() as con:
            peak = queries.factor_level(con, factor)["peak_layer"]
        assert view.layer == peak
        assert view.peak_layer == peak
        assert view.layers == list(range(N_LAYERS))


def test_explicit_layer_and_bad_layer(syn_db):
    view = logic.factor_view(syn_db, "3", "1")
    assert (view.factor, view.layer) == (3, 1)
    with pytest.raises(InputError, match="Layer '17' does not exist"):
        logic.factor_view(syn_db, "3", "17")
    with pytest.raises(InputError, match="is not a factor number"):
        logic.factor_view(syn_db, "three")


def test_view_has_curve_histogram_and_neighbors(syn_db):
    view = logic.factor_view(syn_db, 5)
    assert view.importance.height == N_LAYERS
    assert view.histogram.height > 0
    assert view.neighbors is not None and view.neighbors.height > 0
    assert 5 not in view.neighbors["neighbor"].to_list()
    assert view.intervals


def _busy_factor(db: Path) -> tuple[int, int]:
    """A (factor, layer) with at least 200 activations."""
    for factor in range(N_FACTORS):
        view = logic.factor_view(db, factor)
        if view.total_contexts == logic.TOP_CONTEXTS:
            return factor, view.layer
    raise AssertionError("no factor with 200 contexts in the synthetic database")


def test_200_contexts_with_highlight_over_pages(syn_db):
    factor, layer = _busy_factor(syn_db)
    rows = []
    for page in range(1, 5):
        frame = logic.contexts_page(syn_db, factor, layer, page)
        assert frame.height == logic.CONTEXTS_PER_PAGE
        rows.extend(frame.iter_rows(named=True))
    assert [r["rank"] for r in rows] == list(range(1, 201))
    alphas = [r["alpha"] for r in rows]
    assert alphas == sorted(alphas, reverse=True)
    for r in rows:
        hit = r["context"][r["highlight_start"] : r["highlight_end"]]
        assert hit.lower() == r["word"].lower()
    with pytest.raises(InputError, match="past the top 200"):
        logic.contexts_page(syn_db, factor, layer, 5)
    table = _text(ui.contexts_table(logic.contexts_page(syn_db, factor, layer, 1)))
    assert table.count('"Mark"') == logic.CONTEXTS_PER_PAGE


@pytest.mark.parametrize("level", ["low", "mid", "high"])
def test_random_picks_a_factor_of_that_level(syn_db, level):
    levels = _levels(syn_db)
    if level not in levels.values():
        pytest.skip(f"no {level} factor in this synthetic db")
    for seed in range(5):
        factor = logic.pick_random(syn_db, level, seed=seed)
        assert levels[factor] == level
    with pytest.raises(InputError, match="Unknown level"):
        logic.pick_random(syn_db, "top")


def test_label_round_trip(syn_db):
    assert logic.save_label(syn_db, 9, "  the word left ") == "Saved label of factor 9."
    assert logic.factor_view(syn_db, 9).label == "the word left"
    hits = logic.search_labels(syn_db, "left")
    assert 9 in hits["factor"].to_list()
    with pytest.raises(InputError, match=re.escape("label is too long (201 > 200 characters)")):
        logic.save_label(syn_db, 9, "x" * 201)
    with pytest.raises(InputError, match="Type some text"):
        logic.search_labels(syn_db, "  ")


def _walk(tree):
    """Every node of a layout (component objects and their wire form alike), as a dict
    of its props with ``type``."""
    if hasattr(tree, "to_plotly_json") and not isinstance(tree, dict):
        found = tree.to_plotly_json()
        yield {**found["props"], "type": found["type"]}
        yield from _walk(found["props"].get("children"))
    elif isinstance(tree, dict) and "props" in tree and "type" in tree:
        yield {**tree["props"], "type": tree["type"]}
        yield from _walk(tree["props"].get("children"))
    elif isinstance(tree, list | tuple):
        for child in tree:
            yield from _walk(child)


def _shown(tree) -> str:
    """The text a layout shows, its strings in order."""
    if isinstance(tree, str):
        return tree
    if isinstance(tree, list | tuple):
        return "".join(_shown(child) for child in tree)
    if hasattr(tree, "to_plotly_json") and not isinstance(tree, dict):
        return _shown(tree.to_plotly_json()["props"].get("children"))
    if isinstance(tree, dict):
        return _shown(tree.get("props", {}).get("children"))
    return ""


def _by_id(tree, component_id: str) -> dict:
    (found,) = [node for node in _walk(tree) if node.get("id") == component_id]
    return found


def _factor_page(module_path: str = "/"):
    import sys

    (module,) = [p["module"] for p in dash.page_registry.values() if p["path"] == module_path]
    return sys.modules[module]


def _fresh_factor(db: Path, avoid: set[int]) -> int:
    """A factor with an automatic label and no user label."""
    with WarehouseReader(db).connect() as con:
        for factor in range(N_FACTORS):
            found = queries.factor_label(con, factor)
            if factor not in avoid and found and found["source"] == "auto":
                return factor
    raise AssertionError("no factor with only an automatic label")


def test_auto_label_is_beside_the_label_box_never_in_it(app, syn_db):
    from factorscope.dash_app import ids

    factor = _fresh_factor(syn_db, {9})
    view = logic.factor_view(syn_db, factor)
    assert view.user_label is None and view.auto_label
    page = _factor_page().layout(factor=str(factor))
    assert _by_id(page, ids.LABEL_INPUT)["value"] == ""
    auto = _by_id(page, ids.LABEL_AUTO)
    assert _shown(auto["children"]) == f"auto: {view.auto_label}"
    assert "most frequent words" in auto["title"] and "not reviewed" in auto["title"]

    # a user's label goes in the box; the automatic one stays beside it, marked as such
    logic.save_label(syn_db, factor, "reviewed by a person")
    page = _factor_page().layout(factor=str(factor))
    assert _by_id(page, ids.LABEL_INPUT)["value"] == "reviewed by a person"
    assert _shown(_by_id(page, ids.LABEL_AUTO)["children"]) == f"auto: {view.auto_label}"
    logic.save_label(syn_db, factor, "")


def test_a_too_long_label_is_refused_with_the_limit_never_saved(app, syn_db):
    from factorscope.dash_app import ids

    page_module = _factor_page()
    factor = _fresh_factor(syn_db, {9})
    box = _by_id(page_module.layout(factor=str(factor)), ids.LABEL_INPUT)
    assert "maxLength" not in box  # the browser would cut a paste silently
    assert "up to 200 characters" in box["placeholder"]
    state = {"factor": factor, "layer": 0, "dictionary": None}
    message, class_name = page_module.save_label(1, None, "y" * 600, state)
    assert message == "label is too long (600 > 200 characters): shorten it"
    assert "text-danger" in class_name
    assert logic.factor_view(syn_db, factor).user_label is None
    message, class_name = page_module.save_label(1, None, "y" * 200, state)
    assert message == f"Saved label of factor {factor}." and "text-success" in class_name
    assert logic.factor_view(syn_db, factor).user_label == "y" * 200
    page_module.save_label(1, None, "", state)


def test_interval_headers_give_the_interval_bounds_and_counts(syn_db):
    factor, layer = _busy_factor(syn_db)
    view = logic.factor_view(syn_db, factor, layer)
    with WarehouseReader(syn_db).connect() as con:
        ((n_codes, top),) = con.execute(
            "SELECT count(*), max(alpha) FROM codes WHERE factor = ? AND layer = ? "
            "AND dictionary_id = (SELECT dictionary_id FROM active_dictionary)",
            [factor, layer],
        ).fetchall()
    bounds = view.interval_bounds
    assert [b["interval"] for b in bounds] == list(range(len(bounds)))
    assert sum(b["count"] for b in bounds) == n_codes
    assert bounds[0]["alpha_low"] == 0.0
    assert bounds[-1]["alpha_high"] == pytest.approx(top)
    for low, high in itertools.pairwise(bounds):
        assert low["alpha_high"] == high["alpha_low"]
    for row in view.intervals:  # every sample lies in its interval's bounds
        b = bounds[row["interval"]]
        assert b["alpha_low"] - 1e-6 <= row["alpha"] <= b["alpha_high"] + 1e-6
    text = _shown(ui.intervals_block(view.intervals, bounds))
    strongest = bounds[-1]
    header = f"α in [{strongest['alpha_low']:.3f}, {strongest['alpha_high']:.3f}]"
    assert header in text
    assert f"{strongest['count']:,} contexts" in text
    weakest = next(b for b in bounds if any(r["interval"] == b["interval"] for r in view.intervals))
    assert f"{weakest['alpha_high']:.3f})" in text


IS_CLICK_CASES = [
    # (clickData, state) -> href the page's Location gets (None: no navigation)
    ({"points": [{"x": 3, "y": 0.2, "curveNumber": 0}]}, "/factor/7?layer=3"),
    ({"points": [{"x": 1, "y": 0.2, "curveNumber": 1}]}, None),  # the layer shown
    (None, None),
    ({"points": []}, None),
]


def test_is_curve_hover_and_click_lead_to_the_layer(app, syn_db):
    import shutil
    import subprocess

    from factorscope.dash_app import ids

    figure = ui.importance_figure(
        logic.factor_view(syn_db, 7, 1).importance, factor=7, layer=1, level="high", clickable=True
    )
    for trace in figure["data"]:
        assert trace["hovertemplate"].startswith("layer %{x} · IS %{y:.3f}")
    assert figure["data"][0]["line"]["color"] == ui.level_color("high")
    assert "click a point" in figure["layout"]["xaxis"]["title"]["text"]

    # The wiring as Dash registered it (no request: a served app cannot host another
    # create_app's pages in this process; Dash may list a page's callbacks once per app).
    from dash._callback import GLOBAL_CALLBACK_LIST

    registered = [*GLOBAL_CALLBACK_LIST, *getattr(app, "_callback_list", [])]
    clicks = [
        d
        for d in registered
        if {"id": ids.IS_GRAPH, "property": "clickData"} in d["inputs"]
        and d["output"].startswith(ids.FACTOR_NAV + ".href")
    ]
    assert clicks and all(c["clientside_function"] for c in clicks)  # navigates in the browser
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Debian nodejs): it runs the click's JavaScript")
    state = {"layer": 1, "hrefs": {str(x): f"/factor/7?layer={x}" for x in range(N_LAYERS)}}
    script = (
        "const no_update = {no_update: true};"
        "globalThis.window = {dash_clientside: {no_update}};"
        f"const f = {_factor_page().IS_CLICK_JS};"
        f"const cases = {json.dumps([c for c, _ in IS_CLICK_CASES])};"
        f"const state = {json.dumps(state)};"
        "console.log(JSON.stringify(cases.map(c => {"
        "const r = f(c, state); return r === no_update ? null : r; })));"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [want for _, want in IS_CLICK_CASES]


# --------------------------------------------------------------------------- other pages


def test_search_word(syn_db):
    frame = logic.search_word(syn_db, "the")
    assert frame.height > 0
    assert set(frame.columns) >= {"layer", "factor", "mean_alpha", "hits"}
    only = logic.search_word(syn_db, "the", "2")
    assert set(only["layer"].to_list()) == {2}
    with pytest.raises(InputError, match="Type a word"):
        logic.search_word(syn_db, "")


def test_sql_console(syn_db):
    ok = logic.run_console_query(syn_db, "SELECT count(*) AS n FROM sentences")
    assert ok.error is None and ok.frame["n"][0] == 600
    capped = logic.run_console_query(syn_db, "SELECT * FROM codes", row_cap=10)
    assert capped.frame.height == 10 and capped.truncated
    for bad in ("DROP TABLE codes", "DELETE FROM sentences", "SELEC * FROM codes", "  "):
        result = logic.run_console_query(syn_db, bad)
        assert result.frame is None and result.error
        assert "Traceback" not in result.error
    csv = logic.frame_to_csv(ok.frame)
    assert csv.splitlines() == ["n", "600"]


def test_overview(syn_db):
    info = logic.overview(syn_db)
    assert info["n_sentences"] == 600
    assert info["quality"].height == N_LAYERS
    assert set(info["levels"]) >= {"low", "mid", "high"} or sum(info["levels"].values()) > 0


def test_analyze_text_is_compact_with_labels_and_errors(syn_db):
    logic.save_label(syn_db, 7, "seven")
    data = logic.analyze_text(KeywordAnalyzer(), syn_db, "the cat sat", top=2)
    assert [t["text"] for t in data["tokens"]] == ["the", "cat", "sat"]
    assert data["layers"] == list(range(N_LAYERS))
    # codes[layer][token] = [factor, alpha, factor, alpha, ...], largest first
    assert data["codes"][0][0] == [0, 0.5, 7, 0.25]
    assert data["codes"][N_LAYERS - 1][2] == [2, 0.5, 7, 0.25]
    assert data["labels"]["7"] == "seven"
    assert set(data["labels"]) <= {"0", "1", "2", "7"}
    assert data["read_chars"] == data["n_chars"] == len("the cat sat")
    json.dumps(data)  # what the dcc.Store holds
    with pytest.raises(InputError, match="Type a sentence"):
        logic.analyze_text(KeywordAnalyzer(), syn_db, "   ")
    with pytest.raises(InputError, match="at most 2000"):
        logic.analyze_text(KeywordAnalyzer(), syn_db, "word " * 500)


class BpeAnalyzer:
    """decompose as LiveAnalyzer gives it for a byte-level BPE model, cut at 3 pieces."""

    # piece, start, end, word index: "He leaving ..." -> He, Ġleav, ing
    PIECES = (("He", 0, 2, 0), ("Ġleav", 2, 7, 1), ("ing", 7, 10, 1))

    def decompose(self, text, *, top=8):
        return [
            {
                "word": text[2:10].strip() if word_index else "He",
                "piece": piece,
                "text": text[start:end].strip(),
                "start": start,
                "end": end,
                "position": i + 1,
                "word_index": word_index,
                "layers": [{"layer": 0, "factors": [(1, 0.123456)]}],
            }
            for i, (piece, start, end, word_index) in enumerate(self.PIECES)
        ]


def test_analyze_text_shows_piece_text_and_truncation(syn_db):
    data = logic.analyze_text(BpeAnalyzer(), syn_db, "He leaving the room", top=2)
    assert [t["text"] for t in data["tokens"]] == ["He", "leav", "ing"]
    assert [t["piece"] for t in data["tokens"]] == ["He", "Ġleav", "ing"]
    assert [t["word"] for t in data["tokens"]] == ["He", "leaving", "leaving"]
    assert [t["cont"] for t in data["tokens"]] == [False, False, True]
    assert data["codes"] == [[[1, 0.1235]] * 3]
    assert (data["read_chars"], data["n_chars"]) == (10, len("He leaving the room"))


def test_analyze_page_callback(app, syn_db):
    from factorscope.dash_app.pages import analyze as page

    data, message = page.analyze(1, "the cat sat", 3)
    assert message is None and len(data["tokens"]) == 3
    data, message = page.analyze(1, "", 3)
    assert data is None and "Type a sentence" in _text(message)
    data, message = page.analyze(1, "the cat", 0)
    assert data is None and "Factors per word" in _text(message)
    note = page.truncation_note({"tokens": [{}] * 4, "read_chars": 9, "n_chars": 30})
    assert "stopped after 9 of 30 characters" in _text(note)
    assert page.truncation_note({"tokens": [{}], "read_chars": 30, "n_chars": 30}) is None


# --------------------------------------------------------------------------- LIME


def test_explain_finds_the_driving_words():
    result = saliency.explain(
        KeywordAnalyzer(), "the cat did not sit", 1, 3, 5, n_samples=300, seed=1
    )
    weights = {w["word"]: w["weight"] for w in result["words"]}
    assert weights["cat"] > 0.8
    assert weights["not"] < -0.3
    assert max(abs(weights[w]) for w in ("the", "did", "sit")) < 0.1
    assert [w["target"] for w in result["words"]] == [False, True, False, False, False]
    assert result["alpha"] == pytest.approx(1.0 - 0.5)
    json.dumps(result)  # cacheable / storable as is


def test_explain_reports_progress_and_validates():
    calls = []
    saliency.explain(
        KeywordAnalyzer(),
        "a cat",
        0,
        0,
        0,
        n_samples=100,
        batch_size=30,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(30, 100), (60, 100), (90, 100), (100, 100)]
    with pytest.raises(InputError, match="not among the 2 words the model reads"):
        saliency.explain(KeywordAnalyzer(), "a cat", 5, 0, 0, n_samples=100)
    with pytest.raises(InputError, match="piece 1 of word 0"):
        saliency.explain(KeywordAnalyzer(), "a cat", 0, 0, 0, piece=1, n_samples=100)
    with pytest.raises(InputError, match="non-empty"):
        saliency.explain(KeywordAnalyzer(), " ", 0, 0, 0)


def test_explain_cached_round_trip(syn_db):
    args = (syn_db, KeywordAnalyzer(), "the cat did not sit", 1, 2, 4)
    first = saliency.explain_cached(*args, n_samples=50)
    second = saliency.explain_cached(*args, n_samples=50)
    assert first["cached"] is False and second["cached"] is True
    assert second["words"] == first["words"]
    assert saliency.explain_cached(*args, n_samples=60)["cached"] is False
    assert saliency.explain_cached(*args, n_samples=50, piece=0)["cached"] is True
    # another piece of the same word is another map, never the cached one
    assert saliency.cache_key(1, "a", 0, 2, 4, 50, 0, piece=1) != saliency.cache_key(
        1, "a", 0, 2, 4, 50, 0, piece=0
    )


def test_lime_job_runs_top_contexts(syn_db):
    factor, layer = _busy_factor(syn_db)
    targets = logic.lime_targets(syn_db, factor, layer, count=2)
    assert len(targets) == 2
    for target in targets:
        words = _WORD.findall(target["text"])
        assert words[target["word_index"]].lower() == target["word"].lower()
        assert target["piece"] == 0  # synthetic words are one piece each
    job = lime_jobs.start(syn_db, KeywordAnalyzer, targets, 40)
    state = lime_jobs.wait(job, timeout=60)
    assert state["finished"] and state["error"] is None
    assert len(state["results"]) == 2 and state["done"] == state["total"] == 80
    html = _text(ui.lime_map(state["results"][0]))
    assert "fs-lime-target" in html


def test_lime_job_reports_analyzer_failure(syn_db):
    def broken():
        raise RuntimeError("no model in this database")

    job = lime_jobs.start(
        syn_db, broken, [{"text": "a", "word_index": 0, "layer": 0, "factor": 0}], 20
    )
    state = lime_jobs.wait(job, timeout=30)
    assert state["finished"] and "no model in this database" in state["error"]
    assert state["error"].startswith("LIME needs the run's model")


class PieceAnalyzer(KeywordAnalyzer):
    """The fake, with "leaving" in two pieces as WordPiece splits it."""

    def words(self, text):
        return [
            saliency.Word(
                w.start, w.end, ("leav", "##ing") if w.pieces == ("leaving",) else w.pieces
            )
            for w in super().words(text)
        ]


def test_lime_page_names_the_piece_and_shows_errors(app, syn_db):
    import sys

    # the page module as Dash loaded it (importing it again would register it twice)
    (module,) = [p["module"] for p in dash.page_registry.values() if p["path"] == "/"]
    page = sys.modules[module]
    target = {"text": "the cat was leaving", "word_index": 3, "layer": 0, "factor": 0}
    good = [{**target, "piece": 1, "word": "leaving"}]
    job = lime_jobs.start(syn_db, PieceAnalyzer, good, 20)
    assert lime_jobs.wait(job, timeout=60)["results"][0]["target_piece"] == "##ing"
    *_, maps, _disabled = page.poll_lime(1, job)
    assert maps[0].children == "“leaving” at “##ing”"
    assert "fs-lime-target" in _text(maps[1])

    bad = [{**target, "piece": 2, "word": "leaving"}]  # no third piece: an error, not a map
    job = lime_jobs.start(syn_db, PieceAnalyzer, bad, 20)
    lime_jobs.wait(job, timeout=60)
    *_, maps, _disabled = page.poll_lime(1, job)
    assert "piece 2 of word 3" in _text(maps[-1]) and "alert" in _text(maps[-1]).lower()


# --------------------------------------------------------------------------- layouts


def test_layouts_render_messages_not_tracebacks(app):
    pages = {page["path"]: page for page in dash.page_registry.values()}
    assert {"/", "/analyze", "/search", "/sql", "/run"} <= set(pages)
    factor_layout = pages["/"]["layout"]
    for raw, fragment in (
        ("abc", "is not a factor number"),
        ("-1", "is negative"),
        ("1000000", "does not exist"),
        ("1.5", "not a whole number"),
    ):
        assert fragment in _text(factor_layout(factor=raw))
    assert "does not exist: choose one of" in _text(factor_layout(factor="3", layer="99"))
    rendered = _text(factor_layout(factor="3", layer="1"))
    assert "Factor 3" in rendered and "Top contexts at layer 1" in rendered
    assert "Factor " in _text(factor_layout())
    for path in ("/analyze", "/search", "/sql", "/run"):
        assert _text(pages[path]["layout"]())


def test_console_numbers_are_shown_by_column_type(app, syn_db):
    """round(alpha, 3) is a FLOAT (32-bit): shown 0.379, not 0.3790000081062317 (issue 22)."""
    from factorscope.dash_app.pages import sql as page

    result = logic.run_console_query(
        syn_db,
        "SELECT round(alpha, 3) AS a, CAST(0.1 AS DOUBLE) AS d, factor FROM codes "
        "WHERE alpha > 0 LIMIT 20",
    )
    assert result.error is None, result.error
    _note, table = page.render_result(result)
    assert all(len(repr(row["a"])) <= 6 for row in table.data), table.data[:3]
    assert all(row["d"] == 0.1 for row in table.data)
    kinds = {c["id"]: c.get("type") for c in table.columns}
    assert kinds == {"a": "numeric", "d": "numeric", "factor": "numeric"}
