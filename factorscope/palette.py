"""The colours of the factor levels: one definition for the app and the report.

A level is drawn in its Bootstrap theme colour: the app's badges and buttons name the
theme (``LEVEL_THEME``), its plots and the report's PNGs use the same colour as hex
(``LEVEL_COLORS``), so "high" is the same red on a factor page and in the report.
Imports nothing of the project, so every layer may import it.
"""

from __future__ import annotations

LEVEL_THEME: dict[str, str] = {"low": "info", "mid": "warning", "high": "danger"}
"""Bootstrap theme colour of each level (``dbc.Badge(color=...)``, ``dbc.Button``)."""

THEME_HEX: dict[str, str] = {
    "info": "#0dcaf0",
    "warning": "#ffc107",
    "danger": "#dc3545",
    "secondary": "#6c757d",
}
"""Bootstrap 5.3.3's theme colours (``--bs-<name>`` in the vendored
``dash_app/assets/bootstrap.min.css``; a test checks they agree)."""

LEVEL_COLORS: dict[str, str] = {level: THEME_HEX[theme] for level, theme in LEVEL_THEME.items()}
"""Hex colour of each level, for plots (plotly in the app, matplotlib in the report)."""

NO_LEVEL_COLOR = THEME_HEX["secondary"]
"""A factor without a level (it never fires)."""

LEARNED_COLOR = "#212529"
"""A learned (or imported) dictionary in plots beside its controls: Bootstrap's body text."""

CONTROL_COLOR = NO_LEVEL_COLOR
"""A control dictionary (random atoms) in plots: grey, the null it stands for."""
