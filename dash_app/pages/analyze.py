"""Analyze a sentence: ``/analyze`` decomposes every word at every layer, live.

``apple = 0.42·f17 + 0.22·f903 + …``: the sentence goes through the run's model and
the sparse encoder (:class:`factorscope.analyzer.LiveAnalyzer`), exactly as ``encode``
did for the corpus; each factor links to its page at that layer.

The server sends one compact object (``logic.analyze_text``) to a ``dcc.Store``;
``assets/analyze.js`` draws it as one plain table per layer, each in a ``<details>``,
with one innerHTML write. (Thousands of Dash components took the browser minutes.)

Above the layers, "word across layers" puts one word's top factors at every layer side
by side, one column per occurrence (the paper's polysemy question: the two "left"s of
the example share their layer-0 factor; where do they part?).

``?dictionary=N`` (carried by every link of the app) decomposes with dictionary N; the
page says which dictionary it shows, and its factor links carry it.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic
from factorscope.errors import FactorscopeError

dash.register_page(__name__, path="/analyze", name="Analyze", title="factorscope · analyze")

EXAMPLE = "She left the room and turned left at the station."


def layout(text: str | None = None, dictionary: str | None = None, **_query: Any) -> html.Div:
    try:
        with logic.dictionary_scope(dictionary):
            chosen = logic.current_dictionary()
            shown = logic.shown_dictionary(config.db_path())
        header = html.Span(
            f"Decomposed with dictionary {shown}"
            + ("" if chosen is not None else " (the active one)"),
            className="badge text-bg-light",
        )
    except FactorscopeError as e:
        return html.Div([html.H3("Analyze a sentence"), ui.error_alert(str(e))])
    return html.Div(
        [
            html.H3("Analyze a sentence"),
            html.P(
                [
                    "Every word at every layer as a sparse sum of dictionary factors "
                    "(α·f, largest first), one layer per section, and one word's top "
                    "factors across layers. Click a factor to open it. ",
                    html.Span(header, id=ids.ANALYZE_HEADER),
                ],
                className="text-muted",
            ),
            dcc.Store(id=ids.ANALYZE_DICTIONARY, data=shown),
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
            dcc.Loading(
                [
                    dcc.Store(id=ids.ANALYZE_DATA),
                    html.Div(id=ids.ANALYZE_MESSAGE),
                    html.Div(id=ids.ANALYZE_SUMMARY, className="small text-muted mb-1"),
                    # Filled by assets/analyze.js from the store; Dash gives it no children.
                    html.Div(id=ids.ANALYZE_OUTPUT, className="fs-analyze"),
                ],
                type="default",
            ),
        ]
    )


def truncation_note(data: dict) -> Any:
    """A warning when the model stopped reading before the end of the sentence."""
    read, total = int(data.get("read_chars") or 0), int(data.get("n_chars") or 0)
    if not data.get("tokens") or read >= total:
        return None
    return dbc.Alert(
        f"The model reads at most {len(data['tokens'])} pieces of a sentence (the run's "
        f"max_length): it stopped after {read} of {total} characters.",
        color="warning",
        className="mb-2 py-2 small",
    )


@callback(
    Output(ids.ANALYZE_DATA, "data"),
    Output(ids.ANALYZE_MESSAGE, "children"),
    Input(ids.ANALYZE_RUN, "n_clicks"),
    State(ids.ANALYZE_TEXT, "value"),
    State(ids.ANALYZE_TOP, "value"),
    State(ids.ANALYZE_DICTIONARY, "data"),
    prevent_initial_call=True,
)
def analyze(_clicks: Any, text: Any, top: Any, dictionary: Any = None) -> tuple[dict | None, Any]:
    """The compact decomposition for the store (drawn by assets/analyze.js), or a message."""
    cfg = config.get_config()
    try:
        with logic.dictionary_scope(dictionary):
            return _analyze(cfg, text, top)
    except FactorscopeError as e:
        return None, ui.error_alert(str(e))


def _analyze(cfg: config.AppConfig, text: Any, top: Any) -> tuple[dict | None, Any]:
    try:
        analyzer = cfg.analyzer(logic.current_dictionary())
    except Exception as e:  # no model stored, model files gone, analyzer missing...
        return None, ui.error_alert(f"Live analysis is not available for this database: {e}")
    n_top = logic.parse_n_samples(
        top if top is not None else 5, low=1, high=32, name="Factors per word"
    )
    data = logic.analyze_text(analyzer, cfg.db_path, text, top=n_top)
    return data, truncation_note(data)


# One innerHTML write per analysis instead of thousands of Dash components.
clientside_callback(
    ClientsideFunction(namespace="factorscope_analyze", function_name="render"),
    Output(ids.ANALYZE_SUMMARY, "children"),
    Input(ids.ANALYZE_DATA, "data"),
    State(ids.ANALYZE_OUTPUT, "id"),
    prevent_initial_call=True,
)
