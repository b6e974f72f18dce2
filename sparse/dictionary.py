"""Learning (or importing) one non-negative dictionary shared by every layer.

A hidden state ``x`` of any layer is modelled as ``x = Phi @ alpha + eps`` with
``alpha >= 0`` sparse and ``Phi`` of shape (n_features, n_factors) with unit-norm
columns. Following scikit-learn, the learned attribute is ``components_`` of shape
(n_factors, n_features): its rows are the atoms, ``Phi = components_.T``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, Options, StrOptions

from ._defaults import DEFAULT_LAMBDA1, DEFAULT_N_FACTORS, DEFAULT_PREPROCESSING
from ._validation import (
    InvalidInputError,
    SparseEstimator,
    check_fitted,
    check_layers,
    check_params,
    check_X,
    validate_X,
)
from .preprocessing import PREPROCESSING_CHOICES, LayerScaler

_FORMAT = "factorscope.DictionaryLearner/1"

_SEGMENT_ITERS = 25
"""Online updates per ``spams.trainDL`` call (see ``DictionaryLearner._train_online``)."""


def from_array(
    phi: Any,
    *,
    n_features: int | None = None,
    layout: str = "auto",
) -> np.ndarray:
    """Validate a user's dictionary and return it as unit-norm rows.

    Parameters
    ----------
    phi : array-like of shape (n_features, n_factors) or (n_factors, n_features)
        The dictionary, atoms as columns (``Phi``, the paper's and SPAMS's layout)
        or as rows (scikit-learn's ``components_`` layout).
    n_features : int, optional
        The model's hidden size. With it, the layout is read off the shape: the
        axis of length ``n_features`` holds the features. Without it, ``layout``
        must say which is which.
    layout : {"auto", "columns", "rows"}, default="auto"
        ``"columns"``: atoms are columns (d x m). ``"rows"``: atoms are rows
        (m x d). ``"auto"``: decided by ``n_features``; a square array (both axes
        equal to ``n_features``) is ambiguous and is read as ``"columns"``, the
        method's own convention (``Phi`` is d x m) -- pass ``layout="rows"`` to
        override.

    Returns
    -------
    components : ndarray of shape (n_factors, n_features), float32
        Rows scaled to unit Euclidean norm.
    """
    if layout not in ("auto", "columns", "rows"):
        raise InvalidInputError(f"layout must be 'auto', 'columns' or 'rows', got {layout!r}")
    arr = check_X(phi, name="dictionary", dtype=np.float64, min_samples=1)
    if n_features is not None and (isinstance(n_features, bool) or int(n_features) < 1):
        raise InvalidInputError(f"n_features must be a positive int, got {n_features!r}")
    rows_d, cols_d = arr.shape
    if layout == "auto":
        if n_features is None:
            raise InvalidInputError(
                "cannot tell atoms from features: pass n_features (the model's hidden size) "
                "or layout='columns' (d x m) / layout='rows' (m x d)"
            )
        if rows_d == n_features:
            layout = "columns"  # also the square case: Phi's own convention
        elif cols_d == n_features:
            layout = "rows"
        else:
            raise InvalidInputError(
                f"dictionary has shape {arr.shape} but neither axis matches the hidden size "
                f"n_features={n_features}"
            )
    comp = arr.T if layout == "columns" else arr
    if n_features is not None and comp.shape[1] != n_features:
        raise InvalidInputError(
            f"dictionary read as layout={layout!r} has {comp.shape[1]} features per atom, "
            f"but the model's hidden size is n_features={n_features}"
        )
    norms = np.linalg.norm(comp, axis=1)
    if (norms <= 0).any():
        bad = np.flatnonzero(norms <= 0)
        raise InvalidInputError(
            f"dictionary has {bad.size} all-zero atom(s) (first: atom {int(bad[0])}); "
            "every atom needs a direction"
        )
    return np.ascontiguousarray(comp / norms[:, None], dtype=np.float32)


class DictionaryLearner(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SparseEstimator):
    """Online non-negative dictionary learning (``spams.trainDL``), one dictionary for all layers.

    Solves, over ``Phi`` with unit-norm columns and ``alpha >= 0``,
    ``min sum_i 1/2 ||x_i - Phi alpha_i||^2 + lambda1 ||alpha_i||_1`` with the online
    algorithm of Mairal et al. on mini-batches, after the per-layer
    :class:`~factorscope.sparse.preprocessing.LayerScaler` given by ``preprocessing``.

    Parameters
    ----------
    n_factors : int, default=DEFAULT_N_FACTORS
        Number of atoms ``m``.
    lambda1 : float, default=DEFAULT_LAMBDA1
        L1 penalty, on the preprocessed scale (mean vector norm 1 per layer).
    batch_size : int, default=256
        Signals per online update.
    n_iter : int or None, default=None
        Number of online updates (mini-batches). ``None``: two passes over the
        data, ``ceil(2 * n_samples / batch_size)``, as in the reference.
    seed : int, default=0
        Seeds the initial dictionary (random preprocessed vectors) and the order
        of the data. The same seed, data and ``n_jobs`` give the same dictionary
        bit for bit; SPAMS's multi-threaded sums differ in the last bits between
        thread counts, so change ``n_jobs`` and the dictionary moves slightly.
    n_jobs : int, default=1
        SPAMS threads (``-1``: all cores).
    preprocessing : {"center-scale", "scale", "none"}, default=DEFAULT_PREPROCESSING
        Per-layer preprocessing stored with the dictionary (see ``LayerScaler``).
    verbose : bool, default=False

    Attributes
    ----------
    components_ : ndarray of shape (n_factors, n_features)
        Unit-norm atoms (rows); ``Phi = components_.T``.
    preprocessor_ : LayerScaler or None
        The fitted preprocessing (``None`` for an imported raw dictionary).
    n_features_in_ : int
    n_iter_ : int
        Online updates run.
    fit_seconds_ : float
        Wall time of ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` in ``fit`` was a DataFrame with string column names.

    A scikit-learn transformer (clone, ``Pipeline``, ``GridSearchCV``): ``layers`` is
    keyword-only with a default, so a plain ``fit(X)`` treats every row as one layer.
    ``transform`` returns float32 CSR codes whatever the input dtype (SPAMS works in
    float32).
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_factors": [Interval(Integral, 1, None, closed="left")],
        "lambda1": [Interval(Real, 0.0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 1, None, closed="left"), None],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "preprocessing": [StrOptions(set(PREPROCESSING_CHOICES))],
        "verbose": ["boolean"],
    }

    def __init__(
        self,
        n_factors: int = DEFAULT_N_FACTORS,
        *,
        lambda1: float = DEFAULT_LAMBDA1,
        batch_size: int = 256,
        n_iter: int | None = None,
        seed: int = 0,
        n_jobs: int = 1,
        preprocessing: str = DEFAULT_PREPROCESSING,
        verbose: bool = False,
    ) -> None:
        self.n_factors = n_factors
        self.lambda1 = lambda1
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.seed = seed
        self.n_jobs = n_jobs
        self.preprocessing = preprocessing
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # float32 codes for any input
        return tags

    @property
    def _n_features_out(self) -> int:
        """Output width (``get_feature_names_out``): one column per atom."""
        return self.components_.shape[0]

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        layers: Any = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> DictionaryLearner:
        """Learn the preprocessing and the dictionary.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Hidden states, rows of any layers.
        y : None
            Ignored (scikit-learn's API).
        layers : array-like of int of shape (n_samples,), optional
            Layer of each row (``None``: all one layer).
        progress : callable, optional
            Called as ``progress(updates_done, updates_total)`` after each segment of
            online updates (for progress bars).

        Returns
        -------
        self : DictionaryLearner
        """

        check_params(self)
        t0 = time.perf_counter()
        X = validate_X(self, X, reset=True)
        if X.shape[0] < self.n_factors:
            raise InvalidInputError(
                f"n_factors={self.n_factors} exceeds the number of training vectors "
                f"(n_samples={X.shape[0]}); give more vectors or fewer factors"
            )
        lay = check_layers(layers, X.shape[0])
        pre = LayerScaler.from_name(self.preprocessing).fit(X, layers=lay)
        Xp = pre._transform(X, lay)

        rng = np.random.default_rng(self.seed)
        order = rng.permutation(Xp.shape[0])
        # (d, n) Fortran = (n, d) C-order transposed: one gather, no extra copy.
        Xf = np.ascontiguousarray(Xp[order]).T
        D0 = self._initial_dictionary(Xf, rng)
        n_iter = self.n_iter
        if n_iter is None:
            n_iter = int(np.ceil(2 * Xf.shape[1] / self.batch_size))
        D = self._train_online(Xf, D0, n_iter, progress)
        comp = np.asarray(D, dtype=np.float32).T
        norms = np.linalg.norm(comp, axis=1, keepdims=True)
        self.components_ = np.ascontiguousarray(comp / np.maximum(norms, 1e-12))
        self.preprocessor_ = pre
        self.n_iter_ = n_iter
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _train_online(
        self,
        Xf: np.ndarray,
        D0: np.ndarray,
        n_iter: int,
        progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        """``spams.trainDL`` in segments of ``_SEGMENT_ITERS`` updates, carrying its state.

        One call would run for minutes to hours with no sign of life. Each segment
        continues the previous one's model (the A, B statistics and the update count,
        so the step-size schedule is unchanged) on the next window of
        ``iterations x batch_size`` columns of the shuffled data, wrapping around for
        the second pass. The segmentation is fixed, not tied to ``progress``, so the
        same seed gives the same dictionary with or without a progress bar.
        """
        import spams

        n = Xf.shape[1]
        D, model, done = D0, None, 0
        while done < n_iter:
            iters = min(_SEGMENT_ITERS, n_iter - done)
            columns = (np.arange(iters * self.batch_size) + done * self.batch_size) % n
            window = np.asfortranarray(Xf[:, columns])
            extra = {} if model is None else {"model": model}
            D, model = spams.trainDL(
                window,
                return_model=True,
                D=D,
                K=self.n_factors,
                lambda1=float(self.lambda1),
                mode=2,
                posAlpha=True,
                iter=iters,
                batchsize=self.batch_size,
                numThreads=self.n_jobs,
                verbose=self.verbose,
                **extra,
            )
            D = np.asfortranarray(D)
            done += iters
            if progress is not None:
                progress(done, n_iter)
        return D

    def _initial_dictionary(self, Xf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Seeded random data columns, unit-norm, as a (d, m) float32 Fortran array."""
        d, n = Xf.shape
        cols = rng.choice(n, size=self.n_factors, replace=False)
        D0 = Xf[:, cols].astype(np.float32) + 1e-4 * rng.standard_normal(
            (d, self.n_factors), dtype=np.float32
        )
        D0 /= np.linalg.norm(D0, axis=0, keepdims=True)
        return np.asfortranarray(D0)

    def transform(self, X: Any, *, layers: Any = None):
        """Non-negative sparse codes with this dictionary (``SparseEncoder``, spams backend).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        layers : array-like of int of shape (n_samples,), optional

        Returns
        -------
        codes : scipy.sparse.csr_matrix of shape (n_samples, n_factors), float32
        """
        check_fitted(self, "components_")
        X = validate_X(self, X, reset=False, min_samples=0)
        enc = self.encoder()
        return enc._code(X, check_layers(layers, X.shape[0]), *enc._resolve())

    def fit_transform(
        self,
        X: Any,
        y: Any = None,
        *,
        layers: Any = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        """``fit`` then ``transform`` with the same ``layers``."""
        return self.fit(X, layers=layers, progress=progress).transform(X, layers=layers)

    def encoder(self, **params: Any):
        """A :class:`SparseEncoder` bound to this fitted dictionary and its preprocessing."""
        from .encoder import SparseEncoder

        check_fitted(self, "components_")
        params.setdefault("lambda1", self.lambda1)
        return SparseEncoder(self, **params)

    # ------------------------------------------------------------------ import / storage
    @classmethod
    def from_array(
        cls,
        phi: Any,
        *,
        n_features: int | None = None,
        layout: str = "auto",
        preprocessor: LayerScaler | None = None,
        **params: Any,
    ) -> DictionaryLearner:
        """A fitted learner around a user's dictionary (see :func:`from_array`).

        ``preprocessor=None`` means the dictionary acts on raw hidden states.
        """
        comp = from_array(phi, n_features=n_features, layout=layout)
        params.setdefault("preprocessing", "none")
        obj = cls(comp.shape[0], **params)
        check_params(obj)
        if preprocessor is not None:
            check_fitted(preprocessor, "scale_")
            if preprocessor.n_features_in_ != comp.shape[1]:
                raise InvalidInputError(
                    f"preprocessor was fitted on {preprocessor.n_features_in_} features but the "
                    f"dictionary has {comp.shape[1]}"
                )
        obj.components_ = comp
        obj.preprocessor_ = preprocessor
        obj.n_features_in_ = comp.shape[1]
        obj.n_iter_ = 0
        obj.fit_seconds_ = 0.0
        return obj

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state without the (large) atoms; store ``components_`` beside it."""
        check_fitted(self, "components_")
        return {
            "format": _FORMAT,
            "params": self.get_params(),
            "preprocessor": None if self.preprocessor_ is None else self.preprocessor_.to_dict(),
            "n_features": int(self.n_features_in_),
            "n_iter": int(self.n_iter_),
            "fit_seconds": float(self.fit_seconds_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], components: Any) -> DictionaryLearner:
        """Rebuild a fitted learner from :meth:`to_dict` output and its ``components_``.

        Parameters
        ----------
        d : dict
        components : array-like of shape (n_factors, n_features)
        """
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise InvalidInputError(f"not a DictionaryLearner state (expected format {_FORMAT!r})")
        comp = check_X(components, name="components", n_features=d["n_features"])
        obj = cls(**d["params"])
        if comp.shape[0] != obj.n_factors:
            raise InvalidInputError(
                f"components has {comp.shape[0]} atoms but the stored n_factors is {obj.n_factors}"
            )
        obj.components_ = np.ascontiguousarray(comp)
        pre = d.get("preprocessor")
        obj.preprocessor_ = None if pre is None else LayerScaler.from_dict(pre)
        obj.n_features_in_ = int(d["n_features"])
        obj.n_iter_ = int(d.get("n_iter", 0))
        obj.fit_seconds_ = float(d.get("fit_seconds", 0.0))
        return obj
