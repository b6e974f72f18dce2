"""Binary token features that an explanation may name, as one sparse matrix.

A rule is read by a person, so every feature is one a person can check on a sentence:
the word, its lemma, the word piece, part of speech (Penn tag and universal POS), the
WordNet lexicographer class, the previous and next word, the place in the sentence,
capitals and numbers. Rare values are dropped (``min_count`` on the training split): a
rule over a value seen twice cannot be scored on held-out sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

FAMILIES: tuple[str, ...] = (
    "word",
    "lemma",
    "pos",
    "tag",
    "lexname",
    "piece",
    "prev",
    "next",
    "position",
    "shape",
)
"""Feature families in order of preference: on a tie the earlier family wins, so a
factor of one word is "the word bank", not "the lemma bank"."""

CLASS_FAMILIES = frozenset({"word", "lemma", "pos", "tag", "lexname", "piece", "shape"})
"""Families that say what the token is (the head of a rule's text); the others say where."""

EXCLUSIVE_FAMILIES = frozenset({"word", "lemma", "pos", "tag", "lexname", "piece", "prev", "next"})
"""A token has one value in each of these, so two terms of one such family never co-occur."""


@dataclass(frozen=True)
class TokenTable:
    """What the features are made of, one entry per stored token (numpy arrays)."""

    sentence: np.ndarray  # int, the sentence's row in the run
    word_index: np.ndarray  # int, the word's index in its sentence
    piece: np.ndarray  # str, as the tokenizer spells it
    word: np.ndarray  # str, the whole word as the text writes it (original case)
    tag: np.ndarray  # str, Penn Treebank tag
    pos: np.ndarray  # str, universal part of speech
    lemma: np.ndarray  # str, lower case
    lexname: np.ndarray  # str or None

    def __len__(self) -> int:
        return len(self.sentence)


@dataclass(frozen=True)
class FeatureSpace:
    """Features (columns) over tokens (rows): ``matrix`` is CSC, boolean."""

    names: list[tuple[str, str]]
    matrix: sp.csc_matrix

    @property
    def n_features(self) -> int:
        return len(self.names)

    def rows(self, k: int) -> np.ndarray:
        """The tokens (rows) that have feature ``k``, sorted."""
        m = self.matrix
        return m.indices[m.indptr[k] : m.indptr[k + 1]]


def _neighbour_words(tokens: TokenTable, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The previous and next word of each token's word ('' at a sentence's edge)."""
    key = tokens.sentence.astype(np.int64) * 65536 + tokens.word_index.astype(np.int64)
    keys, first = np.unique(key, return_index=True)
    words = lower[first]

    def lookup(offset: int) -> np.ndarray:
        wanted = key + offset
        at = np.clip(np.searchsorted(keys, wanted), 0, len(keys) - 1)
        found = keys[at] == wanted
        return np.where(found, words[at], "")

    return lookup(-1), lookup(+1)


def _shape(tokens: TokenTable) -> list[list[str]]:
    shapes: list[list[str]] = []
    for piece, word in zip(tokens.piece, tokens.word, strict=True):
        s = []
        if word[:1].isupper():
            s.append("capitalised")
        if any(ch.isdigit() for ch in word):
            s.append("number")
        if piece.startswith("##"):
            s.append("inside a word")
        shapes.append(s)
    return shapes


def build_features(tokens: TokenTable, train: np.ndarray, *, min_count: int = 3) -> FeatureSpace:
    """The feature matrix over all tokens, keeping values seen ``min_count`` times in
    the training rows (``train``, a boolean mask)."""
    n = len(tokens)
    lower = np.array([w.lower() for w in tokens.word], dtype=object)
    prev, nxt = _neighbour_words(tokens, lower)
    last_index = np.zeros(int(tokens.sentence.max()) + 1 if n else 0, dtype=np.int64)
    np.maximum.at(last_index, tokens.sentence, tokens.word_index)
    last_word = tokens.word_index == last_index[tokens.sentence]
    position = np.where(
        tokens.word_index == 0, "first word", np.where(last_word, "last word", "")
    ).astype(object)
    columns: dict[str, list] = {
        "word": list(lower),
        "lemma": list(tokens.lemma),
        "pos": list(tokens.pos),
        "tag": list(tokens.tag),
        "lexname": list(tokens.lexname),
        "piece": [
            p if p.startswith("##") or p != w else ""
            for p, w in zip(tokens.piece, lower, strict=True)
        ],
        "prev": list(prev),
        "next": list(nxt),
        "position": list(position),
    }
    names: list[tuple[str, str]] = []
    row_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    train_idx = np.asarray(train, dtype=bool)
    for family in FAMILIES:
        if family == "shape":
            values_per_row = _shape(tokens)
            flat_rows = np.array(
                [i for i, vs in enumerate(values_per_row) for _ in vs], dtype=np.int64
            )
            flat_vals = np.array([v for vs in values_per_row for v in vs], dtype=object)
        else:
            vals = np.array(["" if v is None else str(v) for v in columns[family]], dtype=object)
            keep = vals != ""
            flat_rows = np.nonzero(keep)[0].astype(np.int64)
            flat_vals = vals[keep]
        if len(flat_rows) == 0:
            continue
        uniq, inverse = np.unique(flat_vals.astype(str), return_inverse=True)
        counts = np.bincount(inverse[train_idx[flat_rows]], minlength=len(uniq))
        kept = np.nonzero(counts >= min_count)[0]
        new_col = np.full(len(uniq), -1, dtype=np.int64)
        new_col[kept] = np.arange(len(kept)) + len(names)
        names.extend((family, str(uniq[k])) for k in kept)
        cols = new_col[inverse]
        ok = cols >= 0
        row_parts.append(flat_rows[ok])
        col_parts.append(cols[ok])
    rows = np.concatenate(row_parts) if row_parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(col_parts) if col_parts else np.zeros(0, dtype=np.int64)
    matrix = sp.csc_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(names))
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return FeatureSpace(names, matrix)
