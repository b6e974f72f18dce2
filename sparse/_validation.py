"""Input and parameter checks shared by the estimators (private).

Public methods call these at the edge; the ``_private`` helpers behind them trust
their inputs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from factorscope.errors import InputError, NotFittedError

# A rule is (predicate, what the value must be). One table per estimator.
Rule = tuple[Callable[[Any], bool], str]


def is_int(lo: int | None = None, hi: int | None = None, *, none_ok: bool = False):
    def check(v: Any) -> bool:
        if v is None:
            return none_ok
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return False
        return (lo is None or v >= lo) and (hi is None or v <= hi)

    return check


def is_real(lo: float | None = None, *, strict: bool = False, none_ok: bool = False):
    def check(v: Any) -> bool:
        if v is None:
            return none_ok
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
            return False
        if lo is None:
            return True
        return v > lo if strict else v >= lo

    return check


def is_choice(*choices: Any):
    return lambda v: v in choices


def validate_params(owner: object, table: Mapping[str, Rule]) -> None:
    """Check every parameter of ``owner`` named in ``table``; raise InputError naming it."""
    for name, (ok, must) in table.items():
        value = getattr(owner, name)
        if not ok(value):
            raise InputError(
                f"{type(owner).__name__}: parameter {name!r} must be {must}, got {value!r}"
            )


def check_fitted(owner: object, attribute: str) -> None:
    if not hasattr(owner, attribute):
        raise NotFittedError(
            f"this {type(owner).__name__} is not fitted yet; call 'fit' before using it"
        )


def check_X(
    X: Any,
    *,
    n_features: int | None = None,
    name: str = "X",
    dtype: type = np.float32,
    min_samples: int = 0,
) -> np.ndarray:
    """A finite 2-D float array of ``n_features`` columns (C-order, ``dtype``)."""
    try:
        arr = np.asarray(X)
    except Exception as e:  # ragged lists and the like
        raise InputError(f"{name} must be a 2-D numeric array: {e}") from e
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got {arr.ndim}-D "
            f"with shape {arr.shape}; reshape a single vector with x.reshape(1, -1)"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(
            f"{name} has {arr.shape[1]} features per row but {n_features} were expected"
        )
    if arr.shape[0] < min_samples:
        raise InputError(f"{name} has {arr.shape[0]} rows; at least {min_samples} are needed")
    arr = np.asarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        kind = "NaN" if np.isnan(arr).any() else "Inf"
        raise InputError(
            f"{name} contains {kind} values ({bad.size} row(s), first at row {int(bad[0])}); "
            "hidden states must be finite"
        )
    return arr


def check_layers(layers: Any, n_samples: int) -> np.ndarray | None:
    """``None`` or an int array of length ``n_samples`` with non-negative entries."""
    if layers is None:
        return None
    arr = np.asarray(layers)
    if arr.ndim == 0:
        arr = np.full(n_samples, int(arr))
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise InputError(
            f"layers must be a 1-D int array with one entry per row of X ({n_samples}), "
            f"got shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InputError("layers must hold integer layer indices")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise InputError(f"layers must be >= 0, got {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


class ParamsMixin:
    """``get_params`` / ``set_params`` from the ``__init__`` signature (as in scikit-learn)."""

    _param_names: tuple[str, ...] = ()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params: Any):
        for name, value in params.items():
            if name not in self._param_names:
                raise InputError(
                    f"{type(self).__name__} has no parameter {name!r}; "
                    f"valid ones: {', '.join(self._param_names)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
