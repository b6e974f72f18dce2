"""`factorscope probe`: the scores against hand-computed cases, then the real stage.

The hand-computed case (six vectors, two senses) is worked out in the comments, so a
reader can check every number without running anything.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from factorscope.cli import main
from factorscope.errors import InputError
from factorscope.stages.probe import (
    Occurrence,
    ProbeSettings,
    chance_accuracy,
    labelled_occurrences,
    loo_1nn_accuracy,
    nearest_neighbours,
    off_word_share,
    qualifying,
    top_factors,
    word_factor,
)
from factorscope.warehouse import senses
from factorscope.warehouse.connection import connect
from tests.conftest import copy_db

# Six 2-D vectors at these angles (degrees); cosine similarity is cos(angle difference).
#   sense a: 0, 10, 50        sense b: 40, 90, 100
# Nearest other vector by angle (ties go to the first index; none here):
#   0 -> 10 (a, right)    10 -> 0 (a, right)     50 -> 40 (b, wrong)
#   40 -> 50 (a, wrong)   90 -> 100 (b, right)   100 -> 90 (b, right)
# LOO 1-NN accuracy = 4/6. Chance = (3*2 + 3*2) / (6*5) = 12/30 = 0.4.
ANGLES = [0, 10, 50, 40, 90, 100]
LABELS = ["a", "a", "a", "b", "b", "b"]


def _vectors(angles, scale=1.0):
    rad = np.deg2rad(angles)
    return scale * np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_loo_1nn_accuracy_by_hand():
    X = _vectors(ANGLES)
    assert nearest_neighbours(X).tolist() == [1, 0, 3, 2, 5, 4]
    assert loo_1nn_accuracy(X, LABELS) == pytest.approx(4 / 6)
    # cosine: the length of a vector does not matter
    X_scaled = X * np.array([[1], [5], [0.1], [3], [2], [7]])
    assert loo_1nn_accuracy(X_scaled, LABELS) == pytest.approx(4 / 6)


def test_chance_is_a_random_neighbours_accuracy():
    assert chance_accuracy(LABELS) == pytest.approx(0.4)
    # 4 of one sense, 2 of another: (4*3 + 2*1) / (6*5) = 14/30
    assert chance_accuracy(list("aaaabb")) == pytest.approx(14 / 30)
    # a random neighbour's accuracy, simulated
    rng = np.random.default_rng(0)
    y = np.array(list("aaaabb"))
    hits = []
    for _ in range(20_000):
        i = rng.integers(6)
        j = rng.choice([k for k in range(6) if k != i])
        hits.append(y[i] == y[j])
    assert np.mean(hits) == pytest.approx(14 / 30, abs=0.01)


def test_zero_vectors_and_ties():
    # rows 1 and 2 are equally similar to row 0 (both identical to it): the first wins;
    # an all-zero row is similarity 0 to every row, so its neighbour is the first other row.
    X = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    assert nearest_neighbours(X).tolist() == [1, 0, 0, 0]


def test_top_factors_word_factor_and_off_word_share():
    codes0 = np.array(
        [
            [0.0, 0.9, 0.1],  # top 1
            [0.0, 0.8, 0.0],  # top 1
            [0.5, 0.0, 0.0],  # top 0
            [0.0, 0.0, 0.0],  # none
        ]
    )
    tops, alpha = top_factors(codes0)
    assert tops.tolist() == [1, 1, 0, -1]
    assert alpha.tolist() == pytest.approx([0.9, 0.8, 0.5, 0.0])
    assert word_factor(tops) == 1
    assert word_factor([2, 0, 0, 2]) == 0  # a tie goes to the smaller factor
    assert word_factor([-1, -1]) is None
    # at layer 0 itself: 2 of 4 occurrences have another top factor (0) or none
    assert off_word_share(tops, 1) == pytest.approx(0.5)
    assert off_word_share([2, 2, 1, 3], 1) == pytest.approx(0.75)
    assert off_word_share([2, 2], None) is None


def test_selection_keeps_senses_with_enough_examples():
    items = (
        [(None, f"left a{i}", {"word": "left", "lexname": "adj.all"}) for i in range(5)]
        + [(None, f"left v{i}", {"word": "left", "lexname": "verb.motion"}) for i in range(6)]
        + [(None, f"left n{i}", {"word": "left", "lexname": "noun.act"}) for i in range(2)]
        + [(None, f"bank {i}", {"lemma": "bank", "lexname": "noun.group"}) for i in range(9)]
        + [(None, "no label", {"word": "left"}), (None, "no metadata", None)]
    )
    occurrences = labelled_occurrences(items, ProbeSettings())
    assert len(occurrences) == 5 + 6 + 2 + 9
    groups = qualifying(occurrences, ProbeSettings())
    assert list(groups) == ["left"]  # bank has one sense
    assert list(groups["left"]) == ["adj.all", "verb.motion"]  # noun.act has 2 < 5
    assert qualifying(occurrences, ProbeSettings(min_examples=2))["left"].keys() == {
        "adj.all",
        "noun.act",
        "verb.motion",
    }
    assert qualifying(occurrences, ProbeSettings(lemmas=("bank",))) == {}


def test_settings_are_checked():
    with pytest.raises(InputError, match="--min-senses"):
        ProbeSettings(min_senses=1)
    with pytest.raises(InputError, match="--max-examples"):
        ProbeSettings(min_examples=5, max_examples=3)
    assert ProbeSettings(lemmas="Left, bank,left").lemmas == ("left", "bank")


def test_locate_takes_the_first_piece_of_the_first_whole_word(tiny_model_dir):
    from factorscope.ingest.model import load_model
    from factorscope.ingest.runner import tokenize
    from factorscope.stages.probe import locate

    loaded = load_model(str(tiny_model_dir))
    text = "He left; she left-handedly waved left"
    (ts,) = tokenize(loaded, [text])
    hit = locate(Occurrence("left", "v", text), ts)
    assert (hit.word_start, hit.word_end) == (3, 7)
    assert ts.pieces[hit.position] == "left"
    assert ts.positions[hit.row] == hit.position
    assert (
        locate(Occurrence("didn't", "v", "I didn't go"), tokenize(loaded, ["I didn't go"])[0])
        is None
    )


# ----------------------------------------------------------------------------- the stage


def _wordnet_installed() -> bool:
    from factorscope.ingest.wordnet import WORDNET_DIR

    return (WORDNET_DIR / "data.verb").is_file()


needs_wordnet = pytest.mark.skipif(not _wordnet_installed(), reason="wordnet-base not installed")


@needs_wordnet
def test_left_has_two_senses_with_five_examples_in_wordnet():
    from factorscope.ingest.corpus import read_corpus
    from factorscope.stages.probe import probe_corpus_config

    sentences = read_corpus(probe_corpus_config("wordnet"))
    groups = qualifying(
        labelled_occurrences([(None, s.text, s.metadata) for s in sentences], ProbeSettings()),
        ProbeSettings(),
    )
    assert "left" in groups and len(groups["left"]) >= 2
    assert all(len(o) >= 5 for o in groups["left"].values())
    # "left" the adjective and "left" the past of leave
    assert {"adj.all"} < set(groups["left"]) and any(s.startswith("verb.") for s in groups["left"])


@needs_wordnet
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_probe_on_wordnet_with_tiny_bert(tmp_path, tiny_pipeline_db, capsys):
    db = copy_db(tiny_pipeline_db, tmp_path)
    # The run's own sentences carry no labels: a clear message, the database unchanged.
    before = db.read_bytes()
    assert main(["probe", "--db", str(db)]) == 2
    assert "--corpus wordnet" in capsys.readouterr().err
    assert db.read_bytes() == before

    argv = ["probe", "--db", str(db), "--corpus", "wordnet", "--lemmas", "left,bank,play"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "probe: 2 words" in out and "not probed" in out and "bank" in out

    con = connect(db, read_only=True)
    try:
        info = senses.probe_info(con)
        assert info["source"] == "wordnet" and info["n_lemmas"] == 2
        assert info["settings"]["lemmas"] == ["left", "bank", "play"]
        lemmas = senses.probe_lemmas(con, info["dictionary_id"])
        assert lemmas["lemma"].to_list() == ["left", "play"]
        scores = senses.probe_scores(con, info["dictionary_id"], "left")
        n_layers = 3  # the tiny BERT: embeddings + 2 blocks
        assert scores.height == 2 * n_layers
        occ = senses.lemma_occurrences(con, info["dictionary_id"], "left")
        n = int(scores["n_occurrences"][0])
        assert occ.height == n * n_layers
        # the stored scores are the functions' results on the stored top factors
        tops = {
            layer: occ.filter(occ["layer"] == layer)["factor"].fill_null(-1).to_list()
            for layer in range(n_layers)
        }
        wf = word_factor(tops[0])
        codes = scores.filter(scores["representation"] == "codes").sort("layer")
        assert codes["word_factor"].to_list() == [wf] * n_layers
        for layer in range(n_layers):
            assert codes["off_word_share"][layer] == pytest.approx(off_word_share(tops[layer], wf))
        labels = occ.filter(occ["layer"] == 0)["sense"].to_list()
        assert codes["chance"][0] == pytest.approx(chance_accuracy(labels))
        assert all(0 <= a <= 1 for a in scores["accuracy"].to_list())
        # the word's span is the word
        first = occ.row(0, named=True)
        assert first["text"][first["word_start"] : first["word_end"]].lower() == "left"
        summary = senses.probe_summary(con, info["dictionary_id"])
        assert summary.height == 2 * n_layers
        row = summary.filter(summary["representation"] == "codes").row(0, named=True)
        assert row["n_lemmas"] == 2
        assert row["accuracy_lo"] <= row["accuracy"] <= row["accuracy_hi"]
        mean = scores.filter(scores["representation"] == "codes")["accuracy"][0]
        other = senses.probe_scores(con, info["dictionary_id"], "play")
        mean = (mean + other.filter(other["representation"] == "codes")["accuracy"][0]) / 2
        assert row["accuracy"] == pytest.approx(mean)
    finally:
        con.close()

    # The same probe again is nothing to do; --force redoes it, with the same results.
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*argv, "--force"]) == 0
    assert "probe: 2 words" in capsys.readouterr().out

    # Probing with other settings replaces the rows of this dictionary.
    assert main([*argv[:-1], "left", "--max-examples", "5"]) == 0
    con = connect(db, read_only=True)
    try:
        info = senses.probe_info(con)
        assert senses.probe_lemmas(con, info["dictionary_id"])["lemma"].to_list() == ["left"]
        left = senses.probe_scores(con, info["dictionary_id"], "left")
        assert left["n_occurrences"][0] == 5 * left["n_senses"][0]
    finally:
        con.close()


def test_codes_match_the_stored_codes_for_run_sentences(tmp_path, tiny_model_dir):
    """A labelled run: the probe reads sentences.metadata, and its codes are encode's."""
    from factorscope.stages.probe import run_probe

    rows = []
    for i in range(6):
        rows.append({"text": f"She turned left at corner number {i}.", "w": "left", "s": "dir"})
        rows.append({"text": f"He left the house at {i} o'clock.", "w": "left", "s": "leave"})
    corpus = tmp_path / "labelled.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "labelled.duckdb"
    base = ["--db", str(db)]
    assert (
        main(
            [
                "ingest",
                *base,
                "--corpus",
                str(corpus),
                "--model",
                str(tiny_model_dir),
                "--metadata-fields",
                "w",
                "--label-field",
                "s",
                "--sample-size",
                "all",
                "--max-sentences",
                "all",
            ]
        )
        == 0
    )
    assert main(["learn", *base, "-m", "24", "--lambda", "0.05", "--seed", "0"]) == 0
    assert main(["encode", *base]) == 0
    con = connect(db, read_only=True)
    try:
        labelled = senses.labelled_sentences(con)
        assert len(labelled) == 12 and labelled[0][2] == {"w": "left", "s": "dir"}
    finally:
        con.close()
    summary = run_probe(db, ProbeSettings(key="w", sense="s", min_examples=5))
    assert summary.source == "run" and summary.n_lemmas == 1 and summary.n_occurrences == 12
    con = connect(db, read_only=True)
    try:
        occ = senses.lemma_occurrences(con, summary.dictionary_id, "left")
        stored = con.execute(
            "SELECT c.layer, t.sentence_idx, arg_max(c.factor, c.alpha), max(c.alpha) "
            "FROM codes c JOIN tokens t USING (token_id) "
            "WHERE lower(t.word) = 'left' AND t.piece = 'left' GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    expected = {(int(layer), int(idx)): (f, a) for layer, idx, f, a in stored}
    for r in occ.iter_rows(named=True):
        factor, alpha = expected[(r["layer"], r["sentence_idx"])]
        assert r["factor"] == factor
        assert math.isclose(r["alpha"], alpha, rel_tol=1e-3, abs_tol=1e-4)


def test_caps_on_examples_and_words():
    from factorscope.stages.probe import _capped

    def occ(word, sense, i):
        return Occurrence(word, sense, f"{word} {sense} {i}")

    groups = {
        "big": {
            "a": [occ("big", "a", i) for i in range(9)],
            "b": [occ("big", "b", i) for i in range(5)],
        },
        "mid": {
            "a": [occ("mid", "a", i) for i in range(6)],
            "b": [occ("mid", "b", i) for i in range(5)],
        },
        "low": {
            "a": [occ("low", "a", i) for i in range(5)],
            "b": [occ("low", "b", i) for i in range(5)],
        },
    }
    capped = _capped(groups, ProbeSettings(max_examples=6, max_lemmas=2))
    assert list(capped) == ["big", "mid"]  # the two with the most occurrences, by name
    kept = capped["big"]["a"]
    assert len(kept) == 6 and kept == sorted(kept, key=lambda o: int(o.text.split()[-1]))
    assert capped == _capped(groups, ProbeSettings(max_examples=6, max_lemmas=2))  # seeded
    assert len(_capped(groups, ProbeSettings(max_examples=None))["big"]["a"]) == 9


def test_probe_reads_any_labelled_corpus_file(tmp_path, tiny_pipeline_db, capsys):
    """`--corpus FILE --metadata-fields w --label-field s --key w`: a CSV probed as wordnet is."""
    import polars as pl

    rows = [{"text": f"She turned left at corner {i}.", "w": "left", "s": "dir"} for i in range(5)]
    rows += [{"text": f"He left the house at {i}.", "w": "left", "s": "go"} for i in range(5)]
    rows += [{"text": f"The bank {i} is open.", "w": "bank", "s": "money"} for i in range(5)]
    corpus = tmp_path / "labelled.csv"
    pl.DataFrame(rows).write_csv(corpus)
    db = copy_db(tiny_pipeline_db, tmp_path)
    argv = ["probe", "--db", str(db), "--corpus", str(corpus), "--metadata-fields", "w"]
    assert main([*argv, "--label-field", "s", "--key", "w"]) == 0
    assert "probe: 1 word, 10 occurrences" in capsys.readouterr().out
    con = connect(db, read_only=True)
    try:
        info = senses.probe_info(con)
        assert info["source"] == str(corpus) and info["settings"]["sense"] == "s"
        occ = senses.lemma_occurrences(con, info["dictionary_id"], "left")
        assert (
            sorted(set(occ["sense"])) == ["dir", "go"]
            and occ["sentence_idx"].null_count() == occ.height
        )
    finally:
        con.close()
    # a sense field the corpus does not have: one clear error
    assert main([*argv, "--sense", "nope", "--key", "w"]) == 2
    assert "no word in" in capsys.readouterr().err
