"""Fit a short rule per factor on training sentences; score it on held-out ones.

The rule is one feature ("the word bank") or two ("nouns after the"), chosen on the
training split by *detection*: balanced accuracy of the rule as a detector of the
factor's active tokens, where the active tokens are weighted so that each activation
quintile counts the same (a rule that only finds the strongest activations is not
enough). The same score, its 95% interval, AUROC, precision and *localisation* (does the
rule pick the sentence's most active token) are then measured on the held-out split,
never seen when the rule was chosen. Chance is 0.5 for detection and AUROC; for
localisation it is the mean of 1 / tokens per sentence, stored beside it.

Everything here is numpy / scipy over arrays; the stage reads and writes the tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from factorscope.evidence.features import CLASS_FAMILIES, EXCLUSIVE_FAMILIES, FeatureSpace

N_QUANTILES = 5


@dataclass(frozen=True)
class RuleSettings:
    """How rules are fitted; stored with every explained layer (a change refits)."""

    min_active: int = 20
    """Active training tokens a factor needs at a layer to be explained at all."""
    min_feature_count: int = 3
    top_terms: int = 6
    """Best single features combined pairwise into two-term rules."""
    min_gain: float = 0.02
    """A two-term rule must beat the best one-term rule by this much (simpler wins)."""
    explained_at: float = 0.6
    """Training detection below this: "no short rule explains it"."""
    fit_from_quantile: int = 3
    """The rule is chosen on the factor's strongest activations (quintiles 3 and 4, the
    contexts a person reads on the factor page) and scored on all five."""
    test_share: float = 0.2

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Explanation:
    factor: int
    explained: bool
    text: str
    terms: list[tuple[str, str]] = field(default_factory=list)
    n_active_train: int = 0
    train_detection: float | None = None

    @property
    def rule_kind(self) -> str | None:
        if not self.terms:
            return None
        return self.terms[0][0] if len(self.terms) == 1 else "conjunction"


@dataclass
class Score:
    factor: int
    n_active: int
    n_inactive: int
    detection: float | None
    detection_low: float | None
    detection_high: float | None
    detection_top: float | None
    auroc: float | None
    precision: float | None
    n_sentences: int
    localisation: float | None
    localisation_chance: float | None


def test_split(sentence_ids: list[str], share: float) -> np.ndarray:
    """Held-out sentences (True) by a hash of their stable id, not their order, so the
    split is the same in every run holding the sentence."""
    out = np.empty(len(sentence_ids), dtype=bool)
    cut = int(share * 2**32)
    for i, sid in enumerate(sentence_ids):
        h = int.from_bytes(hashlib.blake2b(sid.encode(), digest_size=4).digest(), "little")
        out[i] = h < cut
    return out


# ---- text -------------------------------------------------------------------------

_TAG_NAMES = {
    "NN": "singular nouns",
    "NNS": "plural nouns",
    "NNP": "proper nouns",
    "NNPS": "plural proper nouns",
    "VB": "verbs in the base form",
    "VBD": "past-tense verbs",
    "VBG": "verbs in -ing",
    "VBN": "past participles",
    "VBP": "present-tense verbs",
    "VBZ": "verbs in -s",
    "JJ": "adjectives",
    "JJR": "comparative adjectives",
    "JJS": "superlative adjectives",
    "RB": "adverbs",
    "RBR": "comparative adverbs",
    "RBS": "superlative adverbs",
    "PRP": "personal pronouns",
    "PRP$": "possessive pronouns",
    "DT": "determiners",
    "IN": "prepositions",
    "CC": "conjunctions",
    "CD": "numbers",
    "MD": "modal verbs",
    "TO": "the word to",
    "WDT": "wh-determiners",
    "WP": "wh-pronouns",
    "WRB": "wh-adverbs",
    "UH": "interjections",
    "EX": "existential there",
    "POS": "possessive endings",
    "RP": "particles",
}
_POS_NAMES = {
    "NOUN": "nouns",
    "PROPN": "proper nouns",
    "VERB": "verbs",
    "AUX": "auxiliary verbs",
    "ADJ": "adjectives",
    "ADV": "adverbs",
    "PRON": "pronouns",
    "DET": "determiners",
    "ADP": "prepositions",
    "CCONJ": "conjunctions",
    "SCONJ": "subordinating conjunctions",
    "NUM": "numbers",
    "PART": "particles",
    "PUNCT": "punctuation",
    "SYM": "symbols",
    "INTJ": "interjections",
    "X": "other tokens",
    "SPACE": "spaces",
}


def _head(family: str, value: str) -> str:
    if family == "word":
        return f"the word “{value}”"
    if family == "lemma":
        return f"forms of “{value}”"
    if family == "piece":
        return f"the word piece “{value}”"
    if family == "pos":
        return _POS_NAMES.get(value, f"{value} tokens")
    if family == "tag":
        return _TAG_NAMES.get(value, f"{value} tokens")
    if family == "lexname":
        return f"words of WordNet class {value}"
    if family == "shape":
        return {"capitalised": "capitalised words", "number": "numbers"}.get(
            value, "word pieces inside a word"
        )
    raise ValueError(family)


def _where(family: str, value: str) -> str:
    if family == "prev":
        return f"after “{value}”"
    if family == "next":
        return f"before “{value}”"
    if family == "position":
        return "at the start of a sentence" if value == "first word" else "at the end of a sentence"
    raise ValueError(family)


def render(terms: list[tuple[str, str]]) -> str:
    """A rule as a person says it: "nouns after “the”", "past-tense verbs (verb.motion)"."""
    heads = [t for t in terms if t[0] in CLASS_FAMILIES]
    wheres = [t for t in terms if t[0] not in CLASS_FAMILIES]
    if heads:
        text = _head(*heads[0])
        for family, value in heads[1:]:
            text += f" ({_head(family, value)})" if family != "lexname" else f" ({value})"
    else:
        text = "words"
    for family, value in wheres:
        text += f" {_where(family, value)}"
    return text


# ---- activity -----------------------------------------------------------------------


def quantile_weights(
    factor: np.ndarray, alpha: np.ndarray, n_factors: int, from_quantile: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A weight per active entry so that each activation quintile of its factor sums to
    1 / (the factor's non-empty quintiles): the weighted share of active tokens a rule
    finds is the mean over quintiles of the share it finds in each. Quintiles below
    ``from_quantile`` weigh nothing. Also each entry's quintile (0 the weakest)."""
    order = np.lexsort((alpha, factor))
    f_sorted = factor[order]
    counts = np.bincount(factor, minlength=n_factors)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - starts[f_sorted]
    q = (rank * N_QUANTILES) // counts[f_sorted]
    cell = f_sorted.astype(np.int64) * N_QUANTILES + q
    per_cell = np.bincount(cell, minlength=n_factors * N_QUANTILES).reshape(n_factors, N_QUANTILES)
    per_cell[:, :from_quantile] = 0
    nonempty = (per_cell > 0).sum(axis=1)
    counted = q >= from_quantile
    w_sorted = np.where(
        counted, 1.0 / np.maximum(nonempty[f_sorted] * per_cell[f_sorted, q], 1), 0.0
    )
    weights = np.empty(len(order), dtype=np.float64)
    weights[order] = w_sorted
    quantile = np.empty(len(order), dtype=np.int8)
    quantile[order] = q
    return weights, quantile


@dataclass
class Activity:
    """One layer's non-zero codes restricted to a split's tokens (rows of that split)."""

    row: np.ndarray
    factor: np.ndarray
    alpha: np.ndarray
    n_rows: int
    n_factors: int
    from_quantile: int = 0

    def __post_init__(self) -> None:
        self.weight, self.quantile = quantile_weights(
            self.factor, self.alpha, self.n_factors, self.from_quantile
        )
        self.n_active = np.bincount(self.factor, minlength=self.n_factors)
        order = np.argsort(self.factor, kind="stable")
        self._order = order
        self._starts = np.concatenate([[0], np.cumsum(self.n_active)])

    def entries(self, j: int) -> np.ndarray:
        return self._order[self._starts[j] : self._starts[j + 1]]

    def matrices(self) -> tuple[sp.csc_matrix, sp.csc_matrix]:
        shape = (self.n_rows, self.n_factors)
        binary = sp.csc_matrix(
            (np.ones(len(self.row), dtype=np.float32), (self.row, self.factor)), shape=shape
        )
        weighted = sp.csc_matrix((self.weight, (self.row, self.factor)), shape=shape)
        return binary, weighted


# ---- fitting ------------------------------------------------------------------------


class _Rows:
    """Membership tests on feature rows: a dense mask for the big features (cached)."""

    def __init__(self, features: FeatureSpace, n_rows: int, dense_above: int = 2000) -> None:
        self.features = features
        self.n_rows = n_rows
        self.dense_above = dense_above
        self._dense: dict[int, np.ndarray] = {}

    def rows(self, k: int) -> np.ndarray:
        return self.features.rows(k)

    def mask(self, k: int) -> np.ndarray:
        found = self._dense.get(k)
        if found is None:
            found = np.zeros(self.n_rows, dtype=bool)
            found[self.rows(k)] = True
            self._dense[k] = found
        return found

    def both(self, a: int, b: int) -> np.ndarray:
        ra, rb = self.rows(a), self.rows(b)
        if len(ra) > len(rb):
            a, b, ra, rb = b, a, rb, ra
        if len(rb) > self.dense_above:
            return ra[self.mask(b)[ra]]
        return np.intersect1d(ra, rb, assume_unique=True)

    def match(self, terms: list[int]) -> np.ndarray:
        if len(terms) == 1:
            return self.rows(terms[0])
        return self.both(terms[0], terms[1])


def fit_rules(
    features: FeatureSpace, activity: Activity, settings: RuleSettings
) -> list[Explanation]:
    """The best rule per factor on the training rows (``features`` cut to them)."""
    n_rows, m = activity.n_rows, activity.n_factors
    n_inactive = np.maximum(n_rows - activity.n_active, 1).astype(np.float32)
    if features.n_features == 0:
        return [_too_few(j, int(activity.n_active[j]), settings) for j in range(m)]
    best, top, top_score = _single_terms(features, activity, n_inactive, settings.top_terms)
    rows = _Rows(features, n_rows)
    families = [name[0] for name in features.names]
    out: list[Explanation] = []
    weight_dense = np.zeros(n_rows, dtype=np.float64)
    active_dense = np.zeros(n_rows, dtype=bool)
    for j in range(m):
        n_a = int(activity.n_active[j])
        if n_a < settings.min_active:
            out.append(_too_few(j, n_a, settings))
            continue
        terms = [int(best[j])]
        score = float(top_score[j].max())
        entries = activity.entries(j)
        weight_dense[activity.row[entries]] = activity.weight[entries]
        active_dense[activity.row[entries]] = True
        # best first; on a tie the earlier family (FAMILIES: columns are in its order)
        ranked = sorted(range(top.shape[1]), key=lambda i: (-top_score[j, i], top[j, i]))
        candidates = list(dict.fromkeys(int(top[j, i]) for i in ranked))
        for i, a in enumerate(candidates):
            for b in candidates[i + 1 :]:
                if families[a] == families[b] and families[a] in EXCLUSIVE_FAMILIES:
                    continue
                hit = rows.both(a, b)
                tp_w = weight_dense[hit].sum()
                fp = len(hit) - int(active_dense[hit].sum())
                pair = 0.5 * (tp_w + 1.0 - fp / n_inactive[j])
                if pair > score + settings.min_gain:
                    score, terms = float(pair), [a, b]
        weight_dense[activity.row[entries]] = 0.0
        active_dense[activity.row[entries]] = False
        named = [features.names[k] for k in terms]
        explained = score >= settings.explained_at
        text = render(named)
        if not explained:
            text = (
                f"no short rule explains it (best: {text}, detection {score:.2f} "
                "on training sentences)"
            )
        out.append(Explanation(j, explained, text, named, n_a, score))
    return out


def _single_terms(
    features: FeatureSpace,
    activity: Activity,
    n_inactive: np.ndarray,
    top_terms: int,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detection of every one-feature rule for every factor, by blocks of factors (the
    full features x factors table of a big run does not fit in memory): the best
    feature per factor, and the ``top_terms`` best with their scores."""
    binary, weighted = activity.matrices()
    ft = features.matrix.T.tocsr()
    n_feature = np.asarray(features.matrix.sum(axis=0)).ravel().astype(np.float32)
    n_k = features.n_features
    top_k = min(top_terms, n_k)
    m = activity.n_factors
    best = np.zeros(m, dtype=np.int64)
    top = np.zeros((m, top_k), dtype=np.int64)
    top_score = np.zeros((m, top_k), dtype=np.float32)
    for lo in range(0, m, block):
        hi = min(lo + block, m)
        tp_count = (ft @ binary[:, lo:hi]).toarray().astype(np.float32)
        tpr = (ft @ weighted[:, lo:hi]).toarray().astype(np.float32)
        fpr = (n_feature[:, None] - tp_count) / n_inactive[None, lo:hi]
        detection = 0.5 * (tpr + 1.0 - fpr)
        # argmax takes the first maximum: the earlier family (FAMILIES) wins a tie
        best[lo:hi] = detection.argmax(axis=0)
        if top_k < n_k:
            part = np.argpartition(-detection, top_k - 1, axis=0)[:top_k]
        else:
            part = np.tile(np.arange(n_k)[:, None], (1, hi - lo))
        top[lo:hi] = part.T
        top_score[lo:hi] = np.take_along_axis(detection, part, axis=0).T
        # the best feature first among the candidates, so that ties keep it
        for j in range(hi - lo):
            if best[lo + j] not in part[:, j]:
                top[lo + j, -1] = best[lo + j]
                top_score[lo + j, -1] = detection[best[lo + j], j]
    return best, top, top_score


def _too_few(j: int, n_active: int, settings: RuleSettings) -> Explanation:
    return Explanation(
        j,
        False,
        f"too rare to explain ({n_active} active training tokens; {settings.min_active} needed)",
        [],
        n_active,
        None,
    )


# ---- scoring ------------------------------------------------------------------------


def score_rules(
    explanations: list[Explanation],
    features: FeatureSpace,
    activity: Activity,
    sentence: np.ndarray,
    sentence_length: np.ndarray,
) -> list[Score]:
    """Held-out scores of each rule (``features`` and ``activity`` cut to the test rows;
    ``sentence`` the test rows' sentence, ``sentence_length`` tokens per sentence)."""
    index = {name: k for k, name in enumerate(features.names)}
    rows = _Rows(features, activity.n_rows)
    n_rows = activity.n_rows
    weight_dense = np.zeros(n_rows, dtype=np.float64)
    active_dense = np.zeros(n_rows, dtype=bool)
    matched = np.zeros(n_rows, dtype=np.int8)
    out: list[Score] = []
    for e in explanations:
        j = e.factor
        entries = activity.entries(j)
        n_a = len(entries)
        n_i = n_rows - n_a
        terms = [index.get(t) for t in e.terms]
        if not e.terms or n_a == 0 or n_i == 0 or any(k is None for k in terms):
            out.append(Score(j, n_a, n_i, None, None, None, None, None, None, 0, None, None))
            continue
        r = activity.row[entries]
        weight_dense[r] = activity.weight[entries]
        active_dense[r] = True
        # how many of the rule's terms each row meets (AUROC ranks by it)
        for k in terms:
            matched[rows.rows(k)] += 1
        full = len(terms)
        hit = rows.match(terms)
        tpr = float(weight_dense[hit].sum())
        tp = int(active_dense[hit].sum())
        fp = len(hit) - tp
        tnr = 1.0 - fp / n_i
        tpr = min(tpr, 1.0)  # a sum of quintile weights can round a hair above 1
        detection = 0.5 * (tpr + tnr)
        top = activity.quantile[entries] == N_QUANTILES - 1
        top_found = float(matched[r[top]].__eq__(len(terms)).mean()) if top.any() else None
        detection_top = None if top_found is None else 0.5 * (top_found + tnr)
        half = _half_width(tpr, n_a, tnr, n_i)
        auroc = _auroc(matched[r], activity.weight[entries], matched, active_dense, full)
        precision = tp / len(hit) if len(hit) else None
        loc, chance, n_sent = _localisation(
            r, activity.alpha[entries], sentence, sentence_length, hit, matched, full
        )
        out.append(
            Score(
                j,
                n_a,
                n_i,
                detection,
                max(0.0, detection - half),
                min(1.0, detection + half),
                detection_top,
                auroc,
                precision,
                n_sent,
                loc,
                chance,
            )
        )
        for k in terms:
            matched[rows.rows(k)] = 0
        weight_dense[r] = 0.0
        active_dense[r] = False
    return out


def _half_width(tpr: float, n_a: int, tnr: float, n_i: int) -> float:
    """Half the 95% interval of balanced accuracy: 1.96 standard errors of the mean of two
    independent proportions, each with Agresti-Coull's adjustment (two successes and two
    failures added), so a perfect rule on few tokens still gets an interval, and a sum of
    weights a rounding above 1 never makes a negative variance."""

    def var(p: float, n: int) -> float:
        q = (min(max(p, 0.0), 1.0) * n + 2.0) / (n + 4.0)
        return q * (1.0 - q) / (n + 4.0)

    return 1.96 * 0.5 * float(np.sqrt(var(tpr, n_a) + var(tnr, n_i)))


def _auroc(
    pos_level: np.ndarray, pos_weight: np.ndarray, level: np.ndarray, active: np.ndarray, full: int
) -> float:
    """P(an active token meets more terms than an inactive one), ties counting half,
    active tokens weighted by quintile."""
    pos = np.bincount(pos_level, weights=pos_weight, minlength=full + 1)[: full + 1]
    pos = pos / pos.sum()
    neg = np.bincount(level[~active], minlength=full + 1)[: full + 1].astype(np.float64)
    neg = neg / neg.sum()
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float((pos * (below + 0.5 * neg)).sum())


def _localisation(
    rows: np.ndarray,
    alpha: np.ndarray,
    sentence: np.ndarray,
    sentence_length: np.ndarray,
    hit: np.ndarray,
    matched: np.ndarray,
    full: int,
) -> tuple[float | None, float | None, int]:
    """Mean over active sentences of P(a token the rule picks, at random among those it
    picks, is the sentence's most active one); chance: 1 / tokens per sentence."""
    s = sentence[rows]
    order = np.lexsort((-alpha, s))
    s_sorted = s[order]
    first = np.concatenate([[True], s_sorted[1:] != s_sorted[:-1]])
    top_rows = rows[order][first]
    sentences = s_sorted[first]
    n_sent = len(sentences)
    if n_sent == 0:
        return None, None, 0
    picked_in, picked_n = np.unique(sentence[hit], return_counts=True)
    at = np.clip(np.searchsorted(picked_in, sentences), 0, max(len(picked_in) - 1, 0))
    picked = (
        np.where(picked_in[at] == sentences, picked_n[at], 0)
        if len(picked_in)
        else np.zeros(n_sent, dtype=np.int64)
    )
    top_hit = matched[top_rows] == full
    hits = np.where(top_hit & (picked > 0), 1.0 / np.maximum(picked, 1), 0.0)
    chance = float(np.mean(1.0 / sentence_length[sentences]))
    return float(hits.mean()), chance, n_sent
