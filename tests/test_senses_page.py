"""The Senses page's plain functions and layout, over a database probed for real."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from factorscope.dash_app import logic
from factorscope.errors import InputError
from tests.conftest import copy_db

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.verb").is_file(), reason="wordnet-base not installed"
)


def _text(component) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json())


@pytest.fixture(scope="module")
def dbs(tmp_path_factory, tiny_pipeline_db) -> tuple[Path, Path]:
    """(unprobed, probed on left and play) copies of the tiny pipeline database."""
    from factorscope.stages.probe import ProbeSettings, probe_corpus_config, run_probe

    root = tmp_path_factory.mktemp("senses-page")
    (root / "probed").mkdir()
    probed = copy_db(tiny_pipeline_db, root / "probed")
    run_probe(probed, ProbeSettings(lemmas=("left", "play")), corpus=probe_corpus_config("wordnet"))
    return copy_db(tiny_pipeline_db, root), probed


def test_senses_view(dbs):
    unprobed, probed = dbs
    assert logic.senses_view(unprobed) is None
    view = logic.senses_view(probed)
    assert view.lemma == "left" and view.lemmas == ["left", "play"]  # "left" by default
    assert view.layers == [0, 1, 2]
    assert set(view.summary["representation"]) == {"codes", "states"}
    assert logic.senses_view(probed, " PLAY ").lemma == "play"
    with pytest.raises(InputError, match="'zebra' was not probed; probed words: left, play"):
        logic.senses_view(probed, "zebra")


def test_sense_groups():
    rows = []
    for occ, sense, gloss in ((0, "adj.all", "g1"), (1, "adj.all", "g2"), (2, "verb", "g3")):
        for layer, factor in ((0, 5), (1, 7 if occ else None)):
            rows.append(
                {
                    "occurrence": occ,
                    "sense": sense,
                    "synset": f"s{occ}",
                    "gloss": gloss,
                    "sentence_idx": None,
                    "text": f"left {occ}",
                    "word_start": 0,
                    "word_end": 4,
                    "layer": layer,
                    "factor": factor,
                    "alpha": None if factor is None else 0.5,
                }
            )
    groups = logic.sense_groups(pl.DataFrame(rows))
    assert [g["sense"] for g in groups] == ["adj.all", "verb"]
    assert groups[0]["glosses"] == ["g1", "g2"]
    assert [len(g["rows"]) for g in groups] == [2, 1]
    assert groups[0]["rows"][0]["tops"] == [(0, 5, 0.5), (1, None, None)]
    assert groups[1]["rows"][0]["tops"] == [(0, 5, 0.5), (1, 7, 0.5)]


def test_layout_and_callback(dbs, monkeypatch):
    from factorscope.dash_app import config, create_app

    unprobed, probed = dbs
    create_app(probed, lime_auto_contexts=0)  # pages register with an app
    from factorscope.dash_app.pages import senses as page

    monkeypatch.setattr(config, "db_path", lambda: unprobed)
    text = _text(page.layout(lemma="left"))
    assert "factorscope probe --corpus wordnet" in text and "senses-message" in text
    monkeypatch.setattr(config, "db_path", lambda: probed)
    text = _text(page.layout(lemma="left"))
    assert "senses-curve" in text and "senses-groups" in text and "adj.all" in text
    assert "/factor/" in text and "layer=2" in text
    assert "was not probed" in _text(page.layout(lemma="zebra"))
    assert page.pick_lemma("play") == "/senses?lemma=play"
    assert page.pick_lemma(None) is not None  # no_update
