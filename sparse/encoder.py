"""Non-negative sparse codes of hidden states for a fixed dictionary.

Each row ``x`` (after the dictionary's preprocessing) gets
``alpha = argmin_{a >= 0} 1/2 ||x - Phi a||^2 + lambda1 ||a||_1``.
Two backends solve the same problem: SPAMS's LARS-homotopy (``spams.lasso``,
exact, fast on CPU) and a batched non-negative FISTA in torch (GPU when there is
one) that stops on a relative duality gap.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions

from ._defaults import DEFAULT_LAMBDA1
from ._validation import (
    InvalidInputError,
    SparseEstimator,
    check_fitted,
    check_layers,
    check_params,
    check_X,
    validate_X,
)
from .preprocessing import LayerScaler


def _spams_lasso(X: np.ndarray, comp: np.ndarray, lam: float, threads: int) -> sp.csr_matrix:
    """SPAMS's LARS lasso (positive codes) of one block of rows, on ``threads`` threads."""
    import spams

    Xb = np.ascontiguousarray(X).T  # (d, nb) Fortran
    A = spams.lasso(Xb, D=comp.T, lambda1=lam, mode=2, pos=True, numThreads=threads)
    return A.T.tocsr()  # csc (m, nb) -> csr (nb, m): no copy


def _spams_block(encoder: Any, X: np.ndarray, comp: np.ndarray, lam: float) -> sp.csr_matrix:
    """SPAMS's LARS lasso (positive codes) of one block of rows."""
    return _spams_lasso(X, comp, lam, encoder.n_jobs)


def _spams_parallel(X: np.ndarray, comp: np.ndarray, lam: float, workers: int, block: int):
    """Blocks of rows solved side by side, one single-threaded SPAMS call per worker thread.

    SPAMS releases the GIL, and its own OpenMP threads scale poorly on few cores
    (measured on 2 cores: 2 threads 7,700 rows/s; two single-threaded calls on 8 blocks
    9,200 rows/s). Each row's codes do not depend on the other rows of its call.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = X.shape[0]
    # Several blocks per worker, so the last block does not leave a worker idle for long.
    size = min(block, max(256, -(-n // (4 * workers))))
    starts = range(0, n, size)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spams") as pool:
        return list(pool.map(lambda i: _spams_lasso(X[i : i + size], comp, lam, 1), starts))


def _torch_block(encoder: Any, X: np.ndarray, comp: np.ndarray, lam: float) -> sp.csr_matrix:
    """Adaptive-restart FISTA in torch (positive codes) of one block of rows."""
    A = _fista_adaptive(
        X,
        comp,
        lam,
        tol=encoder.tol,
        max_iter=encoder.max_iter,
        device=encoder.device,
        dtype=encoder.dtype,
    )
    return sp.csr_matrix(A.astype(np.float32))


def _cpu_count() -> int:
    """The cores this process may run on (what ``n_jobs=-1`` means)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


BACKENDS: dict[str, Callable[[Any, np.ndarray, np.ndarray, float], sp.csr_matrix]] = {
    "spams": _spams_block,
    "torch": _torch_block,
}
"""The lasso solvers of ``SparseEncoder(backend=...)``, by name: each codes one block of
rows ``(encoder, X, components, lambda1) -> csr (n_rows, n_factors)``. A new backend is one
entry here; the CLI's ``--backend`` choices come from this table."""


def lasso_objective(X: Any, components: Any, codes: Any, lambda1: float) -> np.ndarray:
    """Per-row objective ``1/2 ||x - Phi a||^2 + lambda1 ||a||_1`` (float64).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Preprocessed vectors.
    components : array-like of shape (n_factors, n_features)
    codes : array-like or sparse matrix of shape (n_samples, n_factors)
    lambda1 : float

    Returns
    -------
    objective : ndarray of shape (n_samples,)
    """
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(components, dtype=np.float64)
    A = sp.csr_matrix(codes, dtype=np.float64) if sp.issparse(codes) else np.asarray(codes, float)
    R = X - np.asarray(A @ C)
    l1 = np.asarray(abs(A).sum(axis=1)).ravel()
    return 0.5 * np.einsum("ij,ij->i", R, R) + lambda1 * l1


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def fista_nonneg(
    X: Any,
    D: Any,
    lambda1: float,
    n_iter: int = 500,
    *,
    device: str | None = None,
    dtype: str = "float32",
) -> np.ndarray:
    """Reference non-negative FISTA, a fixed number of iterations (the paper's solver).

    Step ``1/L`` with ``L`` the largest eigenvalue of ``Phi^T Phi``; each step is a
    gradient step, a soft-threshold and the projection ``max(0, .)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    D : array-like of shape (n_factors, n_features)
        Atoms as rows (``components_``).
    lambda1 : float
    n_iter : int, default=500
    device : str, optional
        Torch device; default ``"cuda"`` when available, else ``"cpu"``.
    dtype : {"float32", "float64"}, default="float32"

    Returns
    -------
    codes : ndarray of shape (n_samples, n_factors)
    """
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdt = _torch_dtype(dtype)
    Xt = torch.as_tensor(np.asarray(X), dtype=tdt, device=dev)
    Dt = torch.as_tensor(np.asarray(D), dtype=tdt, device=dev)
    L = float(torch.linalg.eigvalsh(Dt @ Dt.T)[-1])
    G = Dt @ Dt.T
    B = Xt @ Dt.T
    a = torch.zeros_like(B)
    y = a.clone()
    t = 1.0
    thr = lambda1 / L
    with torch.inference_mode():
        for _ in range(n_iter):
            a_new = torch.clamp_min(y - (y @ G - B) / L - thr, 0.0)
            t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
            y = a_new + ((t - 1.0) / t_new) * (a_new - a)
            a, t = a_new, t_new
    return a.cpu().numpy()


def _fista_adaptive(
    X: np.ndarray,
    D: np.ndarray,
    lambda1: float,
    *,
    tol: float,
    max_iter: int,
    device: str | None,
    dtype: str,
    check_every: int = 10,
) -> np.ndarray:
    """Non-negative FISTA with adaptive restart, stopped on a relative duality gap.

    The gap uses the dual point ``theta = r * min(1, lambda1 / max_j phi_j^T r)``
    (feasible for the non-negative lasso's dual); it bounds the distance to the
    optimum of the objective, so ``gap <= tol * objective`` for every row means
    each row's objective is within ``tol`` (relative) of the exact one.
    """
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdt = _torch_dtype(dtype)
    with torch.inference_mode():
        Xt = torch.as_tensor(X, dtype=tdt, device=dev)
        Dt = torch.as_tensor(D, dtype=tdt, device=dev)
        G = Dt @ Dt.T
        L = float(torch.linalg.eigvalsh(G.double())[-1]) * (1.0 + 1e-6)
        B = Xt @ Dt.T
        n = Xt.shape[0]
        a = torch.zeros_like(B)
        y = a.clone()
        t = torch.ones(n, 1, dtype=tdt, device=dev)
        thr = lambda1 / L
        # float32 round-off puts a floor of ~1e-6 under a measured relative gap
        tol = max(tol, 1e-4) if tdt == torch.float32 else tol
        xx = (Xt.double() ** 2).sum(1)
        for it in range(1, max_iter + 1):
            a_new = torch.clamp_min(y - (y @ G - B) / L - thr, 0.0)
            # O'Donoghue & Candes gradient restart: drop momentum where it points uphill.
            restart = ((y - a_new) * (a_new - a)).sum(1, keepdim=True) > 0
            t_new = (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0
            t_new = torch.where(restart, torch.ones_like(t_new), t_new)
            beta = torch.where(restart, torch.zeros_like(t), (t - 1.0) / t_new)
            y = a_new + beta * (a_new - a)
            a, t = a_new, t_new
            if it % check_every == 0 or it == max_iter:
                # the gap is a difference of near-equal numbers: measure it in float64
                ad, Dd, Xd = a.double(), Dt.double(), Xt.double()
                R = Xd - ad @ Dd
                corr = R @ Dd.T
                primal = 0.5 * (R * R).sum(1) + lambda1 * ad.sum(1)
                s = torch.clamp(lambda1 / torch.clamp_min(corr.amax(1), 1e-300), max=1.0)
                diff = Xd - R * s[:, None]
                dual = 0.5 * xx - 0.5 * (diff * diff).sum(1)
                gap = primal - dual
                if bool((gap <= tol * torch.clamp_min(primal, 1e-300)).all()):
                    break
        return a.cpu().numpy()


class SparseEncoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SparseEstimator):
    """Non-negative lasso codes of hidden states for a fixed dictionary.

    A stateless scikit-learn transformer (like scikit-learn's ``SparseCoder``):
    ``fit`` only checks the parameters (and ``X``'s width, when given) and returns
    ``self``; ``transform`` works straight away. ``layers`` is keyword-only with a
    default, so a plain ``transform(X)`` works in a ``Pipeline``.

    The ``dictionary`` and ``preprocessor`` are fitted data, not hyper-parameters:
    ``clone`` shares them with the clone (as ``sklearn.frozen.FrozenEstimator``
    does) instead of handing out unfitted copies, and ``get_params(deep=True)`` does
    not reach inside them.

    Parameters
    ----------
    dictionary : DictionaryLearner or array-like of shape (n_factors, n_features)
        A fitted :class:`DictionaryLearner` (its preprocessing is used unless
        ``preprocessor`` is given) or atoms as rows. Any fitted scikit-learn
        estimator with ``components_`` of that shape works too.
    lambda1 : float, optional
        L1 penalty; default: the learner's ``lambda1``, else ``DEFAULT_LAMBDA1``.
    backend : {"spams", "torch"}, default="spams"
    block_size : int, default=8192
        Rows per solver call (bounds memory for the dense torch iterates).
    n_jobs : int, default=-1
        SPAMS workers (``-1``: all cores): above one, blocks of rows are solved side by
        side by single-threaded SPAMS calls; ignored by torch.
    preprocessor : LayerScaler, optional
        Fitted preprocessing applied to ``X`` before coding.
    device : str, optional
        Torch device (default: CUDA when available).
    dtype : {"float32", "float64"}, default="float64"
        Torch backend precision (SPAMS always runs in float32). float64 is the
        default: float32 FISTA stalls near a 1e-5 relative gap and crawls there.
    tol : float, default=1e-6
        Torch backend: stop when every row's duality gap is below ``tol`` times its
        objective (at least 1e-4 in float32, whose iterates stall near 1e-5).
    max_iter : int, default=20000
        Torch backend: iteration cap.

    Attributes
    ----------
    components_ : ndarray of shape (n_factors, n_features)
        The dictionary's atoms as rows, float32 (read from ``dictionary``).
    n_features_in_ : int
        Set by ``fit``.
    n_factors_ : int
        Set by ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` in ``fit`` was a DataFrame with string column names.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "dictionary": ["array-like", HasMethods(["get_params"])],
        "lambda1": [Interval(Real, 0.0, None, closed="neither"), None],
        "backend": [StrOptions(set(BACKENDS))],
        "block_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "preprocessor": [LayerScaler, None],
        "device": [str, None],
        "dtype": [StrOptions({"float32", "float64"})],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }
    _shared_params = ("dictionary", "preprocessor")

    def __init__(
        self,
        dictionary: Any,
        *,
        lambda1: float | None = None,
        backend: str = "spams",
        block_size: int = 8192,
        n_jobs: int = -1,
        preprocessor: Any = None,
        device: str | None = None,
        dtype: str = "float64",
        tol: float = 1e-6,
        max_iter: int = 20000,
    ) -> None:
        self.dictionary = dictionary
        self.lambda1 = lambda1
        self.backend = backend
        self.block_size = block_size
        self.n_jobs = n_jobs
        self.preprocessor = preprocessor
        self.device = device
        self.dtype = dtype
        self.tol = tol
        self.max_iter = max_iter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False  # stateless: transform works before fit
        tags.transformer_tags.preserves_dtype = ["float32"]  # float32 codes for any input
        return tags

    def __sklearn_clone__(self) -> SparseEncoder:
        # clone() would clone a fitted DictionaryLearner / LayerScaler into unfitted
        # ones: clone the rest and share the fitted data (see the class docstring).
        bare = copy.copy(self)
        for name in self._shared_params:
            setattr(bare, name, None)
        new = BaseEstimator.__sklearn_clone__(bare)
        return new.set_params(**{name: getattr(self, name) for name in self._shared_params})

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The encoder's parameters; ``deep`` adds nothing (the dictionary is data)."""
        return super().get_params(deep=False)

    @property
    def _n_features_out(self) -> int:
        """Output width (``get_feature_names_out``): one column per atom."""
        return self.components_.shape[0]

    # ------------------------------------------------------------------ resolution
    def _resolve(self) -> tuple[np.ndarray, Any, float]:
        """(components float32 C-order, fitted preprocessor or None, lambda1)."""
        check_params(self)
        d = self.dictionary
        pre = self.preprocessor
        lam = self.lambda1
        if isinstance(d, BaseEstimator):  # a fitted DictionaryLearner (or similar)
            check_fitted(d, "components_")
            comp = d.components_
            if pre is None:
                pre = getattr(d, "preprocessor_", None)
            if lam is None:
                lam = getattr(d, "lambda1", None)
        else:
            comp = check_X(d, name="dictionary", min_samples=1)
        if lam is None:
            lam = DEFAULT_LAMBDA1
        if pre is not None:
            check_fitted(pre, "scale_")
            if pre.n_features_in_ != comp.shape[1]:
                raise InvalidInputError(
                    f"preprocessor expects {pre.n_features_in_} features but the dictionary "
                    f"has {comp.shape[1]}"
                )
        return np.ascontiguousarray(comp, dtype=np.float32), pre, float(lam)

    @property
    def components_(self) -> np.ndarray:
        """Atoms as rows, shape (n_factors, n_features)."""
        return self._resolve()[0]

    def fit(self, X: Any = None, y: Any = None, *, layers: Any = None) -> SparseEncoder:
        """Check parameters and dictionary; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), optional
            When given, checked against the dictionary's width (and its column names
            kept, for a DataFrame).
        y : None
            Ignored (scikit-learn's API).
        layers : ignored
            Accepted so that a ``Pipeline`` can pass the same arguments to every step.

        Returns
        -------
        self : SparseEncoder
        """
        comp, _, _ = self._resolve()
        if X is not None:
            validate_X(self, X, reset=True, n_features=comp.shape[1])
        self.n_features_in_ = comp.shape[1]
        self.n_factors_ = comp.shape[0]
        return self

    def preprocess(self, X: Any, *, layers: Any = None) -> np.ndarray:
        """``X`` after the encoder's preprocessing (unchanged when there is none).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        layers : array-like of int of shape (n_samples,) or int, optional

        Returns
        -------
        X_pre : ndarray of shape (n_samples, n_features), float32 C-order
        """
        comp, pre, _ = self._resolve()
        X = validate_X(self, X, reset=False, n_features=comp.shape[1], min_samples=0)
        lay = check_layers(layers, X.shape[0])
        return X if pre is None else pre._transform(X, lay)

    # ------------------------------------------------------------------ coding
    def transform(self, X: Any, *, layers: Any = None) -> sp.csr_matrix:
        """Non-negative sparse codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Hidden states (raw; the preprocessing is applied here).
        layers : array-like of int of shape (n_samples,) or int, optional
            Layer of each row, needed when the preprocessing is per layer.

        Returns
        -------
        codes : scipy.sparse.csr_matrix of shape (n_samples, n_factors), float32
        """
        comp, pre, lam = self._resolve()
        X = validate_X(self, X, reset=False, n_features=comp.shape[1], min_samples=0)
        return self._code(X, check_layers(layers, X.shape[0]), comp, pre, lam)

    def _code(
        self, X: np.ndarray, layers: np.ndarray | None, comp: np.ndarray, pre: Any, lam: float
    ) -> sp.csr_matrix:
        """``transform`` for a checked ``X`` and ``layers`` and a resolved dictionary."""
        if pre is not None:
            X = pre._transform(X, layers)
        return self._encode(X, comp, lam)

    def _encode(self, X: np.ndarray, comp: np.ndarray, lam: float) -> sp.csr_matrix:
        n, m = X.shape[0], comp.shape[0]
        if n == 0:
            return sp.csr_matrix((0, m), dtype=np.float32)
        solve = BACKENDS[self.backend]
        workers = _cpu_count() if self.n_jobs == -1 else self.n_jobs
        if solve is _spams_block and workers > 1 and n >= 512:
            blocks = _spams_parallel(X, comp, lam, workers, self.block_size)
        else:
            blocks = [
                solve(self, X[i : i + self.block_size], comp, lam)
                for i in range(0, n, self.block_size)
            ]
        out = blocks[0] if len(blocks) == 1 else sp.vstack(blocks, format="csr")
        out = out.astype(np.float32, copy=False)
        out.sort_indices()
        return out

    def fit_transform(self, X: Any, y: Any = None, *, layers: Any = None) -> sp.csr_matrix:
        """``fit`` then ``transform`` with the same ``layers``."""
        return self.fit(X).transform(X, layers=layers)

    # ------------------------------------------------------------------ quality
    def reconstruct(self, codes: Any) -> np.ndarray:
        """``Phi @ alpha`` for each row, in the preprocessed space.

        Parameters
        ----------
        codes : sparse matrix or array-like of shape (n_samples, n_factors)

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features), float32
        """
        comp, _, _ = self._resolve()
        if codes.shape[1] != comp.shape[0]:
            raise InvalidInputError(
                f"codes has {codes.shape[1]} columns but the dictionary has {comp.shape[0]} atoms"
            )
        return np.asarray(codes @ comp, dtype=np.float32)

    def squared_residuals(self, X: Any, codes: Any, *, layers: Any = None) -> np.ndarray:
        """``||x - Phi alpha||^2`` per row, on the preprocessed scale.

        Sum it and divide by the total variance of the preprocessed vectors for the
        fraction of variance unexplained (:func:`fraction_of_variance_unexplained`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw hidden states (as given to ``transform``).
        codes : sparse matrix of shape (n_samples, n_factors)
        layers : array-like of int of shape (n_samples,) or int, optional

        Returns
        -------
        residuals : ndarray of shape (n_samples,), float64
        """
        Xp = self.preprocess(X, layers=layers)
        if codes.shape[0] != Xp.shape[0]:
            raise InvalidInputError(f"codes has {codes.shape[0]} rows but X has {Xp.shape[0]}")
        R = Xp.astype(np.float64) - self.reconstruct(codes)
        return np.einsum("ij,ij->i", R, R)


def fraction_of_variance_unexplained(X_pre: Any, residuals: Any) -> float:
    """``sum ||x - Phi alpha||^2 / sum ||x - mean(x)||^2`` over rows.

    Parameters
    ----------
    X_pre : array-like of shape (n_samples, n_features)
        Preprocessed vectors (``SparseEncoder.preprocess``).
    residuals : array-like of shape (n_samples,)
        From :meth:`SparseEncoder.squared_residuals`.
    """
    X = np.asarray(X_pre, dtype=np.float64)
    total = float(((X - X.mean(axis=0)) ** 2).sum())
    return float(np.sum(residuals)) / total if total > 0 else float("nan")
