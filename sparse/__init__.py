"""Vectors -> codes: one non-negative sparse dictionary shared by every layer.

``DictionaryLearner`` learns it (SPAMS online dictionary learning) together with
a per-layer ``LayerScaler``; ``SparseEncoder`` codes hidden states with it (SPAMS
LARS, or non-negative FISTA in torch); ``from_array`` imports a user's dictionary.
"""

from ._defaults import DEFAULT_LAMBDA1, DEFAULT_N_FACTORS, DEFAULT_PREPROCESSING
from .dictionary import DictionaryLearner, from_array
from .encoder import (
    BACKENDS,
    SparseEncoder,
    fista_nonneg,
    fraction_of_variance_unexplained,
    lasso_objective,
)
from .preprocessing import PREPROCESSING_CHOICES, LayerScaler

__all__ = [
    "BACKENDS",
    "DEFAULT_LAMBDA1",
    "DEFAULT_N_FACTORS",
    "DEFAULT_PREPROCESSING",
    "PREPROCESSING_CHOICES",
    "DictionaryLearner",
    "LayerScaler",
    "SparseEncoder",
    "fista_nonneg",
    "fraction_of_variance_unexplained",
    "from_array",
    "lasso_objective",
]
