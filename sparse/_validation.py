"""Input and parameter checks shared by the estimators (private).

The estimators are scikit-learn estimators: each class declares its parameter rules
in one ``_parameter_constraints`` table, checked once in ``fit`` by
:func:`check_params`; ``X`` goes through scikit-learn's ``validate_data`` (which also
keeps ``n_features_in_`` and ``feature_names_in_``) in :func:`validate_X`. What those
raise is re-raised as the project's own error types, each of which is also the type
scikit-learn's callers expect (``ValueError``, ``TypeError``, scikit-learn's
``NotFittedError``): the CLI prints one line, a ``GridSearchCV`` sees a
``ValueError``.

Public methods call these at the edge; the ``_private`` helpers behind them trust
their inputs.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils._param_validation import Interval, InvalidParameterError
from sklearn.utils.validation import check_is_fitted, validate_data

from factorscope.errors import InputError, NotFittedError


class InvalidInputError(InputError, ValueError):
    """Bad ``X``, ``layers`` or parameter value: an ``InputError`` and a ``ValueError``."""


class InvalidTypeError(InputError, TypeError):
    """Input of a type the estimators refuse (e.g. a sparse ``X``)."""


class InvalidParameterValueError(InputError, ValueError, TypeError):
    """A parameter outside its ``_parameter_constraints`` (scikit-learn raises both types)."""


class EstimatorNotFittedError(NotFittedError, _SklearnNotFittedError):
    """The project's ``NotFittedError`` and scikit-learn's (so ``check_is_fitted`` users agree)."""


class SparseEstimator(BaseEstimator):
    """Shared base: scikit-learn's ``BaseEstimator`` with the project's error types.

    ``set_params`` names the unknown parameter with an ``InputError`` (still a
    ``ValueError``, as scikit-learn's own is).
    """

    def set_params(self, **params: Any):
        valid = self.get_params(deep=True)
        for key in params:
            name = key.partition("__")[0]
            if name not in valid:
                raise InvalidInputError(
                    f"{type(self).__name__} has no parameter {name!r}; "
                    f"valid ones: {', '.join(sorted(self.get_params(deep=False)))}"
                )
        return super().set_params(**params)


def check_params(estimator: BaseEstimator) -> None:
    """Check ``estimator``'s parameters against its ``_parameter_constraints``."""
    try:
        estimator._validate_params()
    except InvalidParameterError as e:
        raise InvalidParameterValueError(str(e)) from e
    # scikit-learn's Interval(Integral, ...) lets a bool through (True == 1): not here
    for name, constraints in estimator._parameter_constraints.items():
        value = getattr(estimator, name)
        if isinstance(value, bool | np.bool_) and any(
            isinstance(c, Interval) and c.type is Integral for c in constraints
        ):
            raise InvalidParameterValueError(
                f"The {name!r} parameter of {type(estimator).__name__} must be an int, "
                f"not a bool. Got {value!r} instead."
            )


def check_fitted(estimator: Any, attributes: str | list[str] | None = None) -> None:
    """Raise :class:`EstimatorNotFittedError` unless ``estimator`` is fitted."""
    try:
        check_is_fitted(estimator, attributes)
    except _SklearnNotFittedError as e:
        raise EstimatorNotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call 'fit' before using it"
        ) from e


def _two_d_message(name: str, ndim: int, shape: Any) -> str:
    return (
        f"{name} must be a 2-D array of shape (n_samples, n_features), got {ndim}-D "
        f"with shape {shape}. Reshape your data: x.reshape(1, -1) for a single vector"
    )


def _check_finite(X: np.ndarray, name: str) -> None:
    """Raise on NaN or Inf; one pass over ``X`` (a sum) when all is finite."""
    if X.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(X.sum()):  # a large finite sum overflows to inf: then look closer
            return
    finite_rows = np.isfinite(X).all(axis=1)
    if finite_rows.all():
        return
    bad = np.flatnonzero(~finite_rows)
    kind = "NaN" if np.isnan(X[bad]).any() else "Inf"
    raise InvalidInputError(
        f"{name} contains {kind} values ({bad.size} row(s), first at row {int(bad[0])}); "
        "hidden states must be finite (no NaN, no inf)"
    )


def validate_X(
    estimator: BaseEstimator,
    X: Any,
    *,
    reset: bool,
    n_features: int | None = None,
    min_samples: int = 1,
    dtype: type = np.float32,
) -> np.ndarray:
    """``X`` as a finite 2-D ``dtype`` array, through scikit-learn's ``validate_data``.

    ``reset=True`` (in ``fit``) records ``n_features_in_`` (and ``feature_names_in_``);
    ``reset=False`` checks ``X`` against them. No copy is made when ``X`` already has
    ``dtype`` (its memory order is kept). ``n_features`` adds a check against a width
    known otherwise (a stateless encoder's dictionary).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    """
    ndim = getattr(X, "ndim", 2)
    if ndim != 2:
        raise InvalidInputError(_two_d_message("X", ndim, getattr(X, "shape", None)))
    try:
        X = validate_data(
            estimator,
            X,
            reset=reset,
            dtype=dtype,
            ensure_all_finite=False,  # checked below, with a message naming the rows
            ensure_min_samples=min_samples,
        )
    except TypeError as e:
        raise InvalidTypeError(str(e)) from e
    except ValueError as e:
        raise InvalidInputError(" ".join(str(e).split())) from e
    if n_features is not None and X.shape[1] != n_features:
        raise InvalidInputError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{n_features} features as input"
        )
    _check_finite(X, "X")
    return X


def check_X(
    X: Any,
    *,
    n_features: int | None = None,
    name: str = "X",
    dtype: type = np.float32,
    min_samples: int = 0,
) -> np.ndarray:
    """A finite 2-D float array of ``n_features`` columns, ``dtype`` (not an estimator's X).

    For arrays that are data given to a constructor or a loader (a dictionary, stored
    atoms); an estimator's ``X`` goes through :func:`validate_X`.
    """
    try:
        arr = np.asarray(X)
    except Exception as e:  # ragged lists and the like
        raise InvalidInputError(f"{name} must be a 2-D numeric array: {e}") from e
    if arr.ndim != 2:
        raise InvalidInputError(_two_d_message(name, arr.ndim, arr.shape))
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInputError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {arr.shape[1]} features per row but {n_features} were expected"
        )
    if arr.shape[0] < min_samples:
        raise InvalidInputError(
            f"{name} has {arr.shape[0]} rows; at least {min_samples} are needed"
        )
    arr = np.asarray(arr, dtype=dtype)
    _check_finite(arr, name)
    return arr


def check_layers(layers: Any, n_samples: int) -> np.ndarray | None:
    """``None`` or an int array of length ``n_samples`` with non-negative entries."""
    if layers is None:
        return None
    arr = np.asarray(layers)
    if arr.ndim == 0:
        arr = np.full(n_samples, int(arr))
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise InvalidInputError(
            f"layers must be a 1-D int array with one entry per row of X ({n_samples}), "
            f"got shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InvalidInputError("layers must hold integer layer indices")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise InvalidInputError(f"layers must be >= 0, got {int(arr.min())}")
    return arr.astype(np.int64, copy=False)
