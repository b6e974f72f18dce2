"""Senses: ``/senses?lemma=left`` shows how a word's senses separate, layer by layer.

The data come from `factorscope probe` (tables ``sense_probe`` and
``sense_occurrences``, view ``sense_probe_summary``): the leave-one-out 1-NN sense
accuracy per layer averaged over the probed words (codes vs hidden states vs chance,
95% CI bands), then one word's curve and the paper's figure: its occurrences grouped by
sense, each with its top factor at every layer, linked to the factor's page. The cells
that hold the word's layer-0 factor are shaded, so a reader sees that one factor give
way to sense factors higher up. The URL is the page's state (the word menu navigates).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html, no_update

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic
from factorscope.errors import FactorscopeError

dash.register_page(__name__, path="/senses", name="Senses", title="factorscope · senses")


def senses_href(lemma: str) -> str:
    return f"/senses?{urlencode({'lemma': lemma})}"


def layout(lemma: str | None = None, **_query: Any) -> html.Div:
    try:
        view = logic.senses_view(config.db_path(), lemma)
    except FactorscopeError as e:
        return html.Div([html.H3("Senses"), ui.error_alert(str(e))])
    if view is None:
        return html.Div(
            [
                html.H3("Senses"),
                dbc.Alert(
                    [
                        "This run has not been probed for word senses yet: ",
                        html.Code(logic.PROBE_HINT.removeprefix("run ").strip("`")),
                        " measures how well the codes separate the senses of words, then "
                        "reload this page.",
                    ],
                    color="info",
                    id=ids.SENSES_MESSAGE,
                ),
            ]
        )
    return html.Div(
        [
            html.H3("Senses"),
            html.P(_intro(view), className="text-muted small"),
            dbc.Card(
                [
                    dbc.CardHeader("Sense separation per layer, averaged over the probed words"),
                    dbc.CardBody(
                        ui.graph(
                            ids.SENSES_CURVE,
                            ui.separation_figure(
                                view.summary,
                                title=f"{view.info['n_lemmas']:,} words, mean and 95% CI",
                            ),
                        )
                    ),
                ],
                className="fs-card mb-3",
            ),
            _lemma_section(view),
            dcc.Location(id=ids.SENSES_NAV, refresh="callback-nav"),
        ]
    )


def _intro(view: logic.SensesView) -> str:
    settings = view.info["settings"]
    return (
        f"Leave-one-out 1-nearest-neighbour sense accuracy (cosine) of each word's token "
        f"(the first piece of the word) on the sparse codes and on the raw hidden states; "
        f"chance is a randomly drawn neighbour's accuracy. Senses: metadata field "
        f"{settings.get('sense')!r}, at least {settings.get('min_examples')} examples each, "
        f"from {view.info['source']}."
    )


def _lemma_section(view: logic.SensesView) -> Any:
    if view.lemma is None:
        return html.P("No word was probed.", className="text-muted")
    options = [{"label": w, "value": w} for w in view.lemmas]
    picker = dbc.InputGroup(
        [
            dbc.InputGroupText("Word"),
            dbc.Select(id=ids.SENSES_LEMMA, options=options, value=view.lemma),
        ],
        className="mb-3",
        style={"maxWidth": "22em"},
    )
    codes = view.scores.filter(view.scores["representation"] == "codes")
    word_factor = codes["word_factor"].drop_nulls().to_list()
    wf = int(word_factor[0]) if word_factor else None
    groups = logic.sense_groups(view.occurrences)
    n_occ = sum(len(g["rows"]) for g in groups)
    caption = f"{n_occ} occurrences of “{view.lemma}” in {len(groups)} senses. " + (
        f"Its layer-0 word factor is f{wf} (shaded where it is the top factor)."
        if wf is not None
        else "It has no layer-0 word factor (all codes zero)."
    )
    return dbc.Card(
        [
            dbc.CardHeader(picker),
            dbc.CardBody(
                [
                    ui.graph(
                        ids.SENSES_LEMMA_CURVE,
                        ui.separation_figure(view.scores, title=f"“{view.lemma}”", bands=False),
                    ),
                    html.P(caption, className="small text-muted"),
                    html.Div(
                        [_group_table(g, view.layers, wf) for g in groups], id=ids.SENSES_GROUPS
                    ),
                ]
            ),
        ],
        className="fs-card mb-3",
    )


def _group_table(group: dict[str, Any], layers: list[int], word_factor: int | None) -> html.Div:
    head = html.Thead(
        html.Tr(
            [html.Th("sentence")]
            + [html.Th(f"L{layer}", className="text-end fs-layer-col") for layer in layers]
        )
    )
    body = []
    for row in group["rows"]:
        cells = [
            html.Td(
                [
                    ui.highlighted_context(row["text"], row["start"], row["end"]),
                    html.Div(row["gloss"] or row["synset"] or "", className="small text-muted")
                    if len(group["glosses"]) > 1
                    else None,
                ]
            )
        ]
        for layer, factor, alpha in row["tops"]:
            if factor is None:
                cells.append(html.Td("–", className="text-end text-muted"))
                continue
            shade = " fs-word-factor" if factor == word_factor else ""
            cells.append(
                html.Td(
                    ui.factor_link(int(factor), int(layer), label=f"α {alpha:.3f}"),
                    className="text-end font-monospace" + shade,
                )
            )
        body.append(html.Tr(cells, className="fs-sense-row"))
    glosses = group["glosses"]
    header = [html.Span(group["sense"], className="fw-semibold me-2")]
    if len(glosses) == 1:
        header.append(html.Span(glosses[0], className="text-muted"))
    elif glosses:
        header.append(html.Span(f"{len(glosses)} WordNet senses", className="text-muted"))
    return html.Div(
        [
            html.H6(header, className="mt-3 mb-1 fs-sense-header"),
            dbc.Table([head, html.Tbody(body)], size="sm", hover=True, className="fs-sense-table"),
        ],
        className="fs-sense-group",
    )


@callback(
    Output(ids.SENSES_NAV, "href"),
    Input(ids.SENSES_LEMMA, "value"),
    prevent_initial_call=True,
)
def pick_lemma(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return no_update
    return senses_href(value)
