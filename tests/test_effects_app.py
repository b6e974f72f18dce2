"""What a factor does, in the app (issue 21): the factor page's Effects card and the
Analyze page's Steer panel.

On copies of the real tiny pipeline run (a tiny BERT without a language-model head: the
sentence-embedding effect): the card with nothing stored (the button, the command), with
rows written through the backend's writer (the measures beside the control's, the
neighbours' effects, the sentences moved most), and a model with a head's output-token
tables; the on-demand job measures with the real model, stores the effect and the page
reads it back; the steering callback runs the real model too, and refuses bad input
with a message. Callbacks are called as plain functions, without a browser.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dash
import pytest

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, effect_jobs, ids, logic
from factorscope.errors import InputError
from factorscope.stages.effects import (
    FactorEffect,
    Measures,
    OutputToken,
    SentenceEffect,
    effect_rows,
)
from factorscope.warehouse import effects as ew
from factorscope.warehouse.queries import WarehouseReader
from tests.conftest import SENTENCES, copy_db


def _text(tree) -> str:
    return json.dumps(tree, default=lambda o: o.to_plotly_json(), ensure_ascii=False)


@pytest.fixture(scope="module")
def pages(tiny_pipeline_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The app's page modules by path (pages register with an app)."""
    from factorscope.dash_app import create_app

    db = copy_db(tiny_pipeline_db, tmp_path_factory.mktemp("effects-app"))
    create_app(db, lime_auto_contexts=0)
    return {p["path"]: sys.modules[p["module"]] for p in dash.page_registry.values()}


@pytest.fixture
def db(tiny_pipeline_db: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny run, served by the app (its own config: a new analyzer)."""
    path = copy_db(tiny_pipeline_db, tmp_path)
    config.configure(config.AppConfig(db_path=path, lime_auto_contexts=0))
    return path


def _busy_factor(db: Path) -> tuple[int, int, logic.FactorView]:
    """A factor with contexts and neighbours at its peak layer."""
    for factor in range(logic.dictionary_size(db)):
        view = logic.factor_view(db, factor)
        if view.total_contexts >= 3 and view.neighbors is not None and view.neighbors.height:
            return factor, view.layer, view
    raise AssertionError("no busy factor in the tiny run")


def _state(view: logic.FactorView) -> dict:
    return {
        "factor": view.factor,
        "layer": view.layer,
        "dictionary": None,
        "shown": view.dictionary_id,
    }


def _effect(
    db: Path,
    factor: int,
    layer: int,
    *,
    kind: str = "sentence-embedding",
    shift: float = 0.0312,
    control: float = 0.0021,
    source: str = "stage",
) -> FactorEffect:
    """A made-up effect of (factor, layer), on two real sentences of the run."""
    with WarehouseReader(db).connect() as con:
        texts = ew.sentence_texts(con, [0, 1])
    head = kind != "sentence-embedding"
    output = {}
    if head:
        output = {
            "ablation": {
                "promoted": [OutputToken(2001, "bank", 0.91), OutputToken(2002, "river", 0.4)],
                "suppressed": [OutputToken(2003, "money", -0.52)],
            },
            "direct": {
                "promoted": [OutputToken(2004, "shore", 0.33)],
                "suppressed": [OutputToken(2005, "loan", -0.27)],
            },
        }
    return FactorEffect(
        dictionary_id=1,
        factor=factor,
        layer=layer,
        output_kind=kind,
        n_sentences=2,
        n_tokens=3,
        mean_alpha=0.42,
        edit_norm=1.5,
        edit_rel=0.081,
        ablation=Measures(
            state_change=0.12,
            state_cosine=0.991,
            embedding_shift=shift,
            embedding_change=0.25,
            output_kl=0.77 if head else None,
            top_logprob_change=-0.3 if head else None,
        ),
        control=Measures(
            state_change=0.011,
            state_cosine=0.9999,
            embedding_shift=control,
            embedding_change=0.02,
            output_kl=0.0123 if head else None,
            top_logprob_change=-0.001 if head else None,
        ),
        output_tokens=output,
        sentences=[
            SentenceEffect(0, texts[0], 2, shift * 1.5, control, 0.2),
            SentenceEffect(1, texts[1], 1, shift * 0.5, control, 0.1),
        ],
        settings={"n_contexts": 16, "top_tokens": 10, "seed": 0},
        seconds=0.4,
        source=source,
    )


# --------------------------------------------------------------------------- the card


@pytest.mark.timeout(300)
def test_without_stored_effects_the_card_offers_to_measure(pages, db):
    factor, layer, view = _busy_factor(db)
    assert view.effects is not None and view.effects.effect is None
    assert view.effects.output_kind == "sentence-embedding"  # the tiny BertModel: no head
    text = _text(pages["/"].layout(factor=str(factor)))
    assert ids.EFFECTS in text and ids.EFFECTS_RUN in text
    assert f"Effects at layer {layer}" in text and f"Measure at layer {layer}" in text
    assert "factorscope effects" in text and "measures every factor at its peak layer" in text
    assert "This model has no language-model head" in text
    assert "factorscope shows the sentence-embedding effect" in text
    assert "No neighbour's effect is stored yet" in text
    assert f"/analyze?steer={factor}&amp;layer={layer}" in text or (
        f"/analyze?steer={factor}&layer={layer}" in text
    )


@pytest.mark.timeout(300)
def test_stored_effects_show_beside_the_control_and_the_neighbours(pages, db):
    factor, layer, view = _busy_factor(db)
    neighbours = view.neighbors["neighbor"].to_list()[:2]
    effects = [_effect(db, factor, layer)]
    effects += [
        _effect(db, int(n), layer, shift=0.005 * (i + 1), control=0.001)
        for i, n in enumerate(neighbours)
    ]
    assert ew.put_effect(db, 1, effect_rows(effects))

    text = _text(pages["/"].layout(factor=str(factor)))
    assert ids.EFFECTS_RUN not in text  # stored: no button
    assert f"Removing factor {factor} at layer {layer}" in text
    assert "turns the sentence embedding by 0.0312" in text and "(control 0.0021)" in text
    assert "14.9× the random direction of the same norm" in text
    assert "sentence embedding turned (1 − cos)" in text and "0.0312" in text
    assert "same tokens' last layer moved" in text and "0.12" in text and "0.011" in text
    assert "output distribution" not in text  # no head: no KL row
    assert "sentences moved most" in text and SENTENCES[0] in text
    assert "Neighbours' effects" in text and f"f{factor} (this factor)" in text
    for i, n in enumerate(neighbours):
        assert f"/factor/{n}?layer={layer}" in text
        assert f"{0.005 * (i + 1):.3g}" in text
    assert "Stored by " in text and "(every factor at its peak layer)" in text
    assert "This model has no language-model head" in text

    # another layer: nothing stored there; the button, and where one is stored
    other = (layer + 1) % len(view.layers)
    text = _text(pages["/"].layout(factor=str(factor), layer=str(other)))
    assert f"Measure at layer {other}" in text
    assert "Stored for this factor at layer " in text and f"/factor/{factor}?layer={layer}" in text


@pytest.mark.timeout(120)
def test_a_head_model_shows_promoted_and_suppressed_tokens(db):
    effect = _effect(db, 3, 1, kind="masked-lm").to_dict()
    with logic.dictionary_scope(None):
        body = _text(ui.effect_body(effect, headline="output_kl"))
    assert "moves the output distribution by KL 0.77" in body and "(control 0.0123)" in body
    assert "Promoted" in body and "Suppressed" in body
    for token in ("bank", "river", "money", "shore", "loan"):
        assert token in body
    assert "+0.91" in body and "-0.52" in body
    assert "Direct effect" in body
    assert "output distribution moved (KL, nats)" in body
    note = _text(ui.output_kind_note("masked-lm", logic.OUTPUT_KIND_TEXT))
    assert "masked-language-model head" in note and "promotes and suppresses" in note
    # nothing edited: said so, no table of zeros
    empty = {**effect, "n_tokens": 0}
    assert "nothing to remove" in _text(ui.effect_body(empty, headline="output_kl"))


# --------------------------------------------------------------------------- on demand


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_on_demand_job_measures_stores_and_the_page_reads_it(pages, db):
    factor, layer, view = _busy_factor(db)
    page = pages["/"]
    state = _state(view)
    assert page.run_effect(None, state) == (dash.no_update,) * 3  # inserted, not clicked

    job_id, disabled, message = page.run_effect(1, state)
    assert job_id and disabled is False and "Measuring factor" in _text(message)
    # the poll while it runs keeps polling, and then draws the result
    found = effect_jobs.wait(job_id, timeout=240)
    assert found["finished"] and found["error"] is None, found["error"]
    result = found["result"]
    assert result["cached"] is False and result["source"] == "on-demand"
    assert result["output_kind"] == "sentence-embedding" and result["n_tokens"] > 0
    assert result["seconds"] < 3.0  # the measurement itself (the model was loading before)
    body, feedback, poll_off = page.poll_effect(1, job_id, state)
    text = _text(body)
    assert poll_off is True and feedback == ""
    assert "turns the sentence embedding by" in text and "(control " in text
    assert "Measured on demand" in text

    # stored: the next page load reads it (no button), and so does the reader
    with WarehouseReader(db).connect() as con:
        stored = ew.factor_effect(con, view.dictionary_id, factor, layer)
    assert stored is not None and stored["source"] == "on-demand"
    text = _text(page.layout(factor=str(factor)))
    assert ids.EFFECTS_RUN not in text and "Measured on demand" in text

    # another layer, with the model loaded: it answers within 3 s
    other = (layer + 1) % len(view.layers)
    other_view = logic.factor_view(db, factor, other)
    started = time.monotonic()
    job_id, _, _ = page.run_effect(1, _state(other_view))
    found = effect_jobs.wait(job_id, timeout=60)
    assert time.monotonic() - started < 3.0
    assert found["error"] is None and found["result"]["layer"] == other

    # the same layer again: read back, not measured
    job_id, _, _ = page.run_effect(1, state)
    assert effect_jobs.wait(job_id, timeout=60)["result"]["cached"] is True

    # unknown or lost job: the poll stops quietly
    assert page.poll_effect(1, "no-such-job", state) == (dash.no_update, "", True)


@pytest.mark.timeout(120)
def test_a_job_without_a_model_says_so(pages, db, monkeypatch):
    _, _, view = _busy_factor(db)

    class NoModel:
        def effect_model(self):
            raise OSError("model folder gone")

    job_id = effect_jobs.start(db, NoModel, view.dictionary_id, view.factor, view.layer)
    found = effect_jobs.wait(job_id, timeout=30)
    assert "needs the run's model" in found["error"] and "model folder gone" in found["error"]
    _, feedback, poll_off = pages["/"].poll_effect(1, job_id, _state(view))
    assert poll_off is True and "model folder gone" in _text(feedback)


# --------------------------------------------------------------------------- steering


def test_parse_strength():
    assert logic.parse_strength(None) is None and logic.parse_strength("  ") is None
    assert logic.parse_strength("2.5") == 2.5 and logic.parse_strength(-1) == -1.0
    assert logic.parse_strength("1e1") == 10.0
    for bad, fragment in (("abc", "not a strength"), ("5000", "from -1000 to 1000")):
        with pytest.raises(InputError, match=fragment):
            logic.parse_strength(bad)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_steering_on_the_analyze_page(pages, db):
    page = pages["/analyze"]
    factor, _, _ = _busy_factor(db)
    text = _text(page.layout(steer=str(factor), layer="1"))
    assert ids.STEER_FACTOR in text and ids.STEER_RUN in text
    assert f'"value": "{factor}"' in text and '"value": "1"' in text

    sentence = SENTENCES[0]
    output, message = page.steer(1, sentence, str(factor), "1", "", None)
    assert message is None
    text = _text(output)
    assert f"× f{factor} (dictionary 1) at layer 1 to " in text
    assert "the mean α of its strongest contexts at layer" in text
    assert "Sentence embedding: cos(before, after) = " in text
    assert "Layer 0 is unchanged" in text
    assert "Layer 1: top factor changed at" in text and "Layer 2: top factor changed at" in text
    assert "Layer 0:" not in text
    assert "rose most" in text and f"/factor/{factor}?layer=1" in text
    assert "no language-model head: there are no predictions" in text

    output, message = page.steer(1, sentence, str(factor), "0", "-2.5", None)
    assert message is None and f"Added -2.5 × f{factor} (dictionary 1) at layer 0" in _text(output)

    # the model is loaded once and shared: the analyzer's, and its effect model
    analyzer = config.get_config().analyzer(None)
    model = analyzer.effect_model()
    assert config.get_config().analyzer(None).effect_model() is model
    assert model.loaded is analyzer.loaded

    for args, fragment in (
        (("", str(factor), "1", ""), "Type a sentence to steer."),
        ((sentence, "100000", "1", ""), "does not exist"),
        ((sentence, "-1", "1", ""), "is negative"),
        ((sentence, "", "1", ""), "No factor given"),
        ((sentence, str(factor), "9", ""), "Layer '9' does not exist"),
        ((sentence, str(factor), None, ""), "Choose the layer"),
        ((sentence, str(factor), "1", "lots"), "is not a strength"),
        ((sentence, str(factor), "1", "1e9"), "from -1000 to 1000"),
    ):
        output, message = page.steer(1, *args, None)
        assert output is None and fragment in _text(message), (args, _text(message))
    assert page.steer(None, sentence, str(factor), "1", "", None) == (dash.no_update,) * 2


@pytest.mark.timeout(120)
def test_steering_without_a_model_says_so(pages, db):
    class Fake:  # an analyzer without steering (a test double of the Analyze page's)
        def decompose(self, text, *, top=8):
            return []

    config.configure(
        config.AppConfig(db_path=db, analyzer_factory=lambda _p, _d: Fake(), lime_auto_contexts=0)
    )
    output, message = pages["/analyze"].steer(1, SENTENCES[0], "1", "1", "", None)
    assert output is None and "Steering needs the run's model" in _text(message)

    def broken(_path, _dictionary):
        raise OSError("no model here")

    config.configure(config.AppConfig(db_path=db, analyzer_factory=broken))
    output, message = pages["/analyze"].steer(1, SENTENCES[0], "1", "1", "", None)
    assert "Steering is not available for this database: no model here" in _text(message)
