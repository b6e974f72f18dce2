"""The factorscope web app (Dash): factor explorer, LIME, live analysis, search, SQL.

Nothing is imported eagerly: ``from factorscope.dash_app import create_app, serve``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from factorscope.dash_app import app

        return getattr(app, name)
    raise AttributeError(name)
