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

AnalyzerFactory = Callable[[Path], Any]

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
    _analyzer: Any = field(default=None, repr=False)
    _analyzer_dictionary: int | None = field(default=None, repr=False)
    _analyzer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def analyzer(self) -> Any:
        """The live analyzer, built on first use (loading a model is slow) and then kept.

        It is rebuilt when a newly published file holds codes of another dictionary,
        so that Analyze and LIME always use the dictionary the pages show. It comes
        wrapped so that one call runs at a time: Dash serves callbacks on several
        threads, and the model and solver are not meant to be shared by them.
        """
        active = _active_dictionary(self.db_path)
        with self._analyzer_lock:
            if self._analyzer is None or active != self._analyzer_dictionary:
                factory = self.analyzer_factory or _default_analyzer_factory
                self._analyzer = _Serialized(factory(self.db_path))
                self._analyzer_dictionary = active
            return self._analyzer


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


def _default_analyzer_factory(db_path: Path) -> Any:
    from factorscope.analyzer import LiveAnalyzer

    return LiveAnalyzer.from_db(db_path)


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
