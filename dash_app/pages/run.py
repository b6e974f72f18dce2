"""Run overview: ``/run`` shows the model, corpus, counts and per-layer quality.

``?dictionary=N`` shows dictionary N's quality and levels (default: the active one);
the header says which. The corpus card counts every segment the ingest did not store,
by reason (``ingest_drops``), so nothing is dropped out of sight.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import polars as pl
from dash import html

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic, navigation
from factorscope.errors import FactorscopeError

dash.register_page(__name__, path="/run", name="Run", title="factorscope · run")

_SUMMARY_FIELDS = (
    ("model", "Model"),
    ("corpus", "Corpus"),
    ("n_sentences", "Sentences"),
    ("n_tokens", "Tokens"),
    ("n_layers", "Layers"),
    ("hidden_size", "Hidden size"),
    ("dictionary_id", "Dictionary"),
    ("n_factors", "Factors"),
    ("lambda1", "λ"),
)


def layout(dictionary: str | None = None, **_query: Any) -> html.Div:
    try:
        with logic.dictionary_scope(dictionary):
            info = logic.overview(config.db_path())
    except FactorscopeError as e:
        return ui.error_alert(str(e))
    return html.Div(
        [
            html.H3(
                [
                    "Run overview ",
                    navigation.dictionary_badge(info["dictionary_id"]),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [_summary_card(info), _corpus_card(info.get("corpus"))],
                        lg=5,
                        className="mb-3",
                    ),
                    dbc.Col(
                        [_levels_card(info.get("levels", {})), _timings_card(info.get("timings"))],
                        lg=7,
                        className="mb-3",
                    ),
                ]
            ),
            dbc.Card(
                [
                    dbc.CardHeader("Reconstruction quality per layer"),
                    dbc.CardBody(quality_table(info.get("quality")), id=ids.RUN_QUALITY),
                ],
                className="fs-card mb-3",
            ),
        ]
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _summary_card(info: dict) -> dbc.Card:
    rows = [
        html.Tr([html.Th(label, className="text-muted fw-normal"), html.Td(_fmt(info.get(key)))])
        for key, label in _SUMMARY_FIELDS
    ]
    return dbc.Card(
        [
            dbc.CardHeader("Run"),
            dbc.CardBody(
                dbc.Table(html.Tbody(rows), size="sm", className="mb-0"), id=ids.RUN_SUMMARY
            ),
        ],
        className="fs-card",
    )


def _corpus_card(report: dict | None) -> Any:
    """Segments the corpus reader yielded, and those not stored, by reason."""
    if report is None:
        return html.Div()
    dropped = report["dropped"]
    rows = [
        html.Tr(
            [
                html.Th(reason, className="text-muted fw-normal"),
                html.Td(f"{n:,} sentences", className="text-end"),
                html.Td(f"{words:,} words", className="text-end"),
            ]
        )
        for reason, (n, words) in dropped.items()
    ]
    lines = [
        html.P(
            f"{report['segments']:,} segments after sentence splitting"
            + (
                f"; {report['resplit']:,} over-long ones re-split into {report['resplit_into']:,}"
                if report["resplit"]
                else ""
            )
            + ". Not stored:"
            + ("" if rows else " none."),
            className="small mb-1",
        )
    ]
    if rows:
        lines.append(dbc.Table(html.Tbody(rows), size="sm", className="mb-0"))
    return dbc.Card(
        [dbc.CardHeader("Corpus"), dbc.CardBody(lines, id=ids.RUN_CORPUS)],
        className="fs-card mt-3",
    )


def _levels_card(levels: dict[str, int]) -> dbc.Card:
    badges = [
        html.Div(
            [
                html.Div(f"{levels.get(level, 0):,}", className="fs-3 fw-semibold"),
                html.Div(
                    [ui.level_badge(level)],
                    className="small",
                ),
            ],
            className="text-center me-4",
        )
        for level in logic.LEVELS
    ]
    others = {k: v for k, v in levels.items() if k not in logic.LEVELS}
    extra = [
        html.Div(f"{name}: {count:,}", className="small text-muted")
        for name, count in others.items()
    ]
    return dbc.Card(
        [
            dbc.CardHeader("Factor levels (by importance-score peak layer)"),
            dbc.CardBody([html.Div(badges, className="d-flex"), *extra], id=ids.RUN_LEVELS),
        ],
        className="fs-card mb-3",
    )


def _timings_card(timings: Any) -> Any:
    if not timings:
        return html.Div()
    if isinstance(timings, dict):
        items = [
            html.Tr(
                [
                    html.Th(
                        str(k).removesuffix("_seconds").capitalize(),
                        className="text-muted fw-normal",
                    ),
                    html.Td(_seconds(v)),
                ]
            )
            for k, v in timings.items()
        ]
        body: Any = dbc.Table(html.Tbody(items), size="sm", className="mb-0")
    else:
        body = html.Pre(str(timings))
    return dbc.Card([dbc.CardHeader("Timings"), dbc.CardBody(body)], className="fs-card")


def _seconds(value: Any) -> str:
    if isinstance(value, int | float):
        return f"{value:,.1f} s"
    return _fmt(value)


def quality_table(frame: pl.DataFrame | None) -> Any:
    if frame is None or frame.height == 0:
        return html.P("No quality figures yet (run `factorscope encode`).", className="text-muted")
    head = html.Thead(
        html.Tr(
            [
                html.Th("layer"),
                html.Th("vectors", className="text-end"),
                html.Th("FVU", className="text-end"),
                html.Th("mean L0", className="text-end"),
                html.Th("zero codes", className="text-end"),
                html.Th("dead factors", className="text-end"),
                html.Th("λ", className="text-end"),
            ]
        )
    )
    body = [
        html.Tr(
            [
                html.Td(str(r["layer"])),
                html.Td(f"{r['n_vectors']:,}", className="text-end"),
                html.Td(f"{r['fvu']:.3f}", className="text-end"),
                html.Td(f"{r['mean_l0']:.1f}", className="text-end"),
                html.Td(f"{100 * r['zero_code_share']:.1f}%", className="text-end"),
                html.Td(f"{r['dead_factors']:,}", className="text-end"),
                html.Td(f"{r['lambda1']:.3g}", className="text-end"),
            ]
        )
        for r in frame.iter_rows(named=True)
    ]
    return dbc.Table(
        [head, html.Tbody(body)], size="sm", hover=True, striped=True, className="mb-0"
    )
