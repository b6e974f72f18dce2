"""Non-negative sparse codes of hidden states for a fixed dictionary.

Each row ``x`` (after the dictionary's preprocessing) gets
``alpha = argmin_{a >= 0} 1/2 ||x - Phi a||^2 + lambda1 ||a||_1``.
Two backends solve the same problem: SPAMS's LARS-homotopy (``spams.lasso``,
exact, fast on CPU) and a batched non-negative FISTA in torch (GPU when there is
one) that stops on a relative duality gap.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from factorscope.errors import InputError

from ._defaults import DEFAULT_LAMBDA1
from ._validation import (
    ParamsMixin,
    Rule,
    check_fitted,
    check_layers,
    check_X,
    is_choice,
    is_int,
    is_real,
    validate_params,
)

BACKENDS = ("spams", "torch")


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


class SparseEncoder(ParamsMixin):
    """Non-negative lasso codes of hidden states for a fixed dictionary.

    A stateless transformer (like scikit-learn's ``SparseCoder``): ``fit`` only
    checks the parameters and returns ``self``; ``transform`` works straight away.

    Parameters
    ----------
    dictionary : DictionaryLearner or array-like of shape (n_factors, n_features)
        A fitted :class:`DictionaryLearner` (its preprocessing is used unless
        ``preprocessor`` is given) or atoms as rows.
    lambda1 : float, optional
        L1 penalty; default: the learner's ``lambda1``, else ``DEFAULT_LAMBDA1``.
    backend : {"spams", "torch"}, default="spams"
    block_size : int, default=8192
        Rows per solver call (bounds memory for the dense torch iterates).
    n_jobs : int, default=-1
        SPAMS threads (``-1``: all cores); ignored by torch.
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
    """

    _param_names = (
        "dictionary",
        "lambda1",
        "backend",
        "block_size",
        "n_jobs",
        "preprocessor",
        "device",
        "dtype",
        "tol",
        "max_iter",
    )
    _params_table: ClassVar[dict[str, Rule]] = {
        "lambda1": (is_real(0.0, strict=True, none_ok=True), "None or a float > 0"),
        "backend": (is_choice(*BACKENDS), f"one of {list(BACKENDS)}"),
        "block_size": (is_int(1), "an int >= 1"),
        "n_jobs": (lambda v: is_int(1)(v) or v == -1, "-1 or an int >= 1"),
        "device": (lambda v: v is None or isinstance(v, str), "None or a torch device string"),
        "dtype": (is_choice("float32", "float64"), "'float32' or 'float64'"),
        "tol": (is_real(0.0, strict=True), "a float > 0"),
        "max_iter": (is_int(1), "an int >= 1"),
    }

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

    def __repr__(self) -> str:
        p = self.get_params()
        d = p.pop("dictionary")
        shape = getattr(getattr(d, "components_", d), "shape", None)
        args = ", ".join(f"{k}={v!r}" for k, v in p.items() if k != "preprocessor")
        return f"SparseEncoder(<dictionary {shape}>, {args})"

    # ------------------------------------------------------------------ resolution
    def _resolve(self) -> tuple[np.ndarray, Any, float]:
        """(components float32 C-order, fitted preprocessor or None, lambda1)."""
        validate_params(self, self._params_table)
        d = self.dictionary
        pre = self.preprocessor
        lam = self.lambda1
        if hasattr(d, "_params_table") and hasattr(d, "n_factors"):  # a DictionaryLearner
            check_fitted(d, "components_")
            comp = d.components_
            if pre is None:
                pre = d.preprocessor_
            if lam is None:
                lam = d.lambda1
        else:
            comp = check_X(d, name="dictionary", min_samples=1)
        if lam is None:
            lam = DEFAULT_LAMBDA1
        if pre is not None:
            check_fitted(pre, "scale_")
            if pre.n_features_in_ != comp.shape[1]:
                raise InputError(
                    f"preprocessor expects {pre.n_features_in_} features but the dictionary "
                    f"has {comp.shape[1]}"
                )
        return np.ascontiguousarray(comp, dtype=np.float32), pre, float(lam)

    @property
    def components_(self) -> np.ndarray:
        """Atoms as rows, shape (n_factors, n_features)."""
        return self._resolve()[0]

    def fit(self, X: Any = None, layers: Any = None) -> SparseEncoder:
        """Check parameters and dictionary; nothing is learned. Returns ``self``."""
        comp, _, _ = self._resolve()
        self.n_features_in_ = comp.shape[1]
        self.n_factors_ = comp.shape[0]
        return self

    def preprocess(self, X: Any, layers: Any = None) -> np.ndarray:
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
        X = check_X(X, n_features=comp.shape[1])
        lay = check_layers(layers, X.shape[0])
        return X if pre is None else pre._transform(X, lay)

    # ------------------------------------------------------------------ coding
    def transform(self, X: Any, layers: Any = None) -> sp.csr_matrix:
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
        X = check_X(X, n_features=comp.shape[1])
        lay = check_layers(layers, X.shape[0])
        if pre is not None:
            X = pre._transform(X, lay)
        return self._encode(X, comp, lam)

    def _encode(self, X: np.ndarray, comp: np.ndarray, lam: float) -> sp.csr_matrix:
        n, m = X.shape[0], comp.shape[0]
        if n == 0:
            return sp.csr_matrix((0, m), dtype=np.float32)
        blocks = []
        if self.backend == "spams":
            import spams

            Df = comp.T  # (d, m) Fortran view of the C-order rows
            for i in range(0, n, self.block_size):
                Xb = np.ascontiguousarray(X[i : i + self.block_size]).T  # (d, nb) Fortran
                A = spams.lasso(Xb, D=Df, lambda1=lam, mode=2, pos=True, numThreads=self.n_jobs)
                blocks.append(A.T.tocsr())  # csc (m, nb) -> csr (nb, m): no copy
        else:
            for i in range(0, n, self.block_size):
                A = _fista_adaptive(
                    X[i : i + self.block_size],
                    comp,
                    lam,
                    tol=self.tol,
                    max_iter=self.max_iter,
                    device=self.device,
                    dtype=self.dtype,
                )
                blocks.append(sp.csr_matrix(A.astype(np.float32)))
        out = blocks[0] if len(blocks) == 1 else sp.vstack(blocks, format="csr")
        out = out.astype(np.float32, copy=False)
        out.sort_indices()
        return out

    def fit_transform(self, X: Any, layers: Any = None) -> sp.csr_matrix:
        return self.fit().transform(X, layers)

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
            raise InputError(
                f"codes has {codes.shape[1]} columns but the dictionary has {comp.shape[0]} atoms"
            )
        return np.asarray(codes @ comp, dtype=np.float32)

    def squared_residuals(self, X: Any, codes: Any, layers: Any = None) -> np.ndarray:
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
        Xp = self.preprocess(X, layers)
        if codes.shape[0] != Xp.shape[0]:
            raise InputError(f"codes has {codes.shape[0]} rows but X has {Xp.shape[0]}")
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
