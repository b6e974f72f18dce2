"""The project's own exceptions.

Every error a user can cause by what they typed (a bad path, an unknown layer, a
refused SQL statement) is a :class:`FactorscopeError`. The CLI turns those into one
clear line and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FactorscopeError(Exception):
    """A problem with the user's input or data, reported as one line."""

    exit_code: int = 2


class InputError(FactorscopeError):
    """Bad command-line or corpus input (missing path, empty corpus, binary file...)."""


class ModelLoadError(FactorscopeError):
    """A model name or path that cannot be loaded (offline, missing, not a model)."""


class WarehouseError(FactorscopeError):
    """A database that cannot be opened, is not ours, or lacks a stage's output."""


class SqlRefusedError(FactorscopeError):
    """A SQL statement the read-only console will not run."""


class NotFittedError(FactorscopeError):
    """An estimator used before ``fit``."""
