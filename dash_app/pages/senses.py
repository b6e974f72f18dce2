"""Senses: ``/senses?lemma=left`` shows how a word's senses separate, layer by layer.

The data come from `factorscope probe` (tables ``sense_probe`` and
``sense_occurrences``, view ``sense_probe_summary``): the leave-one-out 1-NN sense
accuracy per layer averaged over the probed words (codes vs hidden states vs chance,
95% CI bands), then one word's curve and the paper's figure: its occurrences grouped by
sense, each with its top factor at every layer, linked to the factor's page. The cells
that hold the word's layer-0 factor are shaded, so a reader sees that one factor give
way to sense factors higher up. The URL is the page's state (the word menu navigates).

``?dictionary=N`` shows dictionary N's probe; the page says which dictionaries are
probed and, for one that is not, the command that probes it. A word that was not probed
shows the default word with a note naming the probed ones.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic, navigation
from factorscope.errors import FactorscopeError, InputError

dash.register_page(__name__, path="/senses", name="Senses", title="factorscope · senses")


def senses_href(lemma: str, dictionary: int | None = None) -> str:
    params: dict[str, Any] = {"lemma": lemma}
    if dictionary is not None:
        params["dictionary"] = int(dictionary)
    return f"/senses?{urlencode(params)}"


def layout(lemma: str | None = None, dictionary: str | None = None, **_query: Any) -> html.Div:
    try:
        with logic.dictionary_scope(dictionary):  # the links drawn inside carry it
            return _layout(lemma)
    except FactorscopeError as e:
        return html.Div([html.H3("Senses"), ui.error_alert(str(e))])


def _layout(lemma: str | None) -> html.Div:
    db_path = config.db_path()
    note = None
    shown = logic.shown_dictionary(db_path)
    probed = logic.probed_dictionaries(db_path)
    try:
        view = logic.senses_view(db_path, lemma)
    except InputError as e:  # a word that was not probed: show the default word
        note = str(e)
        view = logic.senses_view(db_path, None)
    title = html.H3(
        [
            "Senses ",
            navigation.dictionary_badge(shown),
        ]
    )
    store = dcc.Store(id=ids.SENSES_DICTIONARY, data=logic.current_dictionary())
    if view is None:
        return html.Div([title, _not_probed(shown, probed), store])
    return html.Div(
        [
            title,
            html.P(_intro(view), className="text-muted small"),
            _probed_line(shown, probed),
            dbc.Alert(note, color="warning", id=ids.SENSES_NOTE, className="py-2 small")
            if note
            else None,
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
            store,
        ]
    )


def _other_probes(shown: int, probed: list[int]) -> list[Any]:
    """Links to the probes of the other dictionaries (this page for each)."""
    links: list[Any] = []
    for d in probed:
        if d == shown:
            continue
        links += [
            ", " if links else "",
            dcc.Link(f"dictionary {d}", href=f"/senses?dictionary={d}"),
        ]
    return links


def _not_probed(shown: int, probed: list[int]) -> dbc.Alert:
    others = _other_probes(shown, probed)
    return dbc.Alert(
        [
            f"Dictionary {shown} has not been probed for word senses yet: ",
            html.Code(logic.probe_command(shown)),
            " measures how well its codes separate the senses of words; then reload this page.",
            html.Div(["Probed: ", *others, "."], className="mt-1") if others else None,
        ],
        color="info",
        id=ids.SENSES_MESSAGE,
    )


def _probed_line(shown: int, probed: list[int]) -> Any:
    others = _other_probes(shown, probed)
    if not others:
        return None
    return html.P(
        [f"The probe of dictionary {shown}. Also probed: ", *others, "."],
        className="small text-muted",
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
    State(ids.SENSES_DICTIONARY, "data"),
    prevent_initial_call=True,
)
def pick_lemma(value: Any, dictionary: Any = None) -> Any:
    if not isinstance(value, str) or not value:
        return no_update
    return senses_href(value, dictionary if isinstance(dictionary, int) else None)
