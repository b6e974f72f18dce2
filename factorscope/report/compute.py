"""The report's numbers: pure functions on plain data (no database, no files)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from factorscope.errors import InputError
from factorscope.report.model import BASELINE_MIN_OCCURRENCES, PolysemyRow, SenseRow


def clean_words(words: tuple[str, ...] | list[str]) -> list[str]:
    """The polysemy words stripped, lower-cased and de-duplicated, in order."""
    if isinstance(words, str):
        raise InputError("words must be a list of words, not one string")
    clean: list[str] = []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise InputError(f"every word must be a non-empty string, got {word!r}")
        w = word.strip().lower()
        if w not in clean:
            clean.append(w)
    return clean


def pick_examples(candidates: list[int], k: int, seed: int, level: str) -> list[int]:
    """``k`` factors from the stronger half of ``candidates`` (strongest first), seeded."""
    if k <= 0 or not candidates:
        return []
    pool = candidates[: max(k, (len(candidates) + 1) // 2)]
    rng = random.Random(f"{seed}:{level}")
    picked = set(rng.sample(pool, min(k, len(pool))))
    return [f for f in pool if f in picked]


def fvu_by_layer(quality: list[dict[str, Any]]) -> dict[int, float]:
    """{layer: FVU} from the ``layer_quality`` rows."""
    return {int(r["layer"]): float(r["fvu"]) for r in quality}


def total_codes(counts: list[dict[str, Any]]) -> int:
    """Non-zero codes over all layers, from the per-layer code counts."""
    return int(sum(r["non_zeros"] for r in counts))


def polysemy_row(
    word: str, first: list[int | None], last: list[int | None], *, layers: tuple[int, int]
) -> PolysemyRow:
    """The polysemy numbers of one word from its occurrences' top factors at two layers.

    ``first`` and ``last`` hold one entry per occurrence (None: no factor fired).
    """
    if len(first) != len(last):
        raise InputError("first and last must list the same occurrences")

    def stats(tops: list[int | None]) -> tuple[int, float, int | None, set[int]]:
        fired = [t for t in tops if t is not None]
        if not fired:
            return 0, 0.0, None, set()
        (best, n), *_ = sorted(Counter(fired).items(), key=lambda kv: (-kv[1], kv[0]))
        return len(set(fired)), n / len(fired), best, set(fired)

    d1, s1, t1, set1 = stats(first)
    d2, s2, t2, set2 = stats(last)
    union = set1 | set2
    return PolysemyRow(
        word=word,
        occurrences=len(first),
        first_layer=layers[0],
        last_layer=layers[1],
        distinct_first=d1,
        distinct_last=d2,
        top_share_first=s1,
        top_share_last=s2,
        top_factor_first=t1,
        top_factor_last=t2,
        jaccard=len(set1 & set2) / len(union) if union else 0.0,
    )


def polysemy_rows(
    words: list[str],
    tops: dict[str, tuple[list[int | None], list[int | None]]],
    *,
    layers: tuple[int, int],
) -> tuple[list[PolysemyRow], list[str]]:
    """One :class:`PolysemyRow` per word that occurs, and the words that do not."""
    rows: list[PolysemyRow] = []
    skipped: list[str] = []
    for word in words:
        first, last = tops[word]
        if not first:
            skipped.append(word)
            continue
        rows.append(polysemy_row(word, first, last, layers=layers))
    return rows, skipped


def baseline(first: list[dict[str, Any]], last: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Medians of the top-factor spread over the frequent words, first vs last layer.

    ``first`` and ``last`` are rows of word, fired, distinct_top, top_count (as
    :func:`factorscope.warehouse.queries.word_top_factor_spread` gives them).
    """
    import numpy as np

    a = {r["word"]: r for r in first}
    b = {r["word"]: r for r in last}
    words = sorted(set(a) & set(b))
    if not words:
        return None

    def share(r: dict) -> float:
        return r["top_count"] / r["fired"] if r["fired"] else 0.0

    d1 = np.array([a[w]["distinct_top"] for w in words], dtype=float)
    d2 = np.array([b[w]["distinct_top"] for w in words], dtype=float)
    return {
        "n_words": len(words),
        "min_occurrences": BASELINE_MIN_OCCURRENCES,
        "median_distinct_first": float(np.median(d1)),
        "median_distinct_last": float(np.median(d2)),
        "median_share_first": float(np.median([share(a[w]) for w in words])),
        "median_share_last": float(np.median([share(b[w]) for w in words])),
        "share_growing": float(np.mean(d2 > d1)),
    }


def interpretation(
    rows: list[PolysemyRow], first_layer: int, last_layer: int, baseline: dict | None
) -> str:
    """One paragraph that reads the polysemy table against the baseline."""
    split = [r.word for r in rows if r.reading == "split"]
    few = [r.word for r in rows if r.occurrences < 10]
    if len(split) == len(rows):
        verdict = (
            f"For every word the number of distinct top factors grows from layer "
            f"{first_layer} to layer {last_layer}: later layers split senses, as the "
            "reference observed."
        )
    elif split:
        verdict = (
            f"For {len(split)} of {len(rows)} words ({', '.join(split)}) the number of "
            f"distinct top factors grows from layer {first_layer} to layer {last_layer}: "
            "there, later layers split senses; for the others they do not."
        )
    else:
        verdict = (
            f"For no word does the number of distinct top factors grow from layer "
            f"{first_layer} to layer {last_layer}: this run does not show later layers "
            "splitting senses."
        )
    if baseline:
        verdict += (
            f" For comparison, the median word with {baseline['min_occurrences']}+ "
            f"occurrences goes from {baseline['median_distinct_first']:g} to "
            f"{baseline['median_distinct_last']:g} distinct top factors (most common one: "
            f"{baseline['median_share_first']:.0%} → {baseline['median_share_last']:.0%} of "
            "occurrences), so splitting by itself is not specific to ambiguous words."
        )
    if few:
        verdict += f" Fewer than 10 occurrences of {', '.join(few)}: read those rows with care."
    return verdict


def sense_rows(summary: list[dict[str, Any]]) -> list[SenseRow]:
    """One :class:`SenseRow` per layer from the rows of ``sense_probe_summary``."""
    by = {(int(r["layer"]), r["representation"]): r for r in summary}
    rows = []
    for layer in sorted({layer for layer, _ in by}):
        codes, states = by.get((layer, "codes")), by.get((layer, "states"))
        if codes is None or states is None:
            continue
        rows.append(
            SenseRow(
                layer=layer,
                n_lemmas=int(codes["n_lemmas"]),
                codes=float(codes["accuracy"]),
                codes_lo=float(codes["accuracy_lo"]),
                codes_hi=float(codes["accuracy_hi"]),
                states=float(states["accuracy"]),
                states_lo=float(states["accuracy_lo"]),
                states_hi=float(states["accuracy_hi"]),
                chance=float(codes["chance"]),
                off_word_share=(
                    None if codes["off_word_share"] is None else float(codes["off_word_share"])
                ),
            )
        )
    return rows


def sense_reading(rows: list[SenseRow]) -> str:
    """One paragraph that reads the sense probe: the best layer, layer 0, the ceiling."""
    if not rows:
        return ""
    best = max(rows, key=lambda r: (r.codes, -r.layer))
    first = rows[0]
    kept = [r.kept for r in rows if r.kept is not None]
    worst_kept = min(kept) if kept else None
    text = (
        f"Over {best.n_lemmas:,} words, the codes separate senses best at layer {best.layer} "
        f"(1-NN accuracy {best.codes:.2f}, 95% CI {best.codes_lo:.2f}–{best.codes_hi:.2f}; "
        f"chance {best.chance:.2f})"
        + (
            f"; at layer {first.layer} they reach {first.codes:.2f}. "
            if best.layer != first.layer
            else ", the first layer: the later layers add no separation. "
        )
    )
    if worst_kept is not None:
        text += (
            f"The codes keep at least {worst_kept:.0%} of the hidden states' accuracy at every "
            "layer (codes / states). "
        )
    if best.off_word_share is not None:
        text += (
            f"At layer {best.layer}, {best.off_word_share:.0%} of the occurrences have a top "
            f"factor other than the word's layer-{first.layer} factor"
            + (
                f" (at layer {first.layer}: {first.off_word_share:.0%})."
                if first.off_word_share is not None and best.layer != first.layer
                else "."
            )
        )
    return text.strip()
