"""LIME saliency maps for one factor at one token (Yun et al. 2021, section on high-level factors).

The "classifier" LIME explains is the sparse code itself: each perturbed sentence (some
words replaced by ``[UNK]``) is run through the model and the sparse encoder again, and
the regression target is α of factor ``c`` at the target token and layer. LIME's
weighted ridge regression of those α on which words were kept gives each word a weight:
how much keeping it raises (positive, shown red) or lowers (negative, green) the factor.

Words are the tokenizer's own words, taken from the run's fast tokenizer (its word ids
and character offsets, :meth:`factorscope.analyzer.LiveAnalyzer.words`), never from a
regex: "snake_case", CJK characters, combining accents and zero-width spaces are split
exactly as the model splits them, so LIME's word ``i`` is the tokenizer's
``word_index`` ``i``. Masking replaces exactly a word's character span by ``[UNK]``
(one word for the tokenizer, so no other word moves), and the target is found again in
every perturbed sentence by its character span, not by trusting an index.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from factorscope.errors import FactorscopeError, InputError
from factorscope.limits import check_setting

MASK = "[UNK]"
KERNEL_WIDTH = 25.0  # LimeTextExplainer's default
_CACHE_VERSION = 2  # 1: regex words, first piece of the word (results of 1 are never served)

#: ``progress(done, total)`` is called after each batch of perturbed sentences.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Word:
    """One word of a sentence as the model's tokenizer splits it.

    ``start`` and ``end`` are character offsets into the sentence (``text[start:end]``
    is the word, inner characters the tokenizer drops such as a zero-width space
    included); ``pieces`` are its word pieces in order (``("leav", "##ing")``).
    """

    start: int
    end: int
    pieces: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """Where α is read in one sentence: piece ``piece`` of the word spanning ``start:end``."""

    start: int
    end: int
    piece: int


class AlphaModel(Protocol):
    """What :func:`explain` needs from :class:`factorscope.analyzer.LiveAnalyzer`."""

    def words(self, text: str) -> list[Word]: ...

    def alpha_for(
        self, texts: list[str], targets: list[Target], layer: int, factor: int
    ) -> np.ndarray: ...


def cache_key(
    dictionary_id: int | None,
    text: str,
    word_index: int,
    layer: int,
    factor: int,
    n_samples: int,
    seed: int = 0,
    piece: int = 0,
) -> str:
    """A stable key for one LIME result: the same inputs always map to the same row."""
    payload = json.dumps(
        [
            _CACHE_VERSION,
            dictionary_id,
            text,
            int(word_index),
            int(piece),
            int(layer),
            int(factor),
            int(n_samples),
            seed,
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def perturb(
    text: str, words: Sequence[Word], masked: Sequence[bool], target: int, piece: int
) -> tuple[str, Target]:
    """``text`` with the words flagged in ``masked`` replaced by ``[UNK]``, and the target.

    Only the words' own character spans change; what lies between words stays. The
    returned :class:`Target` is word ``target``'s piece ``piece`` in the new text, or the
    ``[UNK]`` standing for it (its only piece) when the target word itself is masked.
    """
    parts: list[str] = []
    length = cursor = 0
    found: Target | None = None
    for i, word in enumerate(words):
        gap = text[cursor : word.start]
        parts.append(gap)
        length += len(gap)
        segment = MASK if masked[i] else text[word.start : word.end]
        if i == target:
            found = Target(length, length + len(segment), 0 if masked[i] else piece)
        parts.append(segment)
        length += len(segment)
        cursor = word.end
    parts.append(text[cursor:])
    assert found is not None
    return "".join(parts), found


# Over 80 lines: most of it is the numpydoc docstring; the steps are _target_words, _alphas and
# _local_fit.
def explain(
    analyzer: AlphaModel,
    text: str,
    word_index: int,
    layer: int,
    factor: int,
    *,
    piece: int = 0,
    n_samples: int = 2000,
    seed: int = 0,
    progress: ProgressFn | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Explain α of ``factor`` at one token of ``text`` and ``layer`` with LIME.

    LIME's text explainer in regression mode, sampling as ``LimeTextExplainer(bow=False,
    mask_string="[UNK]")`` does (the same seed draws the same masks): sample ``j`` masks
    ``k ~ U[1, n]`` of the ``n`` words, the first sample is the sentence itself, and a
    ridge regression weighted by an exponential kernel on the cosine distance fits α on
    the kept-word indicators.

    The target word is a word like the others, so LIME masks it too (as in the paper and
    LIME's own explainer): α is then read at the ``[UNK]`` standing in its place, the
    same position in the sentence, and the target word's weight says how much the word
    itself, rather than its context, drives the factor.

    Only the words the model reads are features: when the tokenizer cuts a long sentence
    at the run's ``max_length``, the words past the cut are left as they are (and get no
    weight), and a target past the cut is an error.

    Parameters
    ----------
    analyzer : AlphaModel
        ``words(text)`` and ``alpha_for(texts, targets, layer, factor)``; usually a
        :class:`factorscope.analyzer.LiveAnalyzer`.
    text : str
        The sentence.
    word_index : int
        The target word: its index among the tokenizer's words (the stored ``word_index``).
    layer, factor : int
        Where α is read.
    piece : int
        Which word piece of the target word α is read at (0: the first; the ranked token
        of a top context may be a later piece such as ``##ing``).
    n_samples : int
        Perturbed sentences LIME fits on (the paper used about 2000).
    seed : int
        LIME's random state; the same seed gives the same samples.
    progress : callable, optional
        ``progress(done, total)`` after every batch of ``batch_size`` sentences.

    Returns
    -------
    dict
        ``words``: one ``{"word", "start", "end", "weight", "target"}`` per tokenizer
        word, in order; ``alpha``: α on the unperturbed sentence; ``piece`` and
        ``target_piece`` (its text); ``intercept``, ``score`` (the local fit's R²),
        ``n_samples``, ``seed``, ``seconds`` and the inputs. JSON-serialisable.

    Raises
    ------
    InputError
        An empty sentence, a target word or piece the model does not read (past the
        ``max_length`` cut, or not in the sentence), bad sample counts.
    FactorscopeError
        α that is not a finite number (a NaN or infinity is never turned into 0).
    """
    from sklearn.utils import check_random_state

    check_setting("lime_samples", n_samples, "n_samples")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1 (got {batch_size})")
    word_index, piece = int(word_index), int(piece)
    layer, factor, n_samples = int(layer), int(factor), int(n_samples)
    words = _target_words(analyzer, text, word_index, piece)

    started = time.perf_counter()
    n_words = len(words)
    random_state = check_random_state(seed)
    # LimeTextExplainer's sampling, draw for draw
    sizes = random_state.randint(1, n_words + 1, n_samples - 1)
    data = np.ones((n_samples, n_words))
    for row, size in enumerate(sizes, start=1):
        data[row, random_state.choice(range(n_words), size, replace=False)] = 0
    samples = [perturb(text, words, row == 0, word_index, piece) for row in data]
    labels = _alphas(analyzer, samples, layer, factor, batch_size=batch_size, progress=progress)
    intercept, weights, score = _local_fit(data, labels, random_state)
    spans = [
        {
            "word": text[w.start : w.end],
            "start": w.start,
            "end": w.end,
            "weight": _number(weights.get(i, 0.0), f"the weight of word {i}"),
            "target": i == word_index,
        }
        for i, w in enumerate(words)
    ]
    return {
        "text": text,
        "word_index": word_index,
        "piece": piece,
        "target_piece": words[word_index].pieces[piece],
        "layer": layer,
        "factor": factor,
        "n_samples": n_samples,
        "seed": seed,
        "alpha": _number(labels[0], "α"),
        "intercept": _number(intercept, "the intercept"),
        "score": _number(score, "the local fit's R²"),
        "words": spans,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _target_words(analyzer: AlphaModel, text: str, word_index: int, piece: int) -> list[Word]:
    """The words the model reads of ``text``, once the target word and piece are among them."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("LIME needs a non-empty sentence")
    words = list(analyzer.words(text))
    if not 0 <= word_index < len(words):
        raise InputError(
            f"word {word_index} is not among the {len(words)} words the model reads of this "
            "sentence (a sentence longer than the run's max_length is cut)"
        )
    target_word = words[word_index]
    if not 0 <= piece < len(target_word.pieces):
        raise InputError(
            f"piece {piece} of word {word_index} ({text[target_word.start : target_word.end]!r}) "
            f"is not read by the model: it has {len(target_word.pieces)} piece(s) there"
        )
    return words


def _alphas(
    analyzer: AlphaModel,
    samples: list[tuple[str, Target]],
    layer: int,
    factor: int,
    *,
    batch_size: int,
    progress: ProgressFn | None,
) -> np.ndarray:
    """α of every perturbed sentence, in batches; a non-finite α stops with the sentence."""
    labels = np.empty(len(samples), dtype=np.float64)
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        values = analyzer.alpha_for(
            [t for t, _ in batch], [target for _, target in batch], layer, factor
        )
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            which = start + int(bad[0])
            where = "the sentence itself" if which == 0 else f"perturbed sentence {which}"
            raise FactorscopeError(
                f"α of factor {factor} at layer {layer} is {values[bad[0]]} (not a number) "
                f"for {where}: {batch[bad[0]][0]!r}; the model or dictionary gives non-finite "
                "values, so there is no LIME map"
            )
        labels[start : start + len(batch)] = values
        if progress is not None:
            progress(start + len(batch), len(samples))
    return labels


def _local_fit(
    data: np.ndarray, labels: np.ndarray, random_state: Any
) -> tuple[float, dict[int, float], float]:
    """LIME's weighted ridge fit of α on the kept-word indicators: intercept, weights, R²."""
    from lime.lime_base import LimeBase
    from scipy import sparse
    from sklearn.metrics import pairwise_distances

    kept = sparse.csr_matrix(data)
    distances = pairwise_distances(kept, kept[0], metric="cosine").ravel() * 100

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d**2) / KERNEL_WIDTH**2))

    base = LimeBase(kernel, verbose=False, random_state=random_state)
    intercept, local_exp, score, _local_pred = base.explain_instance_with_data(
        data, labels.reshape(-1, 1), distances, 0, data.shape[1], feature_selection="none"
    )
    return intercept, dict(local_exp), score


def explain_cached(
    db_path: str | Path,
    analyzer: AlphaModel,
    text: str,
    word_index: int,
    layer: int,
    factor: int,
    *,
    piece: int = 0,
    n_samples: int = 2000,
    seed: int = 0,
    sentence_idx: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """:func:`explain`, reading and writing the database's ``lime_cache``.

    The key covers the dictionary, sentence, word, piece, layer, factor, sample count
    and seed, so a new dictionary never serves a stale map. ``sentence_idx`` (None for
    free text) is stored alongside. The result carries ``cached``.
    """
    from factorscope.warehouse import queries

    reader = queries.WarehouseReader(db_path)
    # The analyzer's own dictionary (the page's, which need not be the active one).
    dictionary_id = getattr(analyzer, "dictionary_id", None)
    with reader.connect() as con:
        if dictionary_id is None:
            dictionary_id = queries.active_dictionary_id(con)
        key = cache_key(dictionary_id, text, word_index, layer, factor, n_samples, seed, piece)
        hit = queries.lime_cache_get(con, key)
    if hit is not None:
        return {**hit["result"], "cached": True}
    result = explain(
        analyzer,
        text,
        word_index,
        layer,
        factor,
        piece=piece,
        n_samples=n_samples,
        seed=seed,
        progress=progress,
    )
    queries.lime_cache_put(
        db_path,
        key,
        factor=result["factor"],
        layer=result["layer"],
        sentence_idx=sentence_idx,
        word_index=result["word_index"],
        n_samples=result["n_samples"],
        result=result,
        dictionary_id=dictionary_id,
    )
    return {**result, "cached": False}


def _number(value: Any, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise FactorscopeError(f"LIME gave {value} for {what}: not a number, so no map")
    return value
