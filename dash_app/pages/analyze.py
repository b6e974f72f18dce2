"""Analyze a sentence: ``/analyze`` decomposes every word at every layer, live.

``apple = 0.42·f17 + 0.22·f903 + …``: the sentence goes through the run's model and
the sparse encoder (:class:`factorscope.analyzer.LiveAnalyzer`), exactly as ``encode``
did for the corpus; each factor links to its page at that layer.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic
from factorscope.errors import FactorscopeError

dash.register_page(__name__, path="/analyze", name="Analyze", title="factorscope · analyze")

EXAMPLE = "She left the room and turned left at the station."


def layout(text: str | None = None, **_query: Any) -> html.Div:
    return html.Div(
        [
            html.H3("Analyze a sentence"),
            html.P(
                "Every word at every layer as a sparse sum of dictionary factors "
                "(α·f, largest first). Click a factor to open it.",
                className="text-muted",
            ),
            dbc.Textarea(
                id=ids.ANALYZE_TEXT,
                value=text or EXAMPLE,
                rows=3,
                maxLength=2000,
                className="mb-2",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.InputGroup(
                            [
                                dbc.InputGroupText("factors per word"),
                                dbc.Input(
                                    id=ids.ANALYZE_TOP, type="number", min=1, max=32, value=5
                                ),
                            ],
                            size="sm",
                        ),
                        xs=7,
                        md=4,
                    ),
                    dbc.Col(dbc.Button("Analyze", id=ids.ANALYZE_RUN, color="primary"), xs=5),
                ],
                className="mb-3 g-2 align-items-center",
            ),
            dcc.Loading(html.Div(id=ids.ANALYZE_OUTPUT), type="default"),
        ]
    )


def render_decomposition(tokens: list[dict]) -> Any:
    """One card per layer; each row is a word piece and its sum of factors."""
    if not tokens:
        return html.P("The model kept no tokens of this sentence.", className="text-muted")
    layers = sorted({lay["layer"] for tok in tokens for lay in tok["layers"]})
    cards = []
    for layer in layers:
        rows = []
        for tok in tokens:
            factors = next((lay["factors"] for lay in tok["layers"] if lay["layer"] == layer), [])
            word = tok.get("piece") or tok.get("word") or ""
            terms: list[Any] = []
            for i, f in enumerate(factors):
                if i:
                    terms.append(" + ")
                term = [f"{f['alpha']:.2f}·", ui.factor_link(f["factor"], layer, label=f["label"])]
                if f.get("label"):
                    term.append(html.Span(f" ({f['label']})", className="text-muted small"))
                terms.append(html.Span(term, className="fs-factor-term"))
            rows.append(
                html.Tr(
                    [
                        html.Td(word, className="fs-decomp-word"),
                        html.Td(
                            ["= ", *terms] if terms else "= 0", className="font-monospace small"
                        ),
                    ]
                )
            )
        cards.append(
            dbc.Card(
                [
                    dbc.CardHeader(f"Layer {layer}" + (" (embeddings)" if layer == 0 else "")),
                    dbc.CardBody(
                        dbc.Table(html.Tbody(rows), size="sm", className="mb-0 fs-decomp"),
                        className="p-2",
                    ),
                ],
                className="mb-3 fs-card",
            )
        )
    return html.Div(cards)


@callback(
    Output(ids.ANALYZE_OUTPUT, "children"),
    Input(ids.ANALYZE_RUN, "n_clicks"),
    State(ids.ANALYZE_TEXT, "value"),
    State(ids.ANALYZE_TOP, "value"),
    prevent_initial_call=True,
)
def analyze(_clicks: Any, text: Any, top: Any) -> Any:
    cfg = config.get_config()
    try:
        analyzer = cfg.analyzer()
    except Exception as e:  # no model stored, model files gone, analyzer missing...
        return ui.error_alert(f"Live analysis is not available for this database: {e}")
    try:
        n_top = logic.parse_n_samples(
            top if top is not None else 5, low=1, high=32, name="Factors per word"
        )
        tokens = logic.analyze_text(analyzer, cfg.db_path, text, top=n_top)
    except FactorscopeError as e:
        return ui.error_alert(str(e))
    return render_decomposition(tokens)
