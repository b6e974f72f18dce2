"""LIME saliency maps for one factor at one token (Yun et al. 2021, section on high-level factors).

The "classifier" LIME explains is the sparse code itself: each perturbed sentence (some
words replaced by ``[UNK]``) is run through the model and the sparse encoder again, and
the regression target is α of factor ``c`` at the target word and layer. LIME's text
explainer fits a weighted ridge regression of those α on which words were kept; a word's
weight says how much keeping it raises (positive, shown red) or lowers (negative, green)
the factor.

Words are the model's own words: runs of letters/digits and single punctuation marks,
the way BERT's pre-tokenizer splits them, so LIME's word ``i`` is the tokenizer's
``word_index`` ``i`` and masking one word never shifts the index of the target.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from factorscope.errors import InputError

_WORD = re.compile(r"\w+|[^\w\s]")

#: ``progress(done, total)`` is called after each batch of perturbed sentences.
ProgressFn = Callable[[int, int], None]


class AlphaModel(Protocol):
    """What :func:`explain` needs from :class:`factorscope.analyzer.LiveAnalyzer`."""

    def alpha_for(
        self, texts: list[str], word_index: int, layer: int, factor: int
    ) -> np.ndarray: ...


def split_words(text: str) -> list[str]:
    """The words of ``text`` as BERT's pre-tokenizer sees them (words and punctuation marks).

    >>> split_words("The cat's left, then.")
    ['The', 'cat', "'", 's', 'left', ',', 'then', '.']
    """
    return _WORD.findall(text)


def cache_key(
    dictionary_id: int | None,
    text: str,
    word_index: int,
    layer: int,
    factor: int,
    n_samples: int,
    seed: int = 0,
) -> str:
    """A stable key for one LIME result: the same inputs always map to the same row."""
    payload = json.dumps(
        [dictionary_id, text, int(word_index), int(layer), int(factor), int(n_samples), seed],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def explain(
    analyzer: AlphaModel,
    text: str,
    word_index: int,
    layer: int,
    factor: int,
    *,
    n_samples: int = 2000,
    seed: int = 0,
    progress: ProgressFn | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Explain α of ``factor`` at word ``word_index`` and ``layer`` of ``text`` with LIME.

    Parameters
    ----------
    analyzer : object with ``alpha_for(texts, word_index, layer, factor) -> ndarray``
        Usually a :class:`factorscope.analyzer.LiveAnalyzer`.
    text : str
        The sentence.
    word_index : int
        Index of the target word in :func:`split_words` order (the tokenizer's word index).
    layer, factor : int
        Where α is read.
    n_samples : int
        Perturbed sentences LIME fits on (the paper used about 2000).
    seed : int
        LIME's random state; the same seed gives the same samples.
    progress : callable, optional
        ``progress(done, total)`` after every batch of ``batch_size`` sentences.

    Returns
    -------
    dict
        ``words``: one ``{"word", "start", "end", "weight", "target"}`` per word, in order;
        ``alpha``: α on the unperturbed sentence; ``intercept``, ``score`` (the local fit's
        R²), ``n_samples``, ``seed``, ``seconds`` and the inputs. JSON-serialisable.
    """
    from lime.lime_text import LimeTextExplainer

    if not isinstance(text, str) or not text.strip():
        raise InputError("LIME needs a non-empty sentence")
    words = split_words(text)
    if not 0 <= int(word_index) < len(words):
        raise InputError(
            f"word index {word_index} is outside the sentence (it has {len(words)} words)"
        )
    if int(n_samples) < 10:
        raise InputError(f"n_samples must be at least 10 (got {n_samples})")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be at least 1 (got {batch_size})")
    word_index, layer, factor, n_samples = int(word_index), int(layer), int(factor), int(n_samples)

    def classifier_fn(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.empty(len(texts), dtype=np.float64)
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            values = np.asarray(analyzer.alpha_for(batch, word_index, layer, factor), float)
            out[start : start + len(batch)] = values.reshape(-1)
            if progress is not None:
                progress(start + len(batch), len(texts))
        return out.reshape(-1, 1)

    started = time.perf_counter()
    explainer = LimeTextExplainer(
        class_names=["alpha"],
        feature_selection="none",
        split_expression=split_words,
        bow=False,
        mask_string="[UNK]",
        random_state=seed,
    )
    exp = explainer.explain_instance(
        text, classifier_fn, labels=(0,), num_features=len(words), num_samples=n_samples
    )
    indexed = exp.domain_mapper.indexed_string
    weights = dict(exp.local_exp[0])
    spans = []
    for i in range(indexed.num_words()):
        start = int(indexed.string_start[indexed.positions[i]])
        word = indexed.word(i)
        spans.append(
            {
                "word": word,
                "start": start,
                "end": start + len(word),
                "weight": _finite(weights.get(i, 0.0)),
                "target": i == word_index,
            }
        )
    return {
        "text": text,
        "word_index": word_index,
        "layer": layer,
        "factor": factor,
        "n_samples": n_samples,
        "seed": seed,
        "alpha": _finite(exp.predict_proba[0]),
        "intercept": _finite(exp.intercept[0]),
        "score": _finite(exp.score),
        "words": spans,
        "seconds": round(time.perf_counter() - started, 3),
    }


def explain_cached(
    db_path: str | Path,
    analyzer: AlphaModel,
    text: str,
    word_index: int,
    layer: int,
    factor: int,
    *,
    n_samples: int = 2000,
    seed: int = 0,
    sentence_idx: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """:func:`explain`, reading and writing the database's ``lime_cache``.

    The key covers the dictionary, sentence, word, layer, factor, sample count and seed,
    so a new dictionary never serves a stale map. ``sentence_idx`` (None for free text)
    is stored alongside. The result carries ``cached``.
    """
    from factorscope.warehouse import queries

    reader = queries.WarehouseReader(db_path)
    with reader.connect() as con:
        dictionary_id = queries.active_dictionary_id(con)
        key = cache_key(dictionary_id, text, word_index, layer, factor, n_samples, seed)
        hit = queries.lime_cache_get(con, key)
    if hit is not None:
        return {**hit["result"], "cached": True}
    result = explain(
        analyzer,
        text,
        word_index,
        layer,
        factor,
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
    )
    return {**result, "cached": False}


def _finite(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0
