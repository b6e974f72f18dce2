"""Claims about a dictionary's factors, each with its uncertainty, per layer.

What ``factorscope explain`` measured (one held-out detection per factor and layer, see
:mod:`factorscope.evidence.explain`) becomes a few numbers a person can check, each
with a 95% interval, for the dictionary and for its random controls side by side:

- the **mean detection** of the factors scored at a layer, with a seeded percentile
  bootstrap interval (:func:`bootstrap_mean`);
- the **share of word-level factors** (the paper's "word" factors: the best rule is
  one term of family ``word`` or ``lemma`` with held-out detection >= 0.8,
  :func:`is_word_level`), with a Wilson interval (:func:`wilson`);
- the **level distribution** (low / mid / high, by the layer of the factor's IS peak)
  of the factors scored at a layer, each share with a Wilson interval;
- the **comparison** "learned minus control" of the mean detection, with a bootstrap
  interval of the difference and a verdict (:func:`compare_means`).

The app's Evidence page and the report both call :func:`layer_claims` and
:func:`compare_layers` on :class:`ScoredFactors` built from the warehouse's rows, so
the numbers agree wherever they are shown. Everything here is numpy over arrays: no
SQL, no frames. The same inputs and seed always give the same intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

LEVELS: tuple[str, ...] = ("low", "mid", "high")
"""The levels of a factor, by the layer of its importance peak (summary_sql/30_levels.sql)."""

WORD_FAMILIES: frozenset[str] = frozenset({"word", "lemma"})
"""Rule families of a word-level factor's one-term rule."""

WORD_LEVEL_DETECTION = 0.8
"""Held-out detection a one-term word or lemma rule needs for its factor to be word-level."""

CHANCE = 0.5
"""Detection (balanced accuracy) of a rule that knows nothing."""

Z95 = 1.959963984540054
"""The standard normal's 97.5th percentile (a two-sided 95% interval)."""

N_BOOT = 1000
"""Bootstrap resamples per interval: the percentile interval's ends move by about
0.1 standard error between seeds at this count, well under the digits shown."""

MIN_GAIN = 0.01
"""The smallest advantage in mean detection a verdict counts (see :func:`verdict`)."""

Verdict = Literal["beats", "does not beat", "cannot tell"]
VERDICTS: tuple[Verdict, ...] = ("beats", "does not beat", "cannot tell")


# ----------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """An estimate and its 95% interval, from ``n`` observations."""

    estimate: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def text(self, digits: int = 3) -> str:
        """``0.912 [0.883, 0.941]`` (three digits: a mean of 1,000 factors' detections has
        an interval about 0.01 wide, which two digits would hide)."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Share:
    """``count`` of ``n``, as a share with its 95% Wilson interval (0 of 0: share 0,
    interval [0, 1], nothing known)."""

    count: int
    n: int
    share: float
    low: float
    high: float

    def text(self, digits: int = 1) -> str:
        """``12.0% [9.1%, 15.6%]``."""
        return (
            f"{100 * self.share:.{digits}f}% "
            f"[{100 * self.low:.{digits}f}%, {100 * self.high:.{digits}f}%]"
        )


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(seed if isinstance(seed, int) else list(seed))


def _boot_means(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int = 2_000_000
) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement) of ``values``, drawn in chunks so
    that a large ``values`` never holds more than ``chunk`` indices at once (one value:
    its own mean every time)."""
    n = values.size
    if n == 1:
        return np.full(n_boot, float(values[0]))
    out = np.empty(n_boot, dtype=np.float64)
    per = max(1, chunk // n)
    for lo in range(0, n_boot, per):
        hi = min(lo + per, n_boot)
        picks = rng.integers(0, n, size=(hi - lo, n), dtype=np.int32)
        out[lo:hi] = values[picks].mean(axis=1)
    return out


def bootstrap_mean(
    values: Iterable[float],
    *,
    seed: int | Sequence[int] = 0,
    n_boot: int = N_BOOT,
    level: float = 0.95,
) -> Interval | None:
    """The mean of ``values`` (NaN dropped) with a percentile bootstrap interval.

    Parameters
    ----------
    values : array-like of shape (n,)
        The observations (one per factor).
    seed : int or sequence of int
        Seeds the resampling (``(seed, layer)`` keeps layers independent and stable).
    n_boot : int
        Resamples; ``level`` the interval's coverage.

    Returns
    -------
    Interval or None
        None when no value is left; one value gives the interval [v, v].
    """
    x = _finite(values)
    _check_boot(n_boot, level)
    if x.size == 0:
        return None
    return _interval(float(x.mean()), _boot_means(x, n_boot, _rng(seed)), x.size, level)


def _interval(estimate: float, means: np.ndarray, n: int, level: float = 0.95) -> Interval:
    """The percentile interval of bootstrap ``means`` around ``estimate``."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    # the percentile interval holds the estimate but for a freak draw; never show otherwise
    return Interval(estimate, float(min(low, estimate)), float(max(high, estimate)), int(n))


def wilson(count: int, n: int, *, z: float = Z95) -> Share:
    """``count`` successes of ``n`` as a share with its Wilson score interval.

    The Wilson interval stays inside [0, 1] and is sensible at 0 or ``n`` successes and
    at small ``n`` (where the normal approximation is not).
    """
    count, n = int(count), int(n)
    if n < 0 or not 0 <= count <= n:
        raise ValueError(f"count must be in 0..n, got count={count}, n={n}")
    if n == 0:
        return Share(0, 0, 0.0, 0.0, 1.0)
    p = count / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if count == 0 else max(0.0, float(centre - half))
    high = 1.0 if count == n else min(1.0, float(centre + half))
    return Share(count, n, p, low, high)


def level_shares(levels: Iterable[str | None]) -> dict[str, Share]:
    """The share of each level among ``levels`` (None, a factor without a level, is left
    out of the count), every level present, each with its Wilson interval."""
    known = [lv for lv in levels if lv in LEVELS]
    return {lv: wilson(sum(1 for x in known if x == lv), len(known)) for lv in LEVELS}


def is_word_level(
    rule_kind: Iterable[str | None],
    n_terms: Iterable[int | None],
    detection: Iterable[float | None],
    *,
    threshold: float = WORD_LEVEL_DETECTION,
) -> np.ndarray:
    """Whether each factor-layer is word-level: its rule is one term of family ``word``
    or ``lemma`` and its held-out detection is at least ``threshold``.

    Returns
    -------
    ndarray of shape (n,), bool
    """
    out = []
    for kind, terms, det in zip(rule_kind, n_terms, detection, strict=True):
        out.append(
            kind in WORD_FAMILIES
            and terms == 1
            and det is not None
            and np.isfinite(det)
            and det >= threshold
        )
    return np.asarray(out, dtype=bool)


# ----------------------------------------------------------------------------- per layer


@dataclass(frozen=True)
class ScoredFactors:
    """One dictionary's scored factor-layers (held-out detection not null), as parallel
    arrays of shape (n,): ``layer``, ``factor``, ``detection``, ``word_level`` (bool),
    ``level`` (the factor's IS peak level, 'low' / 'mid' / 'high', or None).

    Build it with :meth:`from_columns` from whatever rows the caller read (the
    warehouse's ``evidence_read.scored_factors`` has these columns).
    """

    dictionary_id: int
    layer: np.ndarray
    factor: np.ndarray
    detection: np.ndarray
    word_level: np.ndarray
    level: np.ndarray

    @classmethod
    def from_columns(
        cls,
        dictionary_id: int,
        *,
        layer: Iterable[int],
        factor: Iterable[int],
        detection: Iterable[float | None],
        word_level: Iterable[bool],
        level: Iterable[str | None],
    ) -> ScoredFactors:
        """Rows with no detection (None or NaN) are dropped: they were not scored."""
        det = np.asarray([np.nan if d is None else float(d) for d in detection], dtype=np.float64)
        arrays = [
            np.asarray(list(layer), dtype=np.int64),
            np.asarray(list(factor), dtype=np.int64),
            det,
            np.asarray(list(word_level), dtype=bool),
            np.asarray(list(level), dtype=object),
        ]
        if len({a.size for a in arrays}) != 1:
            raise ValueError("layer, factor, detection, word_level and level differ in length")
        keep = np.isfinite(det)
        return cls(int(dictionary_id), *(a[keep] for a in arrays))

    @property
    def layers(self) -> list[int]:
        return sorted({int(x) for x in self.layer})

    def at(self, layer: int) -> np.ndarray:
        """The rows of one layer, as a boolean mask."""
        return self.layer == int(layer)


@dataclass(frozen=True)
class LayerClaim:
    """What one dictionary's factors at one layer support, with 95% intervals.

    ``detection`` is None when no factor was scored there; ``word_level`` and each of
    ``levels`` are shares of the ``n_scored`` factors.
    """

    dictionary_id: int
    layer: int
    n_scored: int
    detection: Interval | None
    word_level: Share
    levels: dict[str, Share] = field(default_factory=dict)


def layer_claims(
    scored: ScoredFactors, *, seed: int = 0, n_boot: int = N_BOOT
) -> dict[int, LayerClaim]:
    """:class:`LayerClaim` of every layer with a scored factor, by layer.

    The bootstrap of layer ``L`` is seeded with ``(seed, L)``, so a layer's interval
    does not depend on which other layers were scored.
    """
    out: dict[int, LayerClaim] = {}
    for layer in scored.layers:
        mask = scored.at(layer)
        n = int(mask.sum())
        out[layer] = LayerClaim(
            dictionary_id=scored.dictionary_id,
            layer=layer,
            n_scored=n,
            detection=bootstrap_mean(scored.detection[mask], seed=(seed, layer), n_boot=n_boot),
            word_level=wilson(int(scored.word_level[mask].sum()), n),
            levels=level_shares(scored.level[mask]),
        )
    return out


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Comparison:
    """Learned minus control, at one layer: the difference of the mean detections with
    its bootstrap 95% interval (None when either side has no scored factor) and the
    :func:`verdict` it supports."""

    layer: int
    learned: Interval | None
    control: Interval | None
    difference: Interval | None
    verdict: Verdict

    def sentence(self) -> str:
        """``beats its controls by 0.21 [0.18, 0.24]`` and the like."""
        if self.difference is None:
            return "cannot tell (a side has no scored factor)"
        gap = self.difference.text()
        if self.verdict == "beats":
            return f"beats the controls by {gap}"
        if self.verdict == "does not beat":
            return f"does not beat the controls (difference {gap})"
        return f"cannot tell (difference {gap})"


def verdict(difference: Interval | None, *, min_gain: float = MIN_GAIN) -> Verdict:
    """What a learned-minus-control interval supports.

    ``beats``: the whole interval is above 0 (the learned mean is higher, at 95%);
    ``does not beat``: the whole interval is below ``min_gain`` (any advantage is
    smaller than that, or the control is better); ``cannot tell``: the interval holds
    both 0 and ``min_gain``, or a side was not scored.
    """
    if difference is None or difference.n < 2:
        return "cannot tell"
    if difference.low > 0:
        return "beats"
    if difference.high < min_gain:
        return "does not beat"
    return "cannot tell"


def compare_means(
    learned: Iterable[float],
    control: Iterable[float],
    *,
    layer: int = 0,
    seed: int | Sequence[int] = 0,
    n_boot: int = N_BOOT,
    min_gain: float = MIN_GAIN,
) -> Comparison:
    """Mean of ``learned`` minus mean of ``control`` (NaN dropped), each side resampled
    on its own (they are different factors), with a percentile bootstrap interval.

    The learned side is resampled with ``seed`` itself, so its interval is the one
    :func:`bootstrap_mean` gives with that seed (and :func:`layer_claims` with
    ``(seed, layer)``); the control side with ``(*seed, 1)``. ``difference.n`` is the
    smaller side's count.
    """
    a, b = _finite(learned), _finite(control)
    _check_boot(n_boot, 0.95)
    if a.size == 0 or b.size == 0:
        left = bootstrap_mean(a, seed=seed, n_boot=n_boot)
        right = bootstrap_mean(b, seed=_with(seed, 1), n_boot=n_boot)
        return Comparison(int(layer), left, right, None, "cannot tell")
    boot_a = _boot_means(a, n_boot, _rng(seed))
    boot_b = _boot_means(b, n_boot, _rng(_with(seed, 1)))
    left = _interval(float(a.mean()), boot_a, a.size)
    right = _interval(float(b.mean()), boot_b, b.size)
    difference = _interval(left.estimate - right.estimate, boot_a - boot_b, min(a.size, b.size))
    return Comparison(int(layer), left, right, difference, verdict(difference, min_gain=min_gain))


def compare_layers(
    learned: ScoredFactors,
    controls: Sequence[ScoredFactors],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    min_gain: float = MIN_GAIN,
) -> dict[int, Comparison]:
    """:func:`compare_means` at every layer the learned dictionary was scored at, against
    the controls' factors pooled (several controls are several draws of the same null).
    A layer where no control was scored compares with nothing: "cannot tell"."""
    out: dict[int, Comparison] = {}
    for layer in learned.layers:
        pooled = (
            np.concatenate([c.detection[c.at(layer)] for c in controls])
            if controls
            else np.empty(0)
        )
        out[layer] = compare_means(
            learned.detection[learned.at(layer)],
            pooled,
            layer=layer,
            seed=(seed, layer),
            n_boot=n_boot,
            min_gain=min_gain,
        )
    return out


# ----------------------------------------------------------------------------- helpers


def _finite(values: Iterable[float | None]) -> np.ndarray:
    x = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return x[np.isfinite(x)]


def _with(seed: int | Sequence[int], extra: int) -> list[int]:
    return [seed, extra] if isinstance(seed, int) else [*seed, extra]


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
