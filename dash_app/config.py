"""The app's configuration: which database it reads and how it builds a live analyzer.

``create_app`` sets it once; callbacks read it. There is no global connection: every
request opens a short-lived read-only one with :func:`reader`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorscope.warehouse.queries import WarehouseReader

AnalyzerFactory = Callable[[Path, "int | None"], Any]
"""Builds the live analyzer of a database and a dictionary (None: the active one)."""

MAX_ANALYZERS = 2
"""Live analyzers kept at once (one per dictionary in use; each holds a model)."""

DEFAULT_HOST = "127.0.0.1"
"""Where ``serve`` listens unless told otherwise: loopback only."""
DEFAULT_PORT = 8050


@dataclass
class AppConfig:
    """What one running app serves."""

    db_path: Path
    analyzer_factory: AnalyzerFactory | None = None
    lime_default_samples: int = 200
    lime_auto_contexts: int = 3  # LIME maps started on opening a high-level factor (0: none)
    _analyzers: dict[int | None, Any] = field(default_factory=dict, repr=False)
    _analyzer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def analyzer(self, dictionary_id: int | None = None) -> Any:
        """The live analyzer of ``dictionary_id`` (None: the active dictionary).

        Built on first use (loading a model is slow) and kept, one per dictionary (at
        most :data:`MAX_ANALYZERS`), so that LIME on a factor page of dictionary 2
        explains dictionary 2's factor even while another is active, and a newly
        published file whose active dictionary changed gets a new one. It comes
        wrapped so that one call runs at a time: Dash serves callbacks on several
        threads, and the model and solver are not meant to be shared by them.
        """
        wanted = dictionary_id if dictionary_id is not None else _active_dictionary(self.db_path)
        with self._analyzer_lock:
            found = self._analyzers.pop(wanted, None)
            if found is None:
                factory = self.analyzer_factory or _default_analyzer_factory
                found = _Serialized(factory(self.db_path, wanted))
            self._analyzers[wanted] = found  # most recently used last
            while len(self._analyzers) > MAX_ANALYZERS:
                self._analyzers.pop(next(iter(self._analyzers)))
            return found


def _active_dictionary(db_path: Path) -> int | None:
    """The dictionary whose codes the published file holds (None when it cannot say)."""
    from factorscope.errors import FactorscopeError
    from factorscope.warehouse.queries import active_dictionary_id

    try:
        with WarehouseReader(db_path).connect() as con:
            return active_dictionary_id(con)
    except FactorscopeError:
        return None


class _Serialized:
    """Forwards ``decompose`` and ``alpha_for`` under one lock; other attributes as is."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def decompose(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._inner.decompose(*args, **kwargs)

    def alpha_for(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._inner.alpha_for(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _default_analyzer_factory(db_path: Path, dictionary_id: int | None) -> Any:
    from factorscope.analyzer import LiveAnalyzer

    return LiveAnalyzer.from_db(db_path, dictionary_id=dictionary_id)


_CONFIG: AppConfig | None = None


def configure(config: AppConfig) -> None:
    """Set the configuration ``create_app`` was given."""
    global _CONFIG
    _CONFIG = config


def get_config() -> AppConfig:
    """The configuration of the running app (``create_app`` must have been called)."""
    if _CONFIG is None:
        raise RuntimeError("factorscope.dash_app.create_app() has not been called")
    return _CONFIG


def db_path() -> Path:
    """The database the running app reads."""
    return get_config().db_path


def reader() -> WarehouseReader:
    """A reader on the app's database; use ``with reader().connect() as con``."""
    return WarehouseReader(db_path())
