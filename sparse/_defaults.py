"""Defaults chosen from the lambda / n_factors sweep (docs/SWEEP.md)."""

DEFAULT_N_FACTORS = 1024
DEFAULT_LAMBDA1 = 0.07
DEFAULT_PREPROCESSING = "center-scale"
