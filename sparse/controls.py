"""Control dictionaries: random atoms beside a learned one, at the same sparsity.

A quality number about a dictionary (how interpretable its factors are, how well they
separate word senses) means something only beside what the same pipeline gives without
learning. A *control* is a dictionary of the parent's size and preprocessing whose atoms
are not learned:

- ``gaussian``: independent Gaussian directions in the preprocessed space;
- ``sample-atoms``: preprocessed vectors of the stored sample drawn at random (never
  among the vectors the lambda search codes), as the learner's own initial dictionary
  is drawn.

Its ``lambda1`` is then bisected (in log space) until its mean L0 on a seeded subsample
of the stored sample is within ``rel_tol`` (2 %) of the parent's mean L0 on the same
vectors, both coded by :class:`~factorscope.sparse.encoder.SparseEncoder` (SPAMS lasso,
non-negative) exactly as ``encode`` codes them. A search that cannot get within the
tolerance returns the closest lambda it found and says so (``LambdaSearch.converged``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import InvalidInputError, check_fitted, check_layers, check_X
from .dictionary import DictionaryLearner
from .encoder import SparseEncoder

L0_TOLERANCE = 0.02
"""A control's mean L0 is within this share of the parent's (|L0 - target| <= 0.02 target)."""

MAX_STEPS = 20
"""Encodes of the bisection subsample at most (the bracketing steps included)."""

BISECTION_VECTORS = 16_384
"""Vectors of the stored sample the lambda search codes (all of them when fewer)."""

_BRACKET_FACTOR = 4.0
"""Lambda is multiplied or divided by this until the target L0 is bracketed."""

_LAMBDA_RANGE = (1e-9, 1e9)


def gaussian_atoms(n_factors: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """``n_factors`` independent standard Gaussian directions, unit-norm rows (float32)."""
    atoms = rng.standard_normal((n_factors, n_features))
    return _unit_rows(atoms)


def sample_atoms(n_factors: int, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n_factors`` distinct rows of ``pool`` (preprocessed vectors) drawn at random,
    unit-norm (float32). Rows of zero norm and repeated rows are never drawn."""
    pool = np.asarray(pool, dtype=np.float32)
    usable = np.flatnonzero(np.linalg.norm(pool, axis=1) > 0)
    if usable.size:
        # The same token at the same position has the same embedding: draw distinct rows.
        _, first = np.unique(pool[usable], axis=0, return_index=True)
        usable = usable[np.sort(first)]
    if usable.size < n_factors:
        raise InvalidInputError(
            f"sample-atoms needs {n_factors:,} distinct non-zero vectors to draw atoms from, "
            f"but only {usable.size:,} are left beside the lambda search's vectors; "
            "ingest a larger sample or use the gaussian control"
        )
    picked = rng.choice(usable, size=n_factors, replace=False)
    return _unit_rows(pool[picked])


def _unit_rows(atoms: np.ndarray) -> np.ndarray:
    atoms = np.asarray(atoms, dtype=np.float64)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    return np.ascontiguousarray(atoms, dtype=np.float32)


@dataclass(frozen=True)
class ControlKind:
    """One kind of control: what its atoms are, and how they are made."""

    description: str
    draws_from_sample: bool
    """Its atoms are sample vectors, drawn apart from the lambda search's vectors."""
    atoms: Callable[[int, np.ndarray, np.random.Generator], np.ndarray]
    """``atoms(n_factors, pool, rng)`` -> unit-norm rows; ``pool`` holds the preprocessed
    vectors to draw from (none, shape (0, n_features), when ``draws_from_sample`` is false)."""


CONTROL_KINDS: dict[str, ControlKind] = {
    "gaussian": ControlKind(
        "Gaussian random unit atoms in the preprocessed space",
        draws_from_sample=False,
        atoms=lambda n_factors, pool, rng: gaussian_atoms(n_factors, pool.shape[1], rng),
    ),
    "sample-atoms": ControlKind(
        "preprocessed vectors of the stored sample drawn at random, unit-norm",
        draws_from_sample=True,
        atoms=sample_atoms,
    ),
}
"""The kinds of ``learn --control``, by name (the CLI's choices come from this table)."""


@dataclass(frozen=True)
class LambdaSearch:
    """The outcome of :func:`bisect_lambda`."""

    lambda1: float
    """The lambda found: within the tolerance when ``converged``, else the closest tried."""
    mean_l0: float
    """The mean L0 at ``lambda1``."""
    target_l0: float
    rel_tolerance: float
    converged: bool
    """Whether ``|mean_l0 - target_l0| <= rel_tolerance * target_l0``."""
    trace: tuple[tuple[float, float], ...]
    """Every (lambda, mean L0) tried, in order."""

    @property
    def steps(self) -> int:
        return len(self.trace)

    @property
    def tolerance(self) -> float:
        """The tolerance in L0 units."""
        return self.rel_tolerance * self.target_l0


def bisect_lambda(
    mean_l0: Callable[[float], float],
    target: float,
    *,
    start: float,
    rel_tol: float = L0_TOLERANCE,
    max_steps: int = MAX_STEPS,
    progress: Callable[[int, float, float], None] | None = None,
) -> LambdaSearch:
    """The lambda whose mean L0 is within ``rel_tol * target`` of ``target``.

    Mean L0 falls as lambda grows. From ``start``, lambda is multiplied (L0 too high) or
    divided (too low) by 4 until the target is bracketed, then the bracket is halved in
    log space (its geometric mean is tried) until a lambda is within the tolerance. At
    most ``max_steps`` calls of ``mean_l0``; if none was within the tolerance, the
    closest lambda tried is returned with ``converged=False``.

    Parameters
    ----------
    mean_l0 : callable
        ``mean_l0(lambda1)``: the mean number of non-zero codes per vector.
    target : float
        The mean L0 to match (>= 0).
    start : float
        The first lambda tried (> 0), e.g. the parent's.
    rel_tol : float, default=0.02
    max_steps : int, default=20
    progress : callable, optional
        Called as ``progress(step, lambda1, mean_l0)`` after each step.
    """
    if not (math.isfinite(target) and target >= 0):
        raise InvalidInputError(f"target mean L0 must be a finite number >= 0, got {target!r}")
    if not (math.isfinite(start) and start > 0):
        raise InvalidInputError(f"start lambda must be positive, got {start!r}")
    if not rel_tol >= 0:
        raise InvalidInputError(f"rel_tol must be >= 0, got {rel_tol!r}")
    if max_steps < 1:
        raise InvalidInputError(f"max_steps must be at least 1, got {max_steps!r}")
    tolerance = rel_tol * target
    trace: list[tuple[float, float]] = []
    dense: float | None = None  # largest lambda tried whose L0 is above the target
    sparse: float | None = None  # smallest lambda tried whose L0 is below the target
    lam = float(start)
    low, high = _LAMBDA_RANGE
    while len(trace) < max_steps:
        l0 = float(mean_l0(lam))
        trace.append((lam, l0))
        if progress is not None:
            progress(len(trace), lam, l0)
        if abs(l0 - target) <= tolerance:
            break
        if l0 > target:
            dense = lam if dense is None else max(dense, lam)
        else:
            sparse = lam if sparse is None else min(sparse, lam)
        if dense is not None and sparse is not None:
            nxt = math.sqrt(dense * sparse)
        elif dense is not None:
            nxt = dense * _BRACKET_FACTOR
        else:
            nxt = sparse / _BRACKET_FACTOR  # type: ignore[operator]
        if not low <= nxt <= high or nxt in (dense, sparse):
            break  # no lambda left to try: out of range, or the bracket cannot shrink
        lam = nxt
    best_lam, best_l0 = min(trace, key=lambda t: (abs(t[1] - target), t[0]))
    return LambdaSearch(
        lambda1=best_lam,
        mean_l0=best_l0,
        target_l0=float(target),
        rel_tolerance=float(rel_tol),
        converged=abs(best_l0 - target) <= tolerance,
        trace=tuple(trace),
    )


def mean_l0(
    components: np.ndarray, X_pre: np.ndarray, lambda1: float, *, n_jobs: int = -1
) -> float:
    """Mean non-zero codes per row of preprocessed ``X_pre``, coded as ``encode`` codes
    (:class:`SparseEncoder`, SPAMS lasso, non-negative; L0 counted as encode counts it)."""
    codes = SparseEncoder(components, lambda1=lambda1, n_jobs=n_jobs).transform(X_pre)
    return float(np.diff(codes.indptr).mean()) if codes.shape[0] else 0.0


@dataclass(frozen=True)
class Control:
    """A control dictionary made by :func:`make_control`."""

    learner: DictionaryLearner
    """Fitted: the random atoms, the parent's preprocessing, ``lambda1`` from the search."""
    kind: str
    search: LambdaSearch
    n_bisection_vectors: int
    """Sample vectors the lambda search coded (the same for the parent and the control)."""
    seconds: float


def make_control(
    parent: DictionaryLearner,
    kind: str,
    X: Any,
    *,
    layers: Any = None,
    seed: int = 0,
    n_bisection_vectors: int = BISECTION_VECTORS,
    rel_tol: float = L0_TOLERANCE,
    max_steps: int = MAX_STEPS,
    n_jobs: int = -1,
    progress: Callable[[int, float, float], None] | None = None,
) -> Control:
    """A control of ``parent``: random atoms of its size and preprocessing, lambda matched.

    Parameters
    ----------
    parent : DictionaryLearner
        Fitted (learned or imported); its ``lambda1`` is the one its codes are made with.
    kind : {"gaussian", "sample-atoms"}
        See :data:`CONTROL_KINDS`.
    X : array-like of shape (n_samples, n_features)
        The stored sample (raw hidden states, rows in any order).
    layers : array-like of int of shape (n_samples,), optional
        Layer of each row (needed when the parent's preprocessing is per layer).
    seed : int, default=0
        Seeds the subsample the lambda search codes (a random permutation of the rows:
        its first ``n_bisection_vectors`` rows, every layer in proportion) and the atoms
        (``sample-atoms`` draws from the remaining rows).
    n_bisection_vectors : int, default=16384
        At most this many vectors are coded per bisection step (``sample-atoms`` keeps
        at least ``n_factors`` rows aside for its atoms).
    rel_tol, max_steps, progress :
        See :func:`bisect_lambda`.
    n_jobs : int, default=-1
        SPAMS workers of the encodes.

    Returns
    -------
    Control
        Same inputs and seed, same control (atoms, lambda) bit for bit on one machine.
    """
    if kind not in CONTROL_KINDS:
        raise InvalidInputError(
            f"control kind must be one of {', '.join(CONTROL_KINDS)}, not {kind!r}"
        )
    check_fitted(parent, "components_")
    if isinstance(seed, bool) or int(seed) < 0:
        raise InvalidInputError(f"seed must be an int >= 0, got {seed!r}")
    if n_bisection_vectors < 1:
        raise InvalidInputError(
            f"n_bisection_vectors must be at least 1, got {n_bisection_vectors}"
        )
    started = time.perf_counter()
    comp = np.asarray(parent.components_, dtype=np.float32)
    n_factors, n_features = comp.shape
    X = check_X(X, name="X", n_features=n_features, min_samples=1)
    lay = check_layers(layers, X.shape[0])
    n = X.shape[0]
    n_search = min(n_bisection_vectors, n)
    maker = CONTROL_KINDS[kind]
    if maker.draws_from_sample:
        n_search = min(n_search, n - n_factors)
        if n_search < 1:
            raise InvalidInputError(
                f"sample-atoms needs more than {n_factors:,} sample vectors (one per atom, "
                f"plus vectors for the lambda search), but the sample holds {n:,}; "
                "ingest a larger sample or use the gaussian control"
            )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    search_rows = np.sort(order[:n_search])  # sorted: the same rows, read in stored order
    pre = getattr(parent, "preprocessor_", None)

    def preprocess(rows: np.ndarray) -> np.ndarray:
        Xr = X[rows]
        if pre is None:
            return np.ascontiguousarray(Xr)
        return np.ascontiguousarray(pre._transform(Xr, None if lay is None else lay[rows]))

    X_search = preprocess(search_rows)
    rest = np.sort(order[n_search:]) if maker.draws_from_sample else order[:0]
    atoms = maker.atoms(n_factors, preprocess(rest), rng)
    target = mean_l0(comp, X_search, float(parent.lambda1), n_jobs=n_jobs)
    search = bisect_lambda(
        lambda lam: mean_l0(atoms, X_search, lam, n_jobs=n_jobs),
        target,
        start=float(parent.lambda1),
        rel_tol=rel_tol,
        max_steps=max_steps,
        progress=progress,
    )
    learner = DictionaryLearner.from_array(
        atoms,
        n_features=n_features,
        layout="rows",
        preprocessor=pre,
        preprocessing=parent.preprocessing,
        lambda1=search.lambda1,
        batch_size=parent.batch_size,
        n_iter=parent.n_iter,
        seed=int(seed),
        n_jobs=parent.n_jobs,
    )
    seconds = time.perf_counter() - started
    learner.fit_seconds_ = seconds
    return Control(learner, kind, search, int(n_search), seconds)
