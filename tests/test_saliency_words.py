"""LIME explains the right word: the tokenizer's own words, the ranked piece, errors not zeros.

Run against the real (packaged MiniLM) tokenizer inside a real LiveAnalyzer built by the
real pipeline on a tiny random BERT, so "word i" means what the model means by it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from factorscope import saliency
from factorscope.analyzer import LiveAnalyzer
from factorscope.dash_app import lime_jobs, logic
from factorscope.errors import FactorscopeError, InputError
from factorscope.ingest.runner import tokenize
from factorscope.saliency import Target, Word

from .conftest import copy_db

SNAKE = "snake_case left here."
CJK = "我 left 东京 yesterday."
ACCENT = "cafe\u0301 left"  # "café" with a combining acute accent
ZWSP = "left\u200bover left"


@pytest.fixture(scope="module")
def analyzer(tiny_pipeline_db: Path) -> LiveAnalyzer:
    return LiveAnalyzer.from_db(tiny_pipeline_db)


class Recording:
    """A real analyzer that remembers what LIME asked it."""

    def __init__(self, inner: LiveAnalyzer) -> None:
        self.inner = inner
        self.calls: list[tuple[str, Target]] = []

    def words(self, text: str) -> list[Word]:
        return self.inner.words(text)

    def alpha_for(self, texts, targets, layer, factor):
        self.calls.extend(zip(texts, targets, strict=True))
        return self.inner.alpha_for(texts, targets, layer, factor)


def _texts(text: str, words: list[Word]) -> list[str]:
    return [text[w.start : w.end] for w in words]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (SNAKE, ["snake", "_", "case", "left", "here", "."]),
        (CJK, ["我", "left", "东", "京", "yesterday", "."]),
        (ACCENT, ["cafe\u0301", "left"]),
        (ZWSP, ["left\u200bover", "left"]),
    ],
)
def test_words_are_the_tokenizers_words(analyzer, text, want):
    words = analyzer.words(text)
    assert _texts(text, words) == want
    (ts,) = tokenize(analyzer.loaded, [text], max_length=analyzer.max_length)
    # word i is the tokenizer's word_index i: same count, and each piece's offsets lie in it
    for position in ts.positions.tolist():
        w = words[int(ts.word_index[position])]
        assert w.start <= ts.char_start[position] <= ts.char_end[position] <= w.end
    assert [len(w.pieces) for w in words] == [
        int((ts.word_index == i).sum()) for i in range(len(words))
    ]


def test_zero_width_space_joins_pieces_of_one_word(analyzer):
    (word, _) = analyzer.words(ZWSP)
    assert word.pieces == ("left", "##over")


@pytest.mark.parametrize(("text", "target"), [(SNAKE, 3), (CJK, 4), (ACCENT, 1), (ZWSP, 1)])
def test_lime_masks_and_reads_the_tokenizers_words(analyzer, text, target):
    recording = Recording(analyzer)
    result = saliency.explain(recording, text, target, 1, 0, n_samples=40, seed=3)
    words = analyzer.words(text)
    # LIME's word list is the tokenizer's, the target is the right word
    assert [(w["word"], w["start"], w["end"]) for w in result["words"]] == [
        (text[w.start : w.end], w.start, w.end) for w in words
    ]
    assert [w["target"] for w in result["words"]] == [i == target for i in range(len(words))]
    assert recording.calls[0] == (text, Target(words[target].start, words[target].end, 0))
    masked_target = 0
    for perturbed, found in recording.calls[1:]:
        # masking replaced whole word spans by [UNK] and moved no word: the perturbed
        # sentence has the same words, each the original or [UNK]
        again = _texts(perturbed, analyzer.words(perturbed))
        assert len(again) == len(words)
        assert all(a in (b, "[UNK]") for a, b in zip(again, _texts(text, words), strict=True))
        assert "[UNK]" in again
        # the target read is word `target` itself, or the [UNK] standing for it
        assert perturbed[found.start : found.end] == again[target]
        masked_target += again[target] == "[UNK]"
    assert 0 < masked_target < len(recording.calls) - 1  # LIME masks the target too
    alone = analyzer.alpha_for([text], [recording.calls[0][1]], 1, 0)[0]
    assert result["alpha"] == pytest.approx(float(alone), rel=1e-4, abs=1e-6)


def test_perturb_replaces_exactly_the_word_spans():
    words = [Word(0, 5, ("snake",)), Word(5, 6, ("_",)), Word(6, 10, ("case",))]
    words += [Word(11, 15, ("left",)), Word(16, 20, ("here",)), Word(20, 21, (".",))]
    masked = [True, False, False, True, False, False]
    text, target = saliency.perturb(SNAKE, words, masked, 3, 0)
    assert text == "[UNK]_case [UNK] here."
    assert target == Target(11, 16, 0)  # the [UNK] in place of "left"
    _, target = saliency.perturb(SNAKE, words, masked, 4, 0)
    assert text[target.start : target.end] == "here"


def test_sampling_is_limes_own():
    """Same seed, same masks, same weights as LIME's LimeTextExplainer where words agree."""
    from lime.lime_text import LimeTextExplainer

    text = "the cat did not sit"

    class Fake:
        def words(self, t):
            return [Word(m.start(), m.end(), (m.group(),)) for m in re.finditer(r"\w+", t)]

        def alpha_for(self, texts, targets, layer, factor):
            return self.score(texts)

        @staticmethod
        def score(texts):
            return np.array([("cat" in t) - 0.5 * ("not" in t) + 0.1 * len(t) for t in texts])

    ours = saliency.explain(Fake(), text, 1, 0, 0, n_samples=200, seed=7)
    explainer = LimeTextExplainer(
        class_names=["alpha"],
        feature_selection="none",
        split_expression=lambda t: re.findall(r"\w+", t),
        bow=False,
        mask_string="[UNK]",
        random_state=7,
    )
    exp = explainer.explain_instance(
        text,
        lambda texts: Fake.score(list(texts)).reshape(-1, 1),
        labels=(0,),
        num_features=5,
        num_samples=200,
    )
    theirs = dict(exp.local_exp[0])
    assert [w["weight"] for w in ours["words"]] == pytest.approx([theirs[i] for i in range(5)])
    assert ours["intercept"] == pytest.approx(exp.intercept[0])
    assert ours["score"] == pytest.approx(exp.score)


# --------------------------------------------------------------------------- the piece


def test_alpha_is_read_at_the_ranked_piece(analyzer):
    """A context ranked for "##over" is explained at "##over", not at "left"."""
    layer = 1
    rows = analyzer.decompose(ZWSP, top=analyzer.n_factors)
    first, second = rows[0], rows[1]
    assert (first["piece"], second["piece"]) == ("left", "##over")
    at_first = dict(first["layers"][layer]["factors"])
    at_second = second["layers"][layer]["factors"]
    differ = [(f, a) for f, a in at_second if abs(at_first.get(f, 0.0) - a) > 1e-3]
    factor, alpha = differ[0]
    word = analyzer.words(ZWSP)[0]
    got = analyzer.alpha_for([ZWSP, ZWSP], [(0, word.end, 1), (0, word.end, 0)], layer, factor)
    assert got[0] == pytest.approx(alpha, rel=1e-4)
    assert got[1] == pytest.approx(at_first.get(factor, 0.0), abs=1e-6)
    result = saliency.explain(analyzer, ZWSP, 0, layer, factor, piece=1, n_samples=20)
    assert result["alpha"] == pytest.approx(alpha, rel=1e-4)
    assert (result["piece"], result["target_piece"]) == (1, "##over")


def test_lime_targets_carry_the_piece_of_the_ranked_token():
    sentence = {
        "text": "He was leaving.",
        "tokens": [
            {"token_id": 1025, "position": 1, "piece": "he", "word_index": 0},
            {"token_id": 1026, "position": 2, "piece": "was", "word_index": 1},
            {"token_id": 1027, "position": 3, "piece": "leav", "word_index": 2},
            {"token_id": 1028, "position": 4, "piece": "##ing", "word_index": 2},
            {"token_id": 1029, "position": 5, "piece": ".", "word_index": 3},
            {"token_id": 1030, "position": 6, "piece": "[SEP]", "word_index": None},
        ],
    }
    assert logic._piece_of(sentence, 1028) == (2, 1, "##ing")
    assert logic._piece_of(sentence, 1027) == (2, 0, "leav")
    assert logic._piece_of(sentence, 1029) == (3, 0, ".")
    assert logic._piece_of(sentence, 1030) is None


def test_lime_targets_on_a_real_database(tiny_pipeline_db, analyzer):
    targets = logic.lime_targets(tiny_pipeline_db, 0, 1, count=3)
    assert targets
    for target in targets:
        word = analyzer.words(target["text"])[target["word_index"]]
        assert word.pieces[target["piece"]] == target["piece_text"]
        assert target["text"][word.start : word.end].lower() == target["word"].lower()


# --------------------------------------------------------------------------- errors


def test_a_target_cut_off_by_max_length_is_an_error(analyzer):
    short = dataclasses.replace(analyzer, max_length=6)  # [CLS] snake _ case left [SEP]
    assert _texts(SNAKE, short.words(SNAKE)) == ["snake", "_", "case", "left"]
    with pytest.raises(InputError, match="not among the 4 words the model reads"):
        saliency.explain(short, SNAKE, 4, 1, 0, n_samples=20)
    with pytest.raises(InputError, match=r"'here'.*max_length 6"):
        short.alpha_for([SNAKE], [Target(16, 20, 0)], 1, 0)
    # the words past the cut are no features, and LIME still runs on what the model reads
    result = saliency.explain(short, SNAKE, 3, 1, 0, n_samples=20)
    assert [w["word"] for w in result["words"]] == ["snake", "_", "case", "left"]


def test_a_piece_cut_off_by_max_length_is_an_error(analyzer):
    short = dataclasses.replace(analyzer, max_length=3)  # [CLS] left [SEP]: "##over" is cut
    (word,) = short.words(ZWSP)
    assert (word.start, word.end, word.pieces) == (0, 9, ("left",))
    with pytest.raises(InputError, match="piece 1 of word 0"):
        saliency.explain(short, ZWSP, 0, 1, 0, piece=1, n_samples=20)
    with pytest.raises(InputError, match="has 1 piece"):
        short.alpha_for([ZWSP], [Target(0, 9, 1)], 1, 0)


def test_alpha_that_is_not_a_number_is_an_error_not_a_zero(analyzer):
    class Broken(Recording):
        def alpha_for(self, texts, targets, layer, factor):
            values = super().alpha_for(texts, targets, layer, factor)
            values[len(values) // 2] = np.nan
            return values

    with pytest.raises(FactorscopeError, match="is nan"):
        saliency.explain(Broken(analyzer), SNAKE, 3, 1, 0, n_samples=20)


def test_lime_job_shows_the_error(tmp_path, tiny_pipeline_db, analyzer):
    db = copy_db(tiny_pipeline_db, tmp_path)
    short = dataclasses.replace(analyzer, max_length=6)
    target = {"text": SNAKE, "word_index": 4, "piece": 0, "layer": 1, "factor": 0}
    job = lime_jobs.start(db, lambda: short, [target], 20)
    state = lime_jobs.wait(job, timeout=60)
    assert state["finished"] and not state["results"]
    assert "not among the 4 words the model reads" in state["error"]


CONTRACTION = "I don't know, do you?"


def _plain(node) -> str:
    """The text a rendered node shows."""
    if isinstance(node, str):
        return node
    if isinstance(node, list | tuple):
        return "".join(_plain(child) for child in node)
    return _plain(getattr(node, "children", None) or "")


def test_lime_map_shows_words_as_the_sentence_writes_them(analyzer):
    from factorscope.dash_app import components as ui

    result = saliency.explain(analyzer, CONTRACTION, 1, 1, 0, n_samples=20)
    words = [w["word"] for w in result["words"]]
    # the tokenizer splits "don't" in three words, each one LIME weight ...
    assert words == ["I", "don", "'", "t", "know", ",", "do", "you", "?"]
    for w in result["words"]:
        assert CONTRACTION[w["start"] : w["end"]] == w["word"]
    sentence, _caption = ui.lime_map(result).children
    # ... shown as the sentence writes them: "don't", not "don ' t"
    assert _plain(sentence) == CONTRACTION
    runs = [_plain(part) for part in sentence.children if not isinstance(part, str)]
    gaps = [part for part in sentence.children if isinstance(part, str)]
    assert runs == ["I", "don't", "know,", "do", "you?"]
    assert gaps == [" "] * 4
    for run in sentence.children:
        if isinstance(run, str):
            continue
        assert "fs-lime-run" in run.className
        pieces = run.children
        assert all("fs-lime-word" in p.className for p in pieces)
        # inner edges of a run have no padding (the CSS classes say so): no visual gap
        if len(pieces) > 1:
            assert "fs-lime-glued-right" in pieces[0].className
            assert "fs-lime-glued-left" in pieces[-1].className
    target = [p for run in sentence.children if not isinstance(run, str) for p in run.children]
    assert [p.children for p in target if "fs-lime-target" in p.className] == ["don"]
