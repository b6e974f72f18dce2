"""Per-layer preprocessing stored with the dictionary.

One dictionary is shared by every layer, but hidden states of different layers do
not live on the same scale: the embedding output (layer 0) is small, later layers
are larger, and each layer has its own mean direction (for all-MiniLM-L6-v2 on
fortunes sentences the per-layer mean vector is 20-50 % of a typical token's norm,
with a few dominant coordinates such as dimension 223). A single lambda would then
mean a different sparsity per layer, and one or two factors would be spent on
"being at layer k".

:class:`LayerScaler` learns, per layer, a mean vector and one scale, and applies
exactly the same affine map at fit, encode and live-analysis time. It is plain data
(``to_dict`` / ``from_dict`` round-trip through JSON) so that it is stored next to
the dictionary in the warehouse.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import OneToOneFeatureMixin, TransformerMixin

from ._validation import (
    InvalidInputError,
    SparseEstimator,
    check_fitted,
    check_layers,
    check_params,
    validate_X,
)

#: Names accepted by ``DictionaryLearner(preprocessing=...)``, mapped to LayerScaler params.
PREPROCESSING_CHOICES: dict[str, dict[str, bool]] = {
    "none": {"center": False, "scale": False},
    "scale": {"center": False, "scale": True},
    "center-scale": {"center": True, "scale": True},
}

_FORMAT = "factorscope.LayerScaler/1"


class LayerScaler(OneToOneFeatureMixin, TransformerMixin, SparseEstimator):
    """Per-layer centring and scaling: ``x -> (x - mean[layer]) * scale[layer]``.

    With ``scale=True`` each layer is scaled so that its vectors (after centring,
    if any) have mean Euclidean norm 1. That puts every layer on one scale, so one
    ``lambda1`` means the same sparsity at every layer and the lambda found on one
    model transfers to another. With ``center=True`` each layer's mean vector is
    subtracted first, so no factor is spent on encoding the layer's constant offset
    (a non-negative code cannot cancel a shared offset cheaply) and the codes
    describe how a token differs from the average token at that layer.

    Why ``center=True, scale=True`` is the default (``"center-scale"`` in
    :class:`DictionaryLearner`), measured in ``docs/SWEEP.md`` on all-MiniLM-L6-v2
    (m=512, held-out fortunes sentences, all 7 layers): raw vectors reach a lower
    *pooled* FVU (0.30 at L0 36) only because the pooled figure is dominated by the
    large-norm middle layers -- the final layer is then coded badly (FVU 0.60
    against 0.42 with per-layer scaling at the same lambda; mean over layers 0.34
    against 0.32). Scaling evens the quality across layers; centring on top of it
    costs nothing in FVU at equal L0 and keeps a factor from being spent on each
    layer's constant offset.

    Parameters
    ----------
    center : bool, default=True
        Subtract each layer's mean vector.
    scale : bool, default=True
        Divide each layer by the mean norm of its (centred) vectors.

    Attributes
    ----------
    layers_ : ndarray of shape (n_layers,)
        Layer ids seen in ``fit`` (sorted).
    mean_ : ndarray of shape (n_layers, n_features)
        Per-layer mean (zeros when ``center=False``).
    scale_ : ndarray of shape (n_layers,)
        Per-layer multiplier (ones when ``scale=False``).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` in ``fit`` was a DataFrame with string column names.

    A scikit-learn transformer: ``layers`` is keyword-only with a default, so a plain
    ``fit(X)`` / ``transform(X)`` (one layer) works in a ``Pipeline``; the output is
    float32 whatever the input dtype.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "center": ["boolean"],
        "scale": ["boolean"],
    }

    def __init__(self, *, center: bool = True, scale: bool = True) -> None:
        self.center = center
        self.scale = scale

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # float32 out for any input
        return tags

    @classmethod
    def from_name(cls, name: str) -> LayerScaler:
        """The scaler for a ``preprocessing`` name (see ``PREPROCESSING_CHOICES``)."""
        if name not in PREPROCESSING_CHOICES:
            raise InvalidInputError(
                f"preprocessing must be one of {sorted(PREPROCESSING_CHOICES)}, got {name!r}"
            )
        return cls(**PREPROCESSING_CHOICES[name])

    def fit(self, X: Any, y: Any = None, *, layers: Any = None) -> LayerScaler:
        """Learn per-layer mean and scale.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored (scikit-learn's API).
        layers : array-like of int of shape (n_samples,), optional
            Layer of each row; ``None`` treats every row as layer 0.

        Returns
        -------
        self : LayerScaler
        """
        check_params(self)
        X = validate_X(self, X, reset=True, dtype=np.float64)
        lay = check_layers(layers, X.shape[0])
        if lay is None:
            lay = np.zeros(X.shape[0], dtype=np.int64)
        ids = np.unique(lay)
        mean = np.zeros((ids.size, X.shape[1]))
        scale = np.ones(ids.size)
        for k, layer in enumerate(ids):
            rows = X[lay == layer]
            if self.center:
                mean[k] = rows.mean(axis=0)
                rows = rows - mean[k]
            if self.scale:
                norm = float(np.linalg.norm(rows, axis=1).mean())
                scale[k] = 1.0 / norm if norm > 0 else 1.0
        self.layers_ = ids
        self.mean_ = mean.astype(np.float32)
        self.scale_ = scale.astype(np.float32)
        self.n_features_in_ = X.shape[1]
        return self

    def _rows(self, layers: np.ndarray | None, n: int) -> np.ndarray:
        """Index into ``layers_`` for each row (trusts a checked ``layers``)."""
        if layers is None:
            if self.layers_.size != 1:
                raise InvalidInputError(
                    f"layers is required: this scaler was fitted on {self.layers_.size} layers "
                    f"({self.layers_.tolist()})"
                )
            return np.zeros(n, dtype=np.int64)
        pos = np.searchsorted(self.layers_, layers)
        pos = np.clip(pos, 0, self.layers_.size - 1)
        bad = self.layers_[pos] != layers
        if bad.any():
            raise InvalidInputError(
                f"layer {int(layers[bad][0])} was not seen when the preprocessing was fitted "
                f"(known layers: {self.layers_.tolist()})"
            )
        return pos

    def transform(self, X: Any, *, layers: Any = None) -> np.ndarray:
        """Apply the per-layer map.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        layers : array-like of int of shape (n_samples,) or int, optional

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features), float32
        """
        check_fitted(self, "scale_")
        X = validate_X(self, X, reset=False, min_samples=0)
        return self._transform(X, check_layers(layers, X.shape[0]))

    def fit_transform(self, X: Any, y: Any = None, *, layers: Any = None) -> np.ndarray:
        """``fit`` then ``transform`` with the same ``layers``."""
        return self.fit(X, layers=layers).transform(X, layers=layers)

    def _transform(self, X: np.ndarray, layers: np.ndarray | None) -> np.ndarray:
        if not self.center and not self.scale:
            return X
        idx = self._rows(layers, X.shape[0])
        out = X - self.mean_[idx] if self.center else X.copy()
        if self.scale:
            out *= self.scale_[idx, None]
        return out

    def inverse_transform(self, X: Any, *, layers: Any = None) -> np.ndarray:
        """Map preprocessed vectors (e.g. reconstructions) back to hidden-state space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        layers : array-like of int of shape (n_samples,) or int, optional

        Returns
        -------
        X_orig : ndarray of shape (n_samples, n_features), float32
        """
        check_fitted(self, "scale_")
        X = validate_X(self, X, reset=False, min_samples=0)
        idx = self._rows(check_layers(layers, X.shape[0]), X.shape[0])
        out = X / self.scale_[idx, None]
        if self.center:
            out += self.mean_[idx]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state (parameters and, once fitted, learned arrays as lists)."""
        d: dict[str, Any] = {"format": _FORMAT, "params": self.get_params()}
        if hasattr(self, "scale_"):
            d["layers"] = self.layers_.tolist()
            d["mean"] = self.mean_.tolist()
            d["scale"] = self.scale_.tolist()
            d["n_features"] = int(self.n_features_in_)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerScaler:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise InvalidInputError(f"not a LayerScaler state (expected format {_FORMAT!r})")
        obj = cls(**d["params"])
        if "scale" in d:
            obj.layers_ = np.asarray(d["layers"], dtype=np.int64)
            obj.mean_ = np.asarray(d["mean"], dtype=np.float32).reshape(
                len(obj.layers_), d["n_features"]
            )
            obj.scale_ = np.asarray(d["scale"], dtype=np.float32)
            obj.n_features_in_ = int(d["n_features"])
        return obj
