"""The Dash app factory and the server entry point the CLI calls.

``create_app(db_path)`` builds a multi-page app (``pages/*.py``) reading one
factorscope database; ``serve(db_path)`` runs it. Everything works offline: the
Bootstrap CSS is vendored in ``assets/`` and Dash serves its own scripts.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from factorscope.dash_app import config, guard, ids, navigation
from factorscope.errors import WarehouseError
from factorscope.limits import SERVE_THREADS

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
PAGES_DIR = _HERE / "pages"
ASSETS_DIR = _HERE / "assets"


def create_app(
    db_path: str | Path,
    *,
    analyzer_factory: config.AnalyzerFactory | None = None,
    lime_default_samples: int = config.AppConfig.lime_default_samples,
    lime_auto_contexts: int = config.AppConfig.lime_auto_contexts,
    access: guard.Access | None = None,
) -> dash.Dash:
    """Build the app over the factorscope database at ``db_path``.

    Parameters
    ----------
    db_path : path
        A published database (``factorscope ingest/learn/encode`` output). Opened
        read-only, per request.
    analyzer_factory : callable, optional
        ``factory(db_path) -> LiveAnalyzer``-like object for the Analyze page and LIME;
        default :meth:`factorscope.analyzer.LiveAnalyzer.from_db`, built on first use.
    lime_default_samples : int
        The LIME sample count the page starts with.
    lime_auto_contexts : int
        How many top contexts of a high-level factor get LIME maps as soon as its page
        opens (0: only on request).
    access : guard.Access, optional
        Which Host names (and token) every request must come with; default: the
        loopback names, no token. Installed here, not by the server, so that whatever
        serves ``app.server`` (waitress, the dev server, a test) is guarded.
    """
    path = Path(db_path)
    if not path.is_file():
        raise WarehouseError(f"no database at {path} (run `factorscope ingest` first)")
    config.configure(
        config.AppConfig(
            db_path=path,
            analyzer_factory=analyzer_factory,
            lime_default_samples=int(lime_default_samples),
            lime_auto_contexts=int(lime_auto_contexts),
        )
    )
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        external_stylesheets=[],
        serve_locally=True,
        suppress_callback_exceptions=True,
        title="factorscope",
        update_title=None,
    )
    app.layout = _layout  # a function: the navbar's picker lists today's dictionaries
    guard.protect(app.server, access or guard.Access())
    return app


def _layout() -> html.Div:
    return html.Div(
        [
            dcc.Location(id=ids.URL, refresh="callback-nav"),
            navigation.navbar(),
            dbc.Container(dash.page_container, fluid="lg", className="pb-5"),
        ]
    )


DEFAULT_THREADS = SERVE_THREADS
"""Worker threads of the production server (``factorscope serve --threads``).

Pages are mostly Python (GIL-bound) with DuckDB queries that release the GIL, so a
handful of threads keeps the cores busy and lets a slow SQL console query or a LIME
poll wait without holding up everyone else; many more only add contention.
"""


def serve(
    db_path: str | Path,
    host: str = config.DEFAULT_HOST,
    port: int = config.DEFAULT_PORT,
    debug: bool = False,
    *,
    threads: int = DEFAULT_THREADS,
    analyzer_factory: config.AnalyzerFactory | None = None,
    lime_default_samples: int = config.AppConfig.lime_default_samples,
    lime_auto_contexts: int = config.AppConfig.lime_auto_contexts,
    access: guard.Access | None = None,
) -> None:
    """Run the app until interrupted (Ctrl+C or SIGTERM): waitress, or Dash's dev server.

    The production server is waitress: one process, ``threads`` worker threads. The
    app keeps state in its process that every request must see: the live analyzer
    with its loaded model, LIME jobs held in memory and polled by the page
    (``lime_jobs``), the page cache, and DuckDB's one instance per file and process
    behind the reader gate (``warehouse.connection``). Several worker processes
    (gunicorn's model) would each load a model, and a LIME poll landing on another
    process than the one running the job would find nothing unless requests were
    sticky; threads in one process share all of it. Waitress is pure Python, so it
    also runs wherever the package does, with no C extension or fork.

    ``debug=True`` runs Dash's development server instead, with its debug tools.
    Under both, every request first passes :mod:`guard` with ``access`` (default:
    what ``host`` admits without a token, which refuses a bind other than loopback).
    """
    if access is None:
        access = guard.Access.for_bind(host)
    app = create_app(
        db_path,
        analyzer_factory=analyzer_factory,
        lime_default_samples=lime_default_samples,
        lime_auto_contexts=lime_auto_contexts,
        access=access,
    )
    if debug:
        log.info("factorscope app (development server) on http://%s:%d/", host, port)
        with _stop_on_sigterm():
            app.run(host=host, port=int(port), debug=True, use_reloader=False)
        return
    from waitress.server import create_server

    server = create_server(app.server, host=host, port=int(port), threads=int(threads))
    log.info(
        "factorscope app (waitress, %d threads) on http://%s:%d/ reading %s",
        threads,
        host,
        port,
        db_path,
    )
    with _stop_on_sigterm():
        server.run()  # returns after KeyboardInterrupt or SystemExit, the server closed
    log.info("factorscope app stopped")


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Make SIGTERM stop the server like Ctrl+C does (waitress closes its sockets and
    lets running requests finish); only the main thread can set a signal handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
