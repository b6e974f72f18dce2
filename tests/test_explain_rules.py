"""Rules over token features, fitted and scored on arrays (factorscope.evidence).

A synthetic corpus with known parts of speech: a factor that fires exactly on one word
and one that fires on every noun must get those rules with held-out detection near 1;
a factor that fires on random tokens (what a random-atom control's factors look like)
must score near chance, and be said to have no rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from factorscope.evidence.explain import (
    Activity,
    RuleSettings,
    fit_rules,
    quantile_weights,
    render,
    score_rules,
)
from factorscope.evidence.features import FeatureSpace, TokenTable, build_features

pytestmark = pytest.mark.timeout(60)

NOUNS = ["bank", "river", "dog", "house", "tree", "city", "money", "road"]
VERBS = ["walked", "ran", "saw", "took", "gave", "found"]
DETS = ["the", "a", "this"]
ADJS = ["old", "green", "quick", "large"]


def _corpus(n_sentences: int, seed: int = 0, dets: list[str] = DETS) -> TokenTable:
    """Sentences "DET (ADJ) NOUN VERB DET NOUN ." with tags and lemmas."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("sentence", "word_index", "piece", "word", "tag", "pos", "lemma")}

    def add(s, i, word, tag, pos):
        cols["sentence"].append(s)
        cols["word_index"].append(i)
        cols["piece"].append(word.lower())
        cols["word"].append(word)
        cols["tag"].append(tag)
        cols["pos"].append(pos)
        cols["lemma"].append(word.lower())

    for s in range(n_sentences):
        words = [(rng.choice(dets), "DT", "DET")]
        if rng.random() < 0.5:
            words.append((rng.choice(ADJS), "JJ", "ADJ"))
        words += [
            (rng.choice(NOUNS), "NN", "NOUN"),
            (rng.choice(VERBS), "VBD", "VERB"),
            (rng.choice(dets), "DT", "DET"),
            (rng.choice(NOUNS), "NN", "NOUN"),
            (".", ".", "PUNCT"),
        ]
        for i, (w, tag, pos) in enumerate(words):
            add(s, i, str(w), tag, pos)
    return TokenTable(
        sentence=np.array(cols["sentence"]),
        word_index=np.array(cols["word_index"]),
        piece=np.array(cols["piece"], dtype=object),
        word=np.array(cols["word"], dtype=object),
        tag=np.array(cols["tag"], dtype=object),
        pos=np.array(cols["pos"], dtype=object),
        lemma=np.array(cols["lemma"], dtype=object),
        lexname=np.array([None] * len(cols["sentence"]), dtype=object),
    )


def _activity(tokens: TokenTable, rows: np.ndarray, rng, from_quantile=0) -> Activity:
    """Factor 0: the word "bank"; factor 1: every noun; factor 2: 8% of tokens at random."""
    word = tokens.word[rows]
    pos = tokens.pos[rows]
    on = [word == "bank", pos == "NOUN", rng.random(len(rows)) < 0.08]
    r, f = [], []
    for j, mask in enumerate(on):
        hit = np.nonzero(mask)[0]
        r.append(hit)
        f.append(np.full(len(hit), j))
    r, f = np.concatenate(r), np.concatenate(f)
    alpha = rng.gamma(2.0, 1.0, size=len(r))
    return Activity(r, f, alpha, len(rows), 3, from_quantile)


def _split(tokens: TokenTable):
    is_test = tokens.sentence % 5 == 0
    full = build_features(tokens, ~is_test, min_count=3)
    train_rows, test_rows = np.nonzero(~is_test)[0], np.nonzero(is_test)[0]
    train = FeatureSpace(full.names, full.matrix[train_rows].tocsc())
    test = FeatureSpace(full.names, full.matrix[test_rows].tocsc())
    return train_rows, test_rows, train, test


def test_known_factors_get_their_rules_and_random_ones_score_at_chance():
    tokens = _corpus(1500)
    rng = np.random.default_rng(1)
    train_rows, test_rows, f_train, f_test = _split(tokens)
    settings = RuleSettings(min_active=20)
    expl = fit_rules(f_train, _activity(tokens, train_rows, rng, 3), settings)
    assert expl[0].terms == [("word", "bank")], expl[0]
    assert expl[0].text == "the word “bank”"
    assert expl[1].terms == [("pos", "NOUN")], expl[1]
    assert expl[1].text == "nouns"
    assert expl[0].explained and expl[1].explained
    assert not expl[2].explained and expl[2].text.startswith("no short rule explains it")

    held_out = _activity(tokens, test_rows, rng)
    lengths = np.bincount(tokens.sentence).astype(float)
    scores = score_rules(expl, f_test, held_out, tokens.sentence[test_rows], lengths)
    assert scores[0].detection > 0.99 and scores[1].detection > 0.99
    assert scores[0].detection_low <= scores[0].detection <= scores[0].detection_high
    assert scores[0].precision > 0.99
    # "bank" is the only bank in most sentences: the rule finds the most active token
    assert scores[0].localisation > 0.9 > scores[0].localisation_chance
    # a random factor's best rule is no better than chance on held-out sentences
    assert abs(scores[2].detection - 0.5) < 0.06, scores[2]
    assert abs(scores[2].auroc - 0.5) < 0.06


def test_two_term_rule_when_one_term_is_not_enough():
    """A factor on nouns right after "the" is "nouns after “the”": neither "nouns"
    (nouns after an adjective) nor "words after “the”" (adjectives after it) will do."""
    tokens = _corpus(1500, seed=3, dets=["the"])
    prev_word = np.array(["", *tokens.word[:-1]], dtype=object)
    prev_word[tokens.word_index == 0] = ""
    rng = np.random.default_rng(2)
    train_rows, test_rows, f_train, f_test = _split(tokens)

    def activity(rows, from_quantile=0):
        mask = (tokens.pos[rows] == "NOUN") & (prev_word[rows] == "the")
        hit = np.nonzero(mask)[0]
        alpha = rng.gamma(2.0, 1.0, size=len(hit))
        return Activity(hit, np.zeros(len(hit), dtype=int), alpha, len(rows), 1, from_quantile)

    expl = fit_rules(f_train, activity(train_rows, 3), RuleSettings())
    assert sorted(expl[0].terms) == [("pos", "NOUN"), ("prev", "the")], expl[0]
    assert expl[0].text == "nouns after “the”"
    lengths = np.bincount(tokens.sentence).astype(float)
    score = score_rules(expl, f_test, activity(test_rows), tokens.sentence[test_rows], lengths)[0]
    assert score.detection > 0.99
    assert score.auroc > 0.99


def test_rare_factors_are_said_to_be_too_rare():
    tokens = _corpus(200)
    rows = np.arange(len(tokens))
    act = Activity(np.array([0, 5, 9]), np.zeros(3, dtype=int), np.ones(3), len(rows), 1)
    features = build_features(tokens, np.ones(len(tokens), dtype=bool))
    expl = fit_rules(features, act, RuleSettings(min_active=20))
    assert not expl[0].explained and "too rare" in expl[0].text


def test_quantile_weights_give_each_quintile_the_same_weight():
    factor = np.array([0] * 10 + [1] * 3)
    alpha = np.concatenate([np.arange(10, dtype=float), [3.0, 1.0, 2.0]])
    weights, quantile = quantile_weights(factor, alpha, 2)
    assert np.isclose(weights[:10].sum(), 1.0) and np.isclose(weights[10:].sum(), 1.0)
    assert quantile[9] == 4 and quantile[0] == 0  # the strongest in the top quintile
    for q in range(5):
        assert np.isclose(weights[:10][quantile[:10] == q].sum(), 0.2)
    top_only, _ = quantile_weights(factor, alpha, 2, from_quantile=4)
    assert np.isclose(top_only[:10].sum(), 1.0) and top_only[:8].sum() == 0


@pytest.mark.parametrize(
    ("terms", "text"),
    [
        ([("word", "bank")], "the word “bank”"),
        ([("tag", "VBD"), ("lexname", "verb.motion")], "past-tense verbs (verb.motion)"),
        ([("pos", "NOUN"), ("prev", "the")], "nouns after “the”"),
        ([("next", "of")], "words before “of”"),
        ([("position", "first word")], "words at the start of a sentence"),
    ],
)
def test_rules_read_as_text(terms, text):
    assert render(terms) == text


def test_the_interval_holds_for_a_perfect_rule_and_rounding_above_one():
    """Quintile weights can sum to a hair above 1 on another machine (float order); the
    interval must stay finite, and a perfect rule on few tokens still gets a width."""
    from factorscope.evidence.explain import _half_width

    for tpr in (1.0, 1.0 + 4e-16, 1.0 + 1e-9):
        half = _half_width(tpr, 20, 1.0, 800)
        assert np.isfinite(half) and 0.02 < half < 0.1, (tpr, half)
    assert _half_width(0.5, 10_000, 0.5, 10_000) < 0.01
