"""Evidence in the app: the readers of the explain tables, the claims with their
intervals, the explanation as a factor's automatic label, the factor page's Explanation
card and the Evidence page, on small synthetic databases (with and without explanations
and controls)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dash
import numpy as np
import pytest

from factorscope.dash_app import config, logic, navigation
from factorscope.evidence import claims
from factorscope.warehouse import evidence_read as ev
from factorscope.warehouse import queries
from factorscope.warehouse.queries import WarehouseReader
from factorscope.warehouse.synthetic import add_synthetic_evidence, build_synthetic_db
from tests.conftest import copy_db

N_FACTORS = 48
N_LAYERS = 4

# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``plain`` (no explanations, no controls), ``explained`` (explained, no control),
    ``full`` (explained with two controls) and ``unexplained_controls`` (one control,
    nothing explained): copies of one synthetic database."""
    root = tmp_path_factory.mktemp("evidence")
    (root / "plain").mkdir()
    plain = build_synthetic_db(
        root / "plain" / "e.duckdb", n_sentences=240, n_layers=N_LAYERS, n_factors=N_FACTORS
    )
    out = {"plain": plain}
    for name, n_controls, explain in (
        ("explained", 0, True),
        ("full", 2, True),
        ("unexplained_controls", 1, False),
    ):
        (root / name).mkdir()
        out[name] = copy_db(plain, root / name)
        add_synthetic_evidence(out[name], n_controls=n_controls, explain=explain)
    return out


@pytest.fixture(scope="module")
def pages(dbs) -> dict[str, object]:
    """The app's page modules by path (pages register with an app)."""
    from factorscope.dash_app import create_app

    create_app(dbs["plain"], lime_auto_contexts=0)
    return {p["path"]: sys.modules[p["module"]] for p in dash.page_registry.values()}


def _text(tree) -> str:
    return json.dumps(tree, default=lambda o: o.to_plotly_json(), ensure_ascii=False)


def _explained_factor(db: Path, *, at_peak: bool = True) -> tuple[int, dict]:
    """A factor with a rule at its peak layer (at_peak) or none there (not at_peak)."""
    with WarehouseReader(db).connect() as con:
        for factor in range(N_FACTORS):
            level = queries.factor_level(con, factor)
            if level is None:
                continue
            found = ev.factor_explanation(con, 1, factor, level["peak_layer"])
            if found is not None and found["explained"] == at_peak:
                return factor, found
    raise AssertionError("no such factor in the synthetic database")


# --------------------------------------------------------------------------- claims math


@pytest.mark.timeout(30)
def test_wilson_bounds():
    none = claims.wilson(0, 10)
    assert none.share == 0 and none.low == 0 and none.high == pytest.approx(0.2775, abs=1e-4)
    half = claims.wilson(5, 10)
    assert (half.low, half.high) == (
        pytest.approx(0.2366, abs=1e-4),
        pytest.approx(0.7634, abs=1e-4),
    )
    assert claims.wilson(10, 10).high == 1.0 and claims.wilson(10, 10).low < 1.0
    empty = claims.wilson(0, 0)
    assert (empty.share, empty.low, empty.high) == (0.0, 0.0, 1.0)
    big = claims.wilson(300, 1000)
    assert big.low < 0.3 < big.high and big.high - big.low == pytest.approx(0.0568, abs=2e-3)
    assert big.text() == "30.0% [27.2%, 32.9%]" and big.text(0) == "30% [27%, 33%]"
    with pytest.raises(ValueError, match=r"count must be in 0\.\.n"):
        claims.wilson(11, 10)
    shares = claims.level_shares(["low", "low", "high", None, "mid"])
    assert [shares[lv].count for lv in claims.LEVELS] == [2, 1, 1]
    assert all(s.n == 4 for s in shares.values())


@pytest.mark.timeout(30)
def test_bootstrap_interval_contains_the_mean_and_is_seeded():
    rng = np.random.default_rng(3)
    values = rng.normal(0.7, 0.1, size=400)
    found = claims.bootstrap_mean(values, seed=1)
    assert found.n == 400 and found.estimate == pytest.approx(values.mean())
    assert found.contains(values.mean()) and found.low < found.estimate < found.high
    normal_half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert (found.high - found.low) / 2 == pytest.approx(normal_half, rel=0.2)
    assert claims.bootstrap_mean(values, seed=1) == found  # seeded: the same interval
    assert claims.bootstrap_mean([*values, None, float("nan")], seed=1) == found
    assert claims.bootstrap_mean([], seed=1) is None
    one = claims.bootstrap_mean([0.9])
    assert (one.estimate, one.low, one.high, one.n) == (0.9, 0.9, 0.9, 1)
    with pytest.raises(ValueError, match="n_boot"):
        claims.bootstrap_mean(values, n_boot=3)
    assert found.text().startswith(f"{values.mean():.3f} [")


@pytest.mark.timeout(30)
def test_verdicts():
    assert claims.verdict(claims.Interval(0.1, 0.05, 0.15, 50)) == "beats"
    assert claims.verdict(claims.Interval(-0.1, -0.15, -0.05, 50)) == "does not beat"
    assert claims.verdict(claims.Interval(0.0, -0.004, 0.006, 50)) == "does not beat"
    assert claims.verdict(claims.Interval(0.02, -0.01, 0.05, 50)) == "cannot tell"
    assert claims.verdict(None) == "cannot tell"

    rng = np.random.default_rng(0)
    learned, control = rng.normal(0.8, 0.05, 200), rng.normal(0.6, 0.05, 300)
    better = claims.compare_means(learned, control, layer=2, seed=(0, 2))
    assert better.verdict == "beats" and better.layer == 2
    assert better.difference.contains(learned.mean() - control.mean())
    assert better.difference.n == 200
    assert better.learned == claims.bootstrap_mean(learned, seed=(0, 2))
    assert "beats the controls by 0.20" in better.sentence()
    assert claims.compare_means(control, learned).verdict == "does not beat"
    same = claims.compare_means(rng.normal(0.6, 0.2, 8), rng.normal(0.6, 0.2, 8))
    assert same.verdict == "cannot tell"
    nothing = claims.compare_means(learned, [])
    assert nothing.verdict == "cannot tell" and nothing.difference is None
    assert nothing.control is None and nothing.learned is not None


@pytest.mark.timeout(30)
def test_layer_claims_and_comparison():
    assert claims.is_word_level(
        ["word", "lemma", "word", "pos", "conjunction", "word"],
        [1, 1, 1, 1, 2, 1],
        [0.9, 0.8, 0.79, 0.95, 0.99, None],
    ).tolist() == [True, True, False, False, False, False]
    learned = claims.ScoredFactors.from_columns(
        1,
        layer=[0, 0, 0, 1, 1, 1, 1],
        factor=[0, 1, 2, 0, 1, 2, 3],
        detection=[0.9, 0.8, None, 0.85, 0.95, 0.9, 0.7],
        word_level=[True, False, True, True, True, False, False],
        level=["low", "mid", "low", "low", "high", None, "mid"],
    )
    assert learned.layers == [0, 1] and learned.detection.size == 6  # the None is not scored
    found = claims.layer_claims(learned, seed=0)
    assert found[0].n_scored == 2 and found[0].detection.estimate == pytest.approx(0.85)
    assert (found[0].word_level.count, found[0].word_level.n) == (1, 2)
    assert found[1].levels["low"].count == 1 and found[1].levels["low"].n == 3
    control = claims.ScoredFactors.from_columns(
        2,
        layer=[0, 0, 0, 1, 1],
        factor=[0, 1, 2, 0, 1],
        detection=[0.55, 0.5, 0.6, 0.52, 0.58],
        word_level=[False] * 5,
        level=["low"] * 5,
    )
    compared = claims.compare_layers(learned, [control], seed=0)
    assert set(compared) == {0, 1}
    assert compared[1].learned == found[1].detection  # one interval for one mean
    assert compared[0].difference.estimate == pytest.approx(0.85 - 0.55)
    assert claims.compare_layers(learned, [])[0].verdict == "cannot tell"
    with pytest.raises(ValueError, match="differ in length"):
        claims.ScoredFactors.from_columns(
            1, layer=[0], factor=[0, 1], detection=[0.5], word_level=[True], level=["low"]
        )


# --------------------------------------------------------------------------- readers


@pytest.mark.timeout(120)
def test_readers_on_a_dictionary_with_controls(dbs):
    with WarehouseReader(dbs["full"]).connect() as con:
        assert ev.has_evidence_tables(con)
        assert queries.active_dictionary_id(con) == 1  # a control is never the default
        assert ev.dictionary_info(con, 2)["kind"] == "control"
        assert ev.dictionary_info(con, 2)["parent_id"] == 1
        assert ev.dictionary_info(con, 99) is None
        controls = ev.dictionary_controls(con, 1)
        assert [c["dictionary_id"] for c in controls] == [2, 3]
        assert {c["control_kind"] for c in controls} == {"gaussian"} and all(
            c["explained"] for c in controls
        )
        assert ev.dictionary_controls(con, 2) == []
        assert ev.explained_layers(con, 1) == list(range(N_LAYERS))
        assert ev.explained_dictionaries(con) == [1]

        factor, found = _explained_factor(dbs["full"])
        assert found["rule"] and {"feature", "value"} <= set(found["rule"][0])
        assert found["detection_low"] <= found["detection"] <= found["detection_high"]
        every = ev.factor_explanations(con, 1, factor)
        assert [e["layer"] for e in every] == list(range(N_LAYERS))
        assert ev.factor_explanation(con, 1, factor, 99) is None

        peak = queries.factor_level(con, factor)["peak_layer"]
        other = (peak + 1) % N_LAYERS
        page = ev.factor_evidence(con, 1, factor, other, peak_layer=peak)
        assert page["kind"] == "learned" and page["parent_id"] is None
        assert page["explained_layers"] == list(range(N_LAYERS))
        assert page["explanation"] == ev.factor_explanation(con, 1, factor, other)
        assert page["peak_explanation"] == found
        assert page["controls"] == ev.control_detection(con, 1, other)

        spread = ev.control_detection(con, 1, 1)
        assert spread["controls"] == [2, 3] and spread["explained"] == [2, 3]
        ((n, p95),) = con.execute(
            "SELECT count(detection), quantile_cont(detection, 0.95) FROM explanation_scores "
            "WHERE dictionary_id IN (2, 3) AND layer = 1"
        ).fetchall()
        assert spread["n_scored"] == n > 0 and spread["p95"] == pytest.approx(p95)
        assert spread["median"] <= spread["p95"]

        scored = ev.scored_factors(con, [1, 2, 3], word_level_at=claims.WORD_LEVEL_DETECTION)
        assert set(scored["dictionary_id"]) == {1, 2, 3}
        assert scored["detection"].null_count() == 0
        again = claims.is_word_level(
            scored["rule_kind"].to_list(), scored["n_terms"].to_list(), scored["detection"]
        )
        assert scored["word_level"].to_list() == again.tolist()
        assert scored.filter(scored["dictionary_id"] == 1)["word_level"].any()
        levels = dict(
            con.execute(
                "SELECT factor, level FROM summary_levels WHERE dictionary_id = 1"
            ).fetchall()
        )
        mine = scored.filter(scored["dictionary_id"] == 1)
        assert all(levels.get(f) == lv for f, lv in zip(mine["factor"], mine["level"], strict=True))

        quality = ev.quality_beside_controls(con, 1)
        assert quality["role"].to_list()[0] == "dictionary"
        assert set(quality["dictionary_id"]) == {1, 2, 3}
        assert quality.height == 3 * N_LAYERS
        counts = ev.level_counts(con, [1, 2])
        assert counts.filter(counts["dictionary_id"] == 1)["n_factors"].sum() == len(levels)


@pytest.mark.timeout(60)
def test_readers_say_nothing_yet_without_explanations(dbs):
    with WarehouseReader(dbs["plain"]).connect() as con:
        assert ev.dictionary_controls(con, 1) == []
        assert ev.explained_layers(con, 1) == []
        assert ev.factor_explanation(con, 1, 0, 0) is None
        assert ev.scored_factors(con, [1]).height == 0
        spread = ev.control_detection(con, 1, 0)
        assert spread["controls"] == [] and spread["n_scored"] == 0 and spread["p95"] is None
    with WarehouseReader(dbs["unexplained_controls"]).connect() as con:
        (control,) = ev.dictionary_controls(con, 1)
        assert not control["explained"]
        assert ev.control_detection(con, 1, 0)["n_scored"] == 0


# --------------------------------------------------------------------------- labels


@pytest.mark.timeout(120)
def test_the_explanation_at_the_peak_is_the_automatic_label(dbs, pages, tmp_path):
    db = copy_db(dbs["full"], tmp_path)  # labels are written
    factor, found = _explained_factor(db)
    other, _ = _explained_factor(db, at_peak=False)
    with WarehouseReader(db).connect() as con:
        label = queries.factor_label(con, factor)
        assert label == {
            "factor": factor,
            "label": found["text"],
            "source": "auto",
            "auto_label": found["text"],
        }
        words = con.execute(
            "SELECT label FROM auto_labels WHERE dictionary_id = 1 AND factor = ?", [other]
        ).fetchall()[0][0]
        assert queries.factor_label(con, other)["label"] == words  # no rule: the top words
        assert queries.factor_labels(con, [factor, other]) == {factor: found["text"], other: words}
        assert queries.factor_page(con, factor)["auto_label"] == found["text"]
        hits = queries.search_labels(con, found["text"][-6:])
        assert factor in hits["factor"].to_list()
    # the Analyze page's labels and the factor page read the same
    assert logic.factor_labels(db, {factor}) == {factor: found["text"]}
    logic.save_label(db, factor, "a person's words")
    with WarehouseReader(db).connect() as con:
        label = queries.factor_label(con, factor)
        assert (label["label"], label["source"]) == ("a person's words", "user")
        assert label["auto_label"] == found["text"]  # still there, and searchable
        assert factor in queries.search_labels(con, "person")["factor"].to_list()
        assert factor in queries.search_labels(con, found["text"][-6:])["factor"].to_list()
    view = logic.factor_view(db, factor)
    assert view.user_label == "a person's words" and view.auto_label == found["text"]
    # the Search page lists both, each marked by who made it
    with WarehouseReader(db).connect() as con:
        hits = queries.search_labels(con, "o", limit=1000)
    assert {"user", "auto"} <= set(hits.filter(hits["factor"] == factor)["source"])
    shown = _text(pages["/search"].render_label_hits(hits))
    assert "a person's words" in shown and '"yours"' in shown and '"auto"' in shown


# --------------------------------------------------------------------------- factor page


def _factor_card(pages, monkeypatch, db: Path, **query) -> str:
    from factorscope.dash_app import ids

    monkeypatch.setattr(config, "db_path", lambda: db)
    page = pages["/"].layout(**query)
    text = _text(page)
    assert ids.EXPLANATION in text, text[:500]
    return text


@pytest.mark.timeout(120)
def test_factor_page_explanation_card(dbs, pages, monkeypatch):
    text = _factor_card(pages, monkeypatch, dbs["plain"], factor="3")
    assert "No explanations for dictionary 1 yet" in text
    assert "factorscope explain --dictionary 1" in text

    factor, found = _explained_factor(dbs["explained"])
    layer = found["layer"]
    text = _factor_card(pages, monkeypatch, dbs["explained"], factor=str(factor))
    assert found["text"] in text and f"Explanation at layer {layer}" in text
    assert (
        f"{found['detection']:.2f} [{found['detection_low']:.2f}, "
        f"{found['detection_high']:.2f}] (chance 0.50)" in text
    )
    assert "top quintile" in text and "AUROC" in text and "localisation" in text
    assert f"{found['n_active']:,} active tokens held out" in text
    assert "No control dictionary to compare with" in text
    assert "factorscope learn --control gaussian --parent 1" in text
    assert "short rule that best explains" in text  # the auto label says where it comes from
    assert "/evidence" in text

    text = _factor_card(pages, monkeypatch, dbs["full"], factor=str(factor), layer=str(layer))
    with WarehouseReader(dbs["full"]).connect() as con:
        spread = ev.control_detection(con, 1, layer)
    assert (
        f"Controls' 95th percentile at layer {layer}: {spread['p95']:.2f} "
        f"(median {spread['median']:.2f}; {spread['n_scored']:,} control factors, "
        "dictionaries 2, 3)" in text
    )

    text = _factor_card(pages, monkeypatch, dbs["unexplained_controls"], factor="3")
    assert "No explanations for dictionary 1 yet" in text

    rare = next(
        (f, e)
        for f in range(N_FACTORS)
        for e in [logic.factor_view(dbs["full"], f).evidence.explanation]
        if e is not None and not e["explained"]
    )
    text = _factor_card(pages, monkeypatch, dbs["full"], factor=str(rare[0]))
    assert rare[1]["text"] in text
    assert "too rare to explain" in rare[1]["text"] or "no short rule" in rare[1]["text"]

    text = _factor_card(pages, monkeypatch, dbs["full"], factor="3", dictionary="2")
    assert "dictionary 2" in text and "is a control (random atoms) of dictionary 1" in text


# --------------------------------------------------------------------------- Evidence page


@pytest.mark.timeout(120)
def test_evidence_page(dbs, pages, monkeypatch):
    from factorscope.dash_app import ids

    assert ("Evidence", "/evidence") in navigation.NAV_LINKS
    page = pages["/evidence"]

    monkeypatch.setattr(config, "db_path", lambda: dbs["plain"])
    text = _text(page.layout())
    assert "Dictionary 1 has not been explained yet" in text
    assert "factorscope explain --dictionary 1" in text
    assert ids.EVIDENCE_CONTROLS in text and "factorscope learn --control gaussian" in text
    assert ids.EVIDENCE_QUALITY in text and ids.EVIDENCE_FIGURE not in text

    monkeypatch.setattr(config, "db_path", lambda: dbs["explained"])
    text = _text(page.layout())
    assert ids.EVIDENCE_FIGURE in text and ids.EVIDENCE_TABLE in text
    assert "has no control" in text and "no control" in text

    monkeypatch.setattr(config, "db_path", lambda: dbs["unexplained_controls"])
    text = _text(page.layout())
    assert "has not been explained yet" in text and "has no control" not in text

    monkeypatch.setattr(config, "db_path", lambda: dbs["full"])
    view = logic.evidence_view(dbs["full"])
    assert view.control_ids == [2, 3] and view.scored_controls == [2, 3]
    assert set(view.claims) == {1, 2, 3} and set(view.comparisons) == set(range(N_LAYERS))
    assert {c.verdict for c in view.comparisons.values()} == {"beats"}  # made so
    assert logic.evidence_view(dbs["full"]) is view  # cached per file version
    text = _text(page.layout(dictionary="1"))
    assert ids.EVIDENCE_MESSAGE not in text and ids.EVIDENCE_CONTROLS not in text
    for d in (1, 2, 3):
        claim = view.claims[d][0]
        assert claim.detection.text() in text and claim.word_level.text() in text
    assert '"beats"' in text and "control 3" in text and "dictionary 1" in text
    figure = page.ui.detection_figure(view.claims, 1, [2, 3])
    names = [t["name"] for t in figure["data"]]
    assert names == ["dictionary 1", "control 2", "control 3", "chance"]
    first = figure["data"][0]
    assert first["error_y"]["array"][0] == pytest.approx(
        view.claims[1][0].detection.high - view.claims[1][0].detection.estimate
    )
    assert first["line"]["color"] != figure["data"][1]["line"]["color"]

    text = _text(page.layout(dictionary="2"))
    assert "Dictionary 2 is a control" in text and "/evidence?dictionary=1" in text
    text = _text(page.layout(dictionary="x"))
    assert "is not a dictionary id" in text
