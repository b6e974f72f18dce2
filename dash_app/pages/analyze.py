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

**Steer** adds a chosen factor at a chosen strength at a layer to every token of the
sentence (the run's model runs on from there: :meth:`factorscope.analyzer.LiveAnalyzer.
steer`, on the same loaded model as the analysis) and shows, per layer from the steered
one up, how the tokens' top factors changed and which factors rose and fell most, the
pooled sentence embedding's cosine before/after and, for a model with a language-model
head, the top predictions before and after. ``?steer=F&layer=L`` (the factor page's
link) fills the panel in.
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


def layout(
    text: str | None = None,
    dictionary: str | None = None,
    steer: str | None = None,
    layer: str | None = None,
    **_query: Any,
) -> html.Div:
    try:
        with logic.dictionary_scope(dictionary):
            chosen = logic.current_dictionary()
            shown = logic.shown_dictionary(config.db_path())
            steer_panel = _steer_panel(steer, layer)
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
            steer_panel,
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


# --------------------------------------------------------------------------- steering


def _steer_panel(factor: Any, layer: Any) -> dbc.Card:
    """The Steer card: factor, layer, strength, Run; filled in from ``?steer=&layer=``
    when they name a factor and a layer of the dictionary (else left for the user)."""
    db_path = config.db_path()
    layers = logic.layer_list(db_path)
    n_factors = logic.dictionary_size(db_path)
    try:
        chosen_factor = logic.parse_factor(factor, n_factors) if factor else None
    except FactorscopeError:
        chosen_factor = None
    try:
        chosen_layer = logic.parse_layer(layer, layers)
    except FactorscopeError:
        chosen_layer = None
    if chosen_layer is None and layers:
        chosen_layer = layers[len(layers) // 2]
    return dbc.Card(
        [
            dbc.CardHeader(
                [
                    html.Span("Steer"),
                    html.Span(
                        "add a factor to every token at a layer and see what changes above it",
                        className="small text-muted ms-2",
                    ),
                ]
            ),
            dbc.CardBody(
                [
                    _steer_inputs(chosen_factor, chosen_layer, layers, n_factors),
                    html.P(STRENGTH_TIP, className="small text-muted mb-2"),
                    dcc.Loading(
                        [html.Div(id=ids.STEER_MESSAGE), html.Div(id=ids.STEER_OUTPUT)],
                        type="default",
                    ),
                ]
            ),
        ],
        className="mb-3 fs-card",
    )


def _steer_inputs(
    chosen_factor: int | None, chosen_layer: int | None, layers: list[int], n_factors: int
) -> dbc.Row:
    """The Steer card's inputs: factor, layer, strength and the button."""
    factor_input = dbc.Input(
        id=ids.STEER_FACTOR,
        type="text",
        inputMode="numeric",
        value=str(chosen_factor) if chosen_factor is not None else "",
        placeholder=f"0 – {n_factors - 1}",
        autoComplete="off",
    )
    layer_select = dbc.Select(
        id=ids.STEER_LAYER,
        options=[{"label": str(x), "value": str(x)} for x in layers],
        value=str(chosen_layer) if chosen_layer is not None else None,
    )
    strength_input = dbc.Input(
        id=ids.STEER_STRENGTH,
        type="text",
        inputMode="decimal",
        value="",
        placeholder="typical α",
        autoComplete="off",
    )
    strength_label = dbc.InputGroupText(html.Span("strength", title=STRENGTH_TIP))
    return dbc.Row(
        [
            dbc.Col(
                dbc.InputGroup([dbc.InputGroupText("factor"), factor_input], size="sm"),
                xs=6,
                md=3,
            ),
            dbc.Col(
                dbc.InputGroup([dbc.InputGroupText("layer"), layer_select], size="sm"),
                xs=6,
                md=2,
            ),
            dbc.Col(dbc.InputGroup([strength_label, strength_input], size="sm"), xs=8, md=4),
            dbc.Col(dbc.Button("Steer", id=ids.STEER_RUN, color="primary", size="sm"), xs=4, md=2),
        ],
        className="g-2 mb-2 align-items-center",
    )


STRENGTH_TIP = (
    "Strength: the α the factor is added with (its atom times the strength, in the "
    "dictionary's units); empty: its typical α, the mean α of its 20 strongest contexts "
    "at that layer (at its peak layer where it never fires at that one); negative: the "
    "direction is removed."
)


@callback(
    Output(ids.STEER_OUTPUT, "children"),
    Output(ids.STEER_MESSAGE, "children"),
    Input(ids.STEER_RUN, "n_clicks"),
    State(ids.ANALYZE_TEXT, "value"),
    State(ids.STEER_FACTOR, "value"),
    State(ids.STEER_LAYER, "value"),
    State(ids.STEER_STRENGTH, "value"),
    State(ids.ANALYZE_DICTIONARY, "data"),
    prevent_initial_call=True,
)
def steer(
    clicks: Any, text: Any, factor: Any, layer: Any, strength: Any, dictionary: Any = None
) -> tuple[Any, Any]:
    """What adding the factor changed (drawn by ``ui.steer_result``), or a message."""
    if not clicks:
        return dash.no_update, dash.no_update
    cfg = config.get_config()
    try:
        with logic.dictionary_scope(dictionary):
            try:
                analyzer = cfg.analyzer(logic.current_dictionary())
            except Exception as e:  # no model stored, model files gone, analyzer missing...
                return None, ui.error_alert(f"Steering is not available for this database: {e}")
            data = logic.steer_text(analyzer, cfg.db_path, text, factor, layer, strength)
            return ui.steer_result(data), None
    except FactorscopeError as e:
        return None, ui.error_alert(str(e))
