"""The allowed range of every numeric setting, defined once.

The CLI's options take their checks from here (:func:`option_check` as a typer
callback) and so does the TOML pipeline config (:func:`check_setting`), so a flag and
its config key can never disagree. Keys are the config field names; ``flag`` is what
the command line calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factorscope.errors import InputError


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Limit:
    """``low <= value <= high`` (``low < value`` when ``low_open``); ``all_word``: 'all' is None."""

    flag: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = True
    all_word: bool = False

    def describe(self) -> str:
        low, high = _num(self.low), _num(self.high)
        if self.low is not None and self.high is not None and not self.low_open:
            text = f"from {low} to {high}"
        elif self.low is not None:
            text = f"{'greater than' if self.low_open else 'at least'} {low}"
            if self.high is not None:
                text += f" and at most {high}"
        else:
            text = f"at most {high}"
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} {text}" + (", or 'all'" if self.all_word else "")

    def check(self, value: Any, name: str) -> Any:
        """``value`` converted (an int, a float, or None for 'all'); InputError otherwise."""
        if value is None:
            return None
        if self.all_word and isinstance(value, str) and value.strip().lower() in ("all", "none"):
            return None
        number: Any = value
        if isinstance(value, str):
            try:
                number = int(value) if self.integer else float(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InputError(f"{name} must be {self.describe()}, not {value!r}")
        if self.integer and isinstance(number, float):
            if not number.is_integer():
                raise InputError(f"{name} must be {self.describe()}, not {value!r}")
            number = int(number)
        if not math.isfinite(number) or (
            (self.low is not None and (number <= self.low if self.low_open else number < self.low))
            or (self.high is not None and number > self.high)
        ):
            raise InputError(f"{name} must be {self.describe()}, not {value!r}")
        return number


MAX_POSITIONS = 1024
"""Token positions stay below this: it is the stride of :func:`token_id` (and so the
ceiling of ``--max-length``). Changing it changes every stored token id."""


def token_id(sentence_idx: Any, position: Any) -> Any:
    """The token id of ``position`` in sentence ``sentence_idx`` (ints or int64 arrays).

    The one definition of the rule ``sentence_idx * MAX_POSITIONS + position``; SQL gets
    the stride as a bound parameter (``MAX_POSITIONS``), never as a literal.
    """
    return sentence_idx * MAX_POSITIONS + position


def sentence_of(token_ids: Any) -> Any:
    """The sentence index of each token id (the inverse of :func:`token_id`)."""
    return token_ids // MAX_POSITIONS


TOP_K = 200
"""Top contexts kept per (factor, layer): the summaries', the app's, and the least a shard
keeps for a merge (``--partial-k``)."""

SQL_TIMEOUT_S = 10.0
"""Default seconds before a console query is cancelled (`sql --timeout`)."""
SQL_MAX_ROWS = 1000
"""Default cap on a console result's rows (`sql --max-rows`, the app's SQL page)."""
SQL_MAX_MB = 16
"""Default cap on a console result's size in MB (`sql --max-mb`)."""
SQL_MAX_MEMORY_MB = 1000
"""Memory limit of one console query in MB (its worker process's ``RLIMIT_DATA``, plus
the result cap); a query past it stops with one line. ``$FACTORSCOPE_SQL_MEMORY_MB``
changes it (``LIMITS["sql_memory_mb"]``)."""
SQL_MEMORY_ENV = "FACTORSCOPE_SQL_MEMORY_MB"
SQL_CONSOLE_SLOTS = 2
"""Console queries that run at once in one process (the app's server); another is
refused at once. So the console adds at most ``SQL_CONSOLE_SLOTS`` times
(``SQL_MAX_MEMORY_MB`` + the result cap) to the server's memory, and holds at most that
many of its threads."""
SERVE_THREADS = 8
"""Default worker threads of `serve`'s server: a few per core of a 2-core machine."""
SERVE_TOKEN_MIN_CHARS = 16
"""Shortest `serve --token` (or FACTORSCOPE_TOKEN) accepted: a token stands between the
network and the data, so one a person could guess is refused."""

_SEED = Limit("--seed", 0, 2**32 - 1)

LIMITS: dict[str, Limit] = {
    # corpus
    "min_words": Limit("--min-words", 1, 10_000),
    "max_words": Limit("--max-words", 1, 10_000),
    "max_sentences": Limit("--max-sentences", 1, 10**9, all_word=True),
    "seed": _SEED,
    # ingest
    "max_length": Limit("--max-length", 2, MAX_POSITIONS),
    "chunk_size": Limit("--chunk-size", 1, 1_000_000),
    "sample_size": Limit("--sample-size", 0, 10**12, all_word=True),
    "batch_size": Limit("--batch-size", 1, 1_000_000),
    "threads": Limit("--threads", 1, 4096),
    # learn
    "n_factors": Limit("-m/--n-factors", 1, 100_000),
    "lambda1": Limit("--lambda", 0, 1e6, low_open=True, integer=False),
    "n_iter": Limit("--n-iter", 1, 10**9),
    "max_vectors": Limit("--max-vectors", 1, 10**12, all_word=True),
    # encode
    "dictionary_id": Limit("--dictionary", 1, 2**31 - 1),
    "workers": Limit("--workers", 1, 4096),
    "partial_k": Limit("--partial-k", TOP_K, 10**7),
    # probe
    "min_senses": Limit("--min-senses", 2, 1000),
    "min_examples": Limit("--min-examples", 2, 100_000),
    "max_examples": Limit("--max-examples", 2, 10**9, all_word=True),
    "max_lemmas": Limit("--max-lemmas", 1, 10**9, all_word=True),
    # effects
    "contexts": Limit("--contexts", 1, 200),
    "factors": Limit("--factors", 1, 10**7, all_word=True),
    # serve, sql, report
    "port": Limit("--port", 1, 65535),
    "lime_samples": Limit("--lime-samples", 10, 10_000),
    "serve_threads": Limit("--threads", 1, 256),
    "max_rows": Limit("--max-rows", 1, 1_000_000),
    "max_mb": Limit("--max-mb", 1, 4096),
    "timeout": Limit("--timeout", 0.1, 3600, integer=False),
    "sql_memory_mb": Limit(SQL_MEMORY_ENV, 256, 1_000_000),
    "examples_per_level": Limit("--examples-per-level", 0, 20),
}


def check_setting(key: str, value: Any, where: str) -> Any:
    """``value`` of config key ``key`` checked against its limit (``where`` names it)."""
    limit = LIMITS.get(key)
    return value if limit is None else limit.check(value, where)


def check_many(key: str, value: Any, name: str | None = None) -> list[Any]:
    """A comma-separated list (``"512,1024"``) of values of ``LIMITS[key]``, each checked.

    One value gives a one-element list, so a command taking several (``learn -m``) reads a
    single value exactly as before. A part that is not a number is named with what was
    expected (``integer`` for whole numbers), as typer words it for a plain int option.
    """
    limit = LIMITS[key]
    name = name or limit.flag
    if not isinstance(value, str):
        return [limit.check(value, name)]
    parts = [part.strip() for part in value.split(",")]
    if not parts or any(not part for part in parts):
        raise InputError(
            f"{name} must be one value or several separated by commas (e.g. 512,1024), "
            f"not {value!r}"
        )
    values = []
    for part in parts:
        if limit.integer and not part.lstrip("+-").isdigit():
            try:
                float(part)
            except ValueError:
                raise InputError(
                    f"{name}: {part!r} is not a valid integer (give {limit.describe()}, "
                    "or several separated by commas)"
                ) from None
        values.append(limit.check(part, name))
    if len(set(values)) != len(values):
        raise InputError(f"{name} lists a value twice: {value!r}")
    return values


def option_many_check(key: str) -> Callable[[Any], Any]:
    """A typer callback for a comma-separated list of ``LIMITS[key]`` values."""

    def callback(value: Any) -> Any:
        import typer

        try:
            return check_many(key, value)
        except InputError as e:
            raise typer.BadParameter(str(e)) from e

    return callback


def option_check(key: str) -> Callable[[Any], Any]:
    """A typer callback that checks an option against ``LIMITS[key]``."""
    limit = LIMITS[key]

    def callback(value: Any) -> Any:
        import typer

        try:
            return limit.check(value, limit.flag)
        except InputError as e:
            raise typer.BadParameter(str(e)) from e

    return callback
