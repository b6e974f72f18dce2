"""Vectors -> codes: one non-negative sparse dictionary shared by every layer.

``DictionaryLearner`` learns it (SPAMS online dictionary learning) together with
a per-layer ``LayerScaler``; ``SparseEncoder`` codes hidden states with it (SPAMS
LARS, or non-negative FISTA in torch); ``from_array`` imports a user's dictionary;
``make_control`` makes a control dictionary (random atoms of a parent's size and
preprocessing, with lambda bisected until its mean L0 matches the parent's).
"""

from ._defaults import DEFAULT_LAMBDA1, DEFAULT_N_FACTORS, DEFAULT_PREPROCESSING
from .controls import (
    BISECTION_VECTORS,
    CONTROL_KINDS,
    L0_TOLERANCE,
    Control,
    ControlKind,
    LambdaSearch,
    bisect_lambda,
    make_control,
)
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
    "BISECTION_VECTORS",
    "CONTROL_KINDS",
    "DEFAULT_LAMBDA1",
    "DEFAULT_N_FACTORS",
    "DEFAULT_PREPROCESSING",
    "L0_TOLERANCE",
    "PREPROCESSING_CHOICES",
    "Control",
    "ControlKind",
    "DictionaryLearner",
    "LambdaSearch",
    "LayerScaler",
    "SparseEncoder",
    "bisect_lambda",
    "fista_nonneg",
    "fraction_of_variance_unexplained",
    "from_array",
    "lasso_objective",
    "make_control",
]
