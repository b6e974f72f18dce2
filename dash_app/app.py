"""The Dash app factory and the server entry point the CLI calls.

``create_app(db_path)`` builds a multi-page app (``pages/*.py``) reading one
factorscope database; ``serve(db_path)`` runs it. Everything works offline: the
Bootstrap CSS is vendored in ``assets/`` and Dash serves its own scripts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from factorscope.dash_app import config, ids
from factorscope.errors import WarehouseError

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
PAGES_DIR = _HERE / "pages"
ASSETS_DIR = _HERE / "assets"

NAV_LINKS = (
    ("Factors", "/factor"),
    ("Analyze", "/analyze"),
    ("Search", "/search"),
    ("SQL", "/sql"),
    ("Run", "/run"),
)


def navbar() -> dbc.Navbar:
    links = [
        dbc.NavItem(dbc.NavLink(name, href=href, active="partial", id=f"nav-{href.strip('/')}"))
        for name, href in NAV_LINKS
    ]
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("factorscope", href="/", className="fw-semibold"),
                dbc.Nav(links, navbar=True, className="me-auto"),
            ],
            fluid=True,
        ),
        id=ids.NAVBAR,
        color="dark",
        dark=True,
        className="mb-3",
    )


def create_app(
    db_path: str | Path,
    *,
    analyzer_factory: config.AnalyzerFactory | None = None,
    lime_default_samples: int = 200,
    lime_auto_contexts: int = 3,
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
    app.layout = html.Div(
        [
            dcc.Location(id=ids.URL, refresh="callback-nav"),
            navbar(),
            dbc.Container(dash.page_container, fluid="lg", className="pb-5"),
        ]
    )
    return app


def serve(
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8050,
    debug: bool = False,
    *,
    analyzer_factory: config.AnalyzerFactory | None = None,
    lime_default_samples: int = 200,
    lime_auto_contexts: int = 3,
) -> None:
    """Run the app with Dash's (threaded) development server until interrupted."""
    app = create_app(
        db_path,
        analyzer_factory=analyzer_factory,
        lime_default_samples=lime_default_samples,
        lime_auto_contexts=lime_auto_contexts,
    )
    log.info("factorscope app on http://%s:%d/ reading %s", host, port, db_path)
    app.run(host=host, port=int(port), debug=debug, use_reloader=False)
