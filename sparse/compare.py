"""Comparing two dictionaries: which factors are the same, which split or merge.

Two dictionaries learned on the same vectors (another seed, size or lambda) share some
factors up to order, and a factor of a small dictionary often reappears in a larger one
as several narrower factors. This module measures both, from atoms and codes alone
(no SQL, no model):

- :func:`match_one_to_one`: the one-to-one matching of the factors of A and B that
  maximises the summed similarity (Hungarian, ``scipy.optimize.linear_sum_assignment``).
  With sizes ``m_a != m_b`` exactly ``min(m_a, m_b)`` pairs are matched; the extra
  factors of the larger one stay unmatched.
- :func:`best_matches`: each factor's most similar factor on the other side, which need
  not be one-to-one (two factors of A may share their best match in B).
- :func:`stability`: mean matched similarity and the share of matched pairs above
  :data:`STABLE_COSINES` (0.9 and 0.7).
- :func:`coactivation`: the Jaccard index of two factors' activity (alpha > 0) over the
  same (token, layer) vectors: two atoms can differ while firing on the same tokens.
- :func:`decompose_atoms`: each atom of the smaller dictionary as a non-negative sparse
  combination of the larger one's atoms (SPAMS lasso, the project's solver), refitted
  without the L1 shrinkage on the atoms the lasso picked, listed as a split when at
  least two atoms carry weight (see :class:`SplitRule`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment, nnls

from ._validation import InvalidInputError

STABLE_COSINES = (0.9, 0.7)
"""Similarity thresholds of the stability shares: a matched pair above 0.9 is the same
factor, above 0.7 a close relative (the usual cut-offs of published seed comparisons)."""


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching: ``factor_a[i]`` is matched with ``factor_b[i]``.

    Attributes
    ----------
    factor_a, factor_b : ndarray of shape (n_matched,)
        Factor numbers (row / column indices), sorted by ``factor_a``.
    score : ndarray of shape (n_matched,)
        The similarity of each matched pair.
    """

    factor_a: np.ndarray
    factor_b: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.factor_a.size)


def _unit_rows(atoms: Any, name: str) -> np.ndarray:
    """``atoms`` as float64 rows of unit norm (zero rows stay zero)."""
    arr = np.asarray(atoms, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidInputError(f"{name} must be a non-empty 2-d array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} holds NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)


def cosine_matrix(atoms_a: Any, atoms_b: Any) -> np.ndarray:
    """Cosine of every atom of A with every atom of B.

    Parameters
    ----------
    atoms_a : array-like of shape (m_a, n_features)
    atoms_b : array-like of shape (m_b, n_features)

    Returns
    -------
    cosine : ndarray of shape (m_a, m_b)
    """
    a, b = _unit_rows(atoms_a, "atoms_a"), _unit_rows(atoms_b, "atoms_b")
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(
            f"atoms_a has {a.shape[1]} features and atoms_b {b.shape[1]}: "
            "dictionaries of different models cannot be compared"
        )
    return np.clip(a @ b.T, -1.0, 1.0)


def match_one_to_one(similarity: Any) -> Matching:
    """The one-to-one matching of largest total similarity (Hungarian algorithm).

    Parameters
    ----------
    similarity : array-like of shape (m_a, m_b)
        Larger is more alike (cosines, Jaccard indices...). Sizes may differ: the
        ``min(m_a, m_b)`` pairs of the best rectangular assignment are returned.

    Returns
    -------
    Matching
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or 0 in sim.shape or not np.isfinite(sim).all():
        raise InvalidInputError("similarity must be a non-empty finite 2-d array")
    rows, cols = linear_sum_assignment(sim, maximize=True)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    return Matching(rows.astype(np.int64), cols.astype(np.int64), sim[rows, cols])


def best_matches(similarity: Any, *, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Each factor's most similar factor on the other side (ties: the lowest number).

    Parameters
    ----------
    similarity : array-like of shape (m_a, m_b)
    axis : {1, 0}, default=1
        1: for each factor of A, its best factor of B; 0: for each factor of B, of A.

    Returns
    -------
    best : ndarray of shape (m_a,) or (m_b,)
    score : ndarray of the same shape
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if axis not in (0, 1):
        raise InvalidInputError(f"axis must be 0 or 1, got {axis!r}")
    sim = sim if axis == 1 else sim.T
    best = np.argmax(sim, axis=1)
    return best.astype(np.int64), sim[np.arange(sim.shape[0]), best]


def stability(scores: Any, thresholds: tuple[float, ...] = STABLE_COSINES) -> dict[str, float]:
    """Mean matched score and the share of matched pairs at or above each threshold.

    Parameters
    ----------
    scores : array-like of shape (n_matched,)
        The matched pairs' similarities (:attr:`Matching.score`).

    Returns
    -------
    dict
        ``{"mean": ..., "share_0.9": ..., "share_0.7": ...}`` (NaN mean for no pairs).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    out = {"mean": float(s.mean()) if s.size else float("nan")}
    for t in thresholds:
        out[f"share_{t:g}"] = float((s >= t).mean()) if s.size else 0.0
    return out


def coactivation(codes_a: Any, codes_b: Any) -> np.ndarray:
    """Jaccard index of the factors' activity over the same vectors.

    Factor ``i`` of A and ``j`` of B score ``|S_i & S_j| / |S_i | S_j|``, where ``S`` is
    the set of rows (a token at a layer) where the factor is active (alpha > 0); 0 when
    neither is ever active.

    Parameters
    ----------
    codes_a : sparse matrix or array-like of shape (n_vectors, m_a)
    codes_b : sparse matrix or array-like of shape (n_vectors, m_b)
        Codes of the same rows, in the same order.

    Returns
    -------
    jaccard : ndarray of shape (m_a, m_b)
    """
    a = (sp.csr_matrix(codes_a) > 0).astype(np.float64)
    b = (sp.csr_matrix(codes_b) > 0).astype(np.float64)
    if a.shape[0] != b.shape[0]:
        raise InvalidInputError(
            f"codes_a has {a.shape[0]} rows and codes_b {b.shape[0]}: "
            "give codes of the same vectors"
        )
    inter = np.asarray((a.T @ b).toarray(), dtype=np.float64)
    size_a = np.asarray(a.sum(axis=0)).ravel()
    size_b = np.asarray(b.sum(axis=0)).ravel()
    union = size_a[:, None] + size_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class SplitRule:
    """When a decomposed atom counts as a split, and how it is solved.

    An atom ``a`` (unit norm) of the smaller dictionary is written ``a ~ B w``, ``w >= 0``:
    SPAMS's lasso ``min 1/2 ||a - B w||^2 + lambda1 ||w||_1`` picks the atoms, then a
    non-negative least-squares refit on those atoms gives the weights without the L1
    shrinkage (so an atom that is exactly ``(b1 + b2) / ||b1 + b2||`` gets both weights
    ``1 / ||b1 + b2||``). An atom of B *carries weight* when its weight is at least
    ``min_share`` times the largest weight; the atom is listed as a split when at least
    two atoms carry weight, the relative residual ``||a - B w|| / ||a||`` is at most
    ``max_residual`` (the parts explain at least 1 - 0.5^2 = 75% of the atom), and the
    parts fit at least ``min_gain`` better than the best single atom does (residual
    ``sqrt(1 - cos^2)``): an atom that one atom of B already matches (two seeds' twins
    at cosine 0.95, residual 0.31) is a match, not a split, even if a second atom
    trims its residual a little.

    The defaults were chosen on MiniLM-L6 over 300 fortunes (256 and 512 factors,
    seeds 0 and 1): with lambda1 0.05 and min_share 0.2 an atom was the "sum" of 10
    parts on average and 170 of 256 atoms of one seed were splits of the other's; with
    0.2 / 0.3 the splits have 2.5 parts on average (60 of 256 between seeds, 130 of
    256 from 256 to 512 factors).
    """

    lambda1: float = 0.2
    min_share: float = 0.3
    max_residual: float = 0.5
    min_gain: float = 0.1

    def __post_init__(self) -> None:
        if not self.lambda1 > 0:
            raise InvalidInputError(f"lambda1 must be positive, got {self.lambda1!r}")
        if not 0 < self.min_share <= 1:
            raise InvalidInputError(f"min_share must be in (0, 1], got {self.min_share!r}")
        if not self.max_residual > 0:
            raise InvalidInputError(f"max_residual must be positive, got {self.max_residual!r}")
        if not 0 <= self.min_gain < 1:
            raise InvalidInputError(f"min_gain must be in [0, 1), got {self.min_gain!r}")


@dataclass(frozen=True)
class Split:
    """One atom of the smaller dictionary as a combination of the larger one's atoms.

    Attributes
    ----------
    factor : int
        The decomposed factor (of the smaller dictionary).
    parts : ndarray of shape (n_parts,)
        Factors of the larger dictionary that carry weight, largest weight first.
    weights : ndarray of shape (n_parts,)
    residual : float
        ``||a - B w|| / ||a||`` with every non-zero weight of the refit.
    """

    factor: int
    parts: np.ndarray
    weights: np.ndarray
    residual: float


def _lasso_support(targets: np.ndarray, basis: np.ndarray, lambda1: float) -> sp.csc_matrix:
    """SPAMS's non-negative lasso codes of ``targets`` (rows) on ``basis`` (rows).

    ``cholesky=True``: the default Gram-matrix LARS drops both atoms when they tie
    exactly (measured: an atom that is exactly ``(b1 + b2) / ||b1 + b2||`` came back
    as one weight of 3e-16), the Cholesky variant does not.
    """
    import spams

    X = np.asfortranarray(targets.T)  # (d, n): SPAMS wants Fortran-ordered float64
    D = np.asfortranarray(basis.T)  # (d, m)
    return spams.lasso(X, D=D, lambda1=lambda1, mode=2, pos=True, cholesky=True)


def decompose_atoms(
    atoms_small: Any, atoms_large: Any, rule: SplitRule | None = None
) -> list[Split]:
    """Splits: each atom of the smaller dictionary as a sum of the larger one's atoms.

    Parameters
    ----------
    atoms_small : array-like of shape (m_small, n_features)
    atoms_large : array-like of shape (m_large, n_features)
    rule : SplitRule, optional
        Thresholds and lasso penalty (defaults documented there).

    Returns
    -------
    splits : list of Split
        Only the atoms that pass ``rule``, in factor order.
    """
    rule = rule or SplitRule()
    small, large = _unit_rows(atoms_small, "atoms_small"), _unit_rows(atoms_large, "atoms_large")
    if small.shape[1] != large.shape[1]:
        raise InvalidInputError(
            f"atoms_small has {small.shape[1]} features and atoms_large {large.shape[1]}"
        )
    codes = _lasso_support(small, large, rule.lambda1).tocsc()
    best_single = np.sqrt(1.0 - np.clip(np.max(small @ large.T, axis=1), 0.0, 1.0) ** 2)
    splits: list[Split] = []
    for i in range(small.shape[0]):
        support = codes.indices[codes.indptr[i] : codes.indptr[i + 1]]
        if support.size < 2:
            continue
        weights, _ = nnls(large[support].T, small[i])
        keep = weights > 0
        support, weights = support[keep], weights[keep]
        if support.size < 2:
            continue
        residual = float(np.linalg.norm(small[i] - weights @ large[support]))
        carrying = weights >= rule.min_share * weights.max()
        if carrying.sum() < 2 or residual > rule.max_residual:
            continue
        if best_single[i] - residual < rule.min_gain:
            continue
        order = np.argsort(-weights[carrying], kind="stable")
        splits.append(
            Split(
                factor=i,
                parts=support[carrying][order].astype(np.int64),
                weights=weights[carrying][order],
                residual=residual,
            )
        )
    return splits
