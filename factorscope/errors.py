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


class DatabaseFileError(WarehouseError):
    """A database file factorscope must not use: damaged (truncated, a failed block
    checksum), not a DuckDB file, another program's DuckDB file, or made by a newer
    factorscope. Its message names the file and the way out (restore a backup,
    ``--overwrite``, remove the ``.wip``, upgrade factorscope)."""


class DiskFullError(WarehouseError):
    """The disk filled while a stage wrote; its staging files that held the space are
    removed and the published file is intact."""


class WriterBusyError(WarehouseError):
    """Another process is writing the same database (it holds ``<db>.writer.lock``)."""


class SqlRefusedError(FactorscopeError):
    """A SQL statement the read-only console will not run."""


class NotFittedError(FactorscopeError):
    """An estimator used before ``fit``."""
