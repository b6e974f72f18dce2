"""Search: ``/search`` finds factors by a word they fire on or by their label.

``?dictionary=N`` searches dictionary N (default: the active one); the header says
which, and the factor links of the results carry it.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import polars as pl
from dash import Input, Output, State, callback, dcc, html

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic, navigation
from factorscope.errors import FactorscopeError

dash.register_page(__name__, path="/search", name="Search", title="factorscope · search")


def layout(
    word: str | None = None, q: str | None = None, dictionary: str | None = None, **_query: Any
) -> html.Div:
    try:
        layers = logic.layer_list(config.db_path())
        with logic.dictionary_scope(dictionary):
            chosen = logic.current_dictionary()
            shown = logic.shown_dictionary(config.db_path())
    except FactorscopeError as e:
        return ui.error_alert(str(e))
    layer_options = [{"label": "all layers", "value": "all"}] + [
        {"label": f"layer {layer}", "value": str(layer)} for layer in layers
    ]
    return html.Div(
        [
            html.H3(
                [
                    "Search factors ",
                    navigation.dictionary_badge(shown),
                ]
            ),
            dcc.Store(id=ids.SEARCH_DICTIONARY, data=chosen),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader("By word: the factors a word activates most"),
                                dbc.CardBody(
                                    [
                                        dbc.InputGroup(
                                            [
                                                dbc.Input(
                                                    id=ids.SEARCH_WORD,
                                                    value=word or "",
                                                    placeholder="a word, e.g. left",
                                                ),
                                                dbc.Select(
                                                    id=ids.SEARCH_WORD_LAYER,
                                                    options=layer_options,
                                                    value="all",
                                                    style={"maxWidth": "9em"},
                                                ),
                                                dbc.Button(
                                                    "Search", id=ids.SEARCH_WORD_GO, color="primary"
                                                ),
                                            ],
                                            className="mb-3",
                                        ),
                                        dcc.Loading(html.Div(id=ids.SEARCH_WORD_OUTPUT)),
                                    ]
                                ),
                            ],
                            className="fs-card mb-3",
                        ),
                        lg=7,
                    ),
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader("By label"),
                                dbc.CardBody(
                                    [
                                        dbc.InputGroup(
                                            [
                                                dbc.Input(
                                                    id=ids.SEARCH_LABEL,
                                                    value=q or "",
                                                    placeholder="text in a factor's label",
                                                ),
                                                dbc.Button(
                                                    "Search",
                                                    id=ids.SEARCH_LABEL_GO,
                                                    color="primary",
                                                ),
                                            ],
                                            className="mb-3",
                                        ),
                                        dcc.Loading(html.Div(id=ids.SEARCH_LABEL_OUTPUT)),
                                    ]
                                ),
                            ],
                            className="fs-card mb-3",
                        ),
                        lg=5,
                    ),
                ]
            ),
        ]
    )


def render_word_factors(frame: pl.DataFrame) -> Any:
    if frame.height == 0:
        return html.P(
            "No factor fires on this word (is it in the corpus?).", className="text-muted"
        )
    head = html.Thead(
        html.Tr([html.Th("layer"), html.Th("factor"), html.Th("mean α"), html.Th("hits")])
    )
    body = [
        html.Tr(
            [
                html.Td(str(r["layer"])),
                html.Td(ui.factor_link(int(r["factor"]), int(r["layer"]))),
                html.Td(f"{r['mean_alpha']:.3f}"),
                html.Td(str(r["hits"])),
            ]
        )
        for r in frame.iter_rows(named=True)
    ]
    return dbc.Table([head, html.Tbody(body)], size="sm", hover=True, striped=True)


LABEL_SOURCES = {
    "user": ("yours", "a label a person gave this factor"),
    "auto": (
        "auto",
        "the automatic label: the factor's explanation at its peak layer when "
        "`factorscope explain` found one, else the top words of its contexts",
    ),
}


def render_label_hits(frame: pl.DataFrame) -> Any:
    """Each matching label with its factor, marked by who made it (a user's label and
    the automatic one are both searched)."""
    if frame.height == 0:
        return html.P("No label matches.", className="text-muted")
    items = []
    for r in frame.iter_rows(named=True):
        name, tip = LABEL_SOURCES.get(str(r.get("source")), (str(r.get("source") or ""), ""))
        items.append(
            html.Li(
                [
                    ui.factor_link(int(r["factor"])),
                    " ",
                    html.Span(str(r.get("label") or "")),
                    html.Span(name, className="badge text-bg-light ms-2", title=tip),
                ]
            )
        )
    return html.Ul(items, className="list-unstyled")


@callback(
    Output(ids.SEARCH_WORD_OUTPUT, "children"),
    Input(ids.SEARCH_WORD_GO, "n_clicks"),
    Input(ids.SEARCH_WORD, "n_submit"),
    State(ids.SEARCH_WORD, "value"),
    State(ids.SEARCH_WORD_LAYER, "value"),
    State(ids.SEARCH_DICTIONARY, "data"),
    prevent_initial_call=True,
)
def search_word(_clicks: Any, _submit: Any, word: Any, layer: Any, dictionary: Any = None) -> Any:
    try:
        with logic.dictionary_scope(dictionary):  # the result's links carry it
            frame = logic.search_word(
                config.db_path(), word, None if layer in (None, "all") else layer
            )
            return render_word_factors(frame)
    except FactorscopeError as e:
        return ui.error_alert(str(e))


@callback(
    Output(ids.SEARCH_LABEL_OUTPUT, "children"),
    Input(ids.SEARCH_LABEL_GO, "n_clicks"),
    Input(ids.SEARCH_LABEL, "n_submit"),
    State(ids.SEARCH_LABEL, "value"),
    State(ids.SEARCH_DICTIONARY, "data"),
    prevent_initial_call=True,
)
def search_labels(_clicks: Any, _submit: Any, text: Any, dictionary: Any = None) -> Any:
    try:
        with logic.dictionary_scope(dictionary):
            frame = logic.search_labels(config.db_path(), text)
            return render_label_hits(frame)
    except FactorscopeError as e:
        return ui.error_alert(str(e))
