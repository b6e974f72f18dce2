"""Compare two dictionaries: ``/compare?a=A&b=B&factor=F``.

The comparisons are made by ``factorscope compare A B`` (stored in the comparison
tables); this page reads them. The URL is the state: the pickers and the factor box
navigate (through ``ids.COMPARE_NAV``, a location inside the page) and the layout is
rebuilt from the URL, so every view can be shared. Links to factor pages carry
``dictionary=``, so each opens the factor of its own dictionary.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic
from factorscope.errors import FactorscopeError

dash.register_page(__name__, path="/compare", name="Compare", title="factorscope · compare")

PAIRS_SHOWN = 25
"""Matched pairs listed (the least stable first: where the dictionaries differ)."""


def compare_href(a: int, b: int, factor: int | None = None) -> str:
    params = {"a": int(a), "b": int(b)}
    if factor is not None:
        params["factor"] = int(factor)
    return f"/compare?{urlencode(params)}"


def _factor_link(factor: int, dictionary: int) -> dcc.Link:
    return dcc.Link(
        f"f{factor}",
        href=logic.factor_href(factor, dictionary=dictionary),
        title=f"factor {factor} of dictionary {dictionary}",
    )


def layout(
    a: str | None = None, b: str | None = None, factor: str | None = None, **_query: Any
) -> html.Div:
    db_path = config.db_path()
    try:
        overview = logic.compare_overview(db_path)
        chosen_a, chosen_b = logic.parse_pair(a, b)
    except FactorscopeError as e:
        return html.Div([html.H3("Compare dictionaries"), ui.error_alert(str(e))])
    made = overview["comparisons"]
    if (chosen_a is None or chosen_b is None) and made:
        chosen_a, chosen_b = made[0]["dictionary_a"], made[0]["dictionary_b"]
    parts: list[Any] = [
        html.H3("Compare dictionaries"),
        _pickers(overview["dictionaries"], chosen_a, chosen_b),
        _made_list(made, db_path),
    ]
    if chosen_a is not None and chosen_b is not None and made:
        parts.append(_pair_section(db_path, chosen_a, chosen_b, factor))
    return html.Div(parts)


def _pickers(dictionaries: list[dict], a: int | None, b: int | None) -> dbc.Row:
    options = [
        {
            "label": f"dictionary {d['dictionary_id']} · {d['n_factors']:,} factors"
            + (f" · seed {d['seed']}" if d.get("seed") is not None else "")
            + ("" if d["status"] == "encoded" else " · not encoded"),
            "value": d["dictionary_id"],
        }
        for d in dictionaries
    ]

    def picker(component_id: str, value: int | None, name: str) -> dbc.Col:
        return dbc.Col(
            [
                html.Div(name, className="small text-muted"),
                dcc.Dropdown(
                    id=component_id,
                    options=options,
                    value=value,
                    clearable=False,
                    searchable=False,
                    className="small",
                ),
            ],
            md=4,
        )

    return dbc.Row(
        [
            picker(ids.COMPARE_A, a, "Dictionary A"),
            picker(ids.COMPARE_B, b, "Dictionary B"),
            dcc.Location(id=ids.COMPARE_NAV, refresh="callback-nav"),
        ],
        className="mb-3",
    )


def _made_list(made: list[dict], db_path: Any) -> Any:
    if not made:
        return dbc.Alert(
            [
                "No comparison in this database yet. Learn several dictionaries "
                "(e.g. `factorscope learn -m 512,1024 --seed 0,1`), then compare two of them: ",
                html.Code(f"factorscope compare A B --db {db_path}"),
            ],
            color="info",
            id=ids.COMPARE_LIST,
        )
    rows = [
        html.Tr(
            [
                html.Td(
                    dcc.Link(
                        f"{c['dictionary_a']} ↔ {c['dictionary_b']}",
                        href=compare_href(c["dictionary_a"], c["dictionary_b"]),
                    )
                ),
                html.Td(f"{c['n_factors_a']:,} / {c['n_factors_b']:,}"),
                html.Td(f"{c['mean_cosine']:.3f}", className="text-end"),
                html.Td(f"{c['share_cosine_90']:.1%}", className="text-end"),
                html.Td(f"{c['n_splits']:,}", className="text-end"),
            ]
        )
        for c in made
    ]
    head = html.Thead(
        html.Tr(
            [
                html.Th("comparison (A ↔ B)"),
                html.Th("factors"),
                html.Th("mean cosine", className="text-end"),
                html.Th("≥ 0.9", className="text-end"),
                html.Th("splits / merges", className="text-end"),
            ]
        )
    )
    return dbc.Card(
        [
            dbc.CardHeader(["Comparisons made by ", html.Code("factorscope compare")]),
            dbc.CardBody(
                dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="mb-0"),
                id=ids.COMPARE_LIST,
            ),
        ],
        className="fs-card mb-3",
    )


def _pair_section(db_path: Any, a: int, b: int, factor: str | None) -> html.Div:
    try:
        pair = logic.compare_pair(db_path, a, b)
    except FactorscopeError as e:
        return dbc.Alert(str(e), color="info", id=ids.COMPARE_STATS)
    summary = pair["summary"]
    chosen = factor if factor is not None else _first_factor(pair)
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(_stats_card(summary), lg=5, className="mb-3"),
                    dbc.Col(_histogram_card(pair["cosines"]), lg=7, className="mb-3"),
                ]
            ),
            _side_by_side(db_path, a, b, chosen),
            dbc.Row(
                [
                    dbc.Col(_pairs_card(pair, a, b), lg=6, className="mb-3"),
                    dbc.Col(_splits_card(pair, summary, a, b), lg=6, className="mb-3"),
                ]
            ),
        ]
    )


def _first_factor(pair: dict) -> int | None:
    matches = pair["matches"]
    return int(matches["factor_a"][0]) if matches.height else None


def _stats_card(s: dict) -> dbc.Card:
    items = [
        ("Factors (A / B)", f"{s['n_factors_a']:,} / {s['n_factors_b']:,}"),
        ("Pairs matched one-to-one", f"{s['n_matched']:,}"),
        ("Mean matched cosine", f"{s['mean_cosine']:.3f}"),
        ("Matched with cosine ≥ 0.9", f"{s['share_cosine_90']:.1%}"),
        ("Matched with cosine ≥ 0.7", f"{s['share_cosine_70']:.1%}"),
        ("Co-activation of those pairs (mean Jaccard)", f"{s['mean_coactivation']:.3f}"),
        ("Matched by co-activation: mean Jaccard", f"{s['coact_mean']:.3f}"),
        ("Pairs both matchings agree on", f"{s['same_match_share']:.1%}"),
        ("Splits / merges", f"{s['n_splits']:,}"),
    ]
    if s.get("peak_agreement") is not None:
        items.append(("Same IS peak layer", f"{s['peak_agreement']:.1%}"))
        items.append(("Same level", f"{s['level_agreement']:.1%}"))
    rows = [
        html.Tr([html.Th(k, className="text-muted fw-normal"), html.Td(v, className="text-end")])
        for k, v in items
    ]
    return dbc.Card(
        [
            dbc.CardHeader(f"Stability: dictionary {s['dictionary_a']} vs {s['dictionary_b']}"),
            dbc.CardBody(
                dbc.Table(html.Tbody(rows), size="sm", className="mb-0"), id=ids.COMPARE_STATS
            ),
        ],
        className="fs-card h-100",
    )


def _histogram_card(cosines: list[float]) -> dbc.Card:
    figure = {
        "data": [
            {"type": "histogram", "x": cosines, "xbins": {"start": -1, "end": 1, "size": 0.05}}
        ],
        "layout": {
            "title": {"text": "Matched atom cosines"},
            "xaxis": {"title": {"text": "cosine"}, "range": [-0.05, 1.05]},
            "yaxis": {"title": {"text": "pairs"}},
            "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
            "height": 280,
        },
    }
    return dbc.Card(
        dbc.CardBody(ui.graph(ids.COMPARE_HIST, figure), className="p-1"), className="fs-card h-100"
    )


def _pairs_card(pair: dict, a: int, b: int) -> dbc.Card:
    matches = pair["matches"].sort(["cosine", "factor_a"]).head(PAIRS_SHOWN)
    rows = [
        html.Tr(
            [
                html.Td(_factor_link(int(r["factor_a"]), a)),
                html.Td(_factor_link(int(r["factor_b"]), b)),
                html.Td(f"{r['cosine']:.3f}", className="text-end"),
                html.Td(f"{r['coactivation']:.3f}", className="text-end"),
                html.Td(dcc.Link("side by side", href=compare_href(a, b, int(r["factor_a"])))),
            ]
        )
        for r in matches.iter_rows(named=True)
    ]
    head = html.Thead(
        html.Tr(
            [
                html.Th(f"A ({a})"),
                html.Th(f"B ({b})"),
                html.Th("cosine", className="text-end"),
                html.Th("co-activation", className="text-end"),
                html.Th(""),
            ]
        )
    )
    return dbc.Card(
        [
            dbc.CardHeader(f"Least stable matched pairs (of {pair['matches'].height:,})"),
            dbc.CardBody(
                dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="mb-0"),
                id=ids.COMPARE_PAIRS,
                className="fs-scroll",
            ),
        ],
        className="fs-card h-100",
    )


def _splits_card(pair: dict, summary: dict, a: int, b: int) -> dbc.Card:
    small, large = (a, b) if summary["split_side"] == "a" else (b, a)
    splits = pair["splits"]
    if splits.height == 0:
        body: Any = html.P(
            "No atom of the smaller dictionary is a sum of the other's atoms.",
            className="text-muted mb-0",
        )
    else:
        rows = [
            html.Tr(
                [
                    html.Td(r["kind"]),
                    html.Td(_factor_link(int(r["factor"]), small)),
                    html.Td(
                        [
                            html.Span(
                                [_factor_link(int(p["factor"]), large), f" × {p['weight']:.2f}"],
                                className="me-2",
                            )
                            for p in r["parts"]
                        ]
                    ),
                    html.Td(f"{r['residual']:.3f}", className="text-end"),
                ]
            )
            for r in splits.iter_rows(named=True)
        ]
        head = html.Thead(
            html.Tr(
                [
                    html.Th("kind"),
                    html.Th(f"factor ({small})"),
                    html.Th(f"= sum of ({large})"),
                    html.Th("residual", className="text-end"),
                ]
            )
        )
        body = dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="mb-0")
    return dbc.Card(
        [
            dbc.CardHeader(f"Splits and merges ({splits.height:,})"),
            dbc.CardBody(body, id=ids.COMPARE_SPLITS, className="fs-scroll"),
        ],
        className="fs-card h-100",
    )


def _side_by_side(db_path: Any, a: int, b: int, factor: Any) -> dbc.Card:
    box = dbc.InputGroup(
        [
            dbc.InputGroupText(f"Factor of A ({a})"),
            dbc.Input(
                id=ids.COMPARE_FACTOR,
                type="text",
                inputMode="numeric",
                value="" if factor is None else str(factor),
                autoComplete="off",
            ),
            dbc.Button("Show", id=ids.COMPARE_GO, color="primary"),
        ],
        size="sm",
        className="mb-2",
    )
    store = dcc.Store(id=ids.COMPARE_SIDE + "-state", data={"a": a, "b": b})
    feedback = html.Div(id=ids.COMPARE_FEEDBACK + "-box", className="small text-danger")
    content: Any = html.P(
        "Pick a factor of A (or a pair below) to see it beside its match.",
        className="small text-muted",
    )
    if factor is not None:
        content = _side_content(db_path, a, b, factor)
    return dbc.Card(
        [
            dbc.CardHeader("A factor and its match, side by side"),
            dbc.CardBody([box, feedback, content, store], id=ids.COMPARE_SIDE),
        ],
        className="fs-card mb-3",
    )


def _side_content(db_path: Any, a: int, b: int, factor: Any) -> Any:
    try:
        view = logic.compare_factor(db_path, a, b, factor)
    except FactorscopeError as e:
        return html.Div(str(e), className="small text-danger", id=ids.COMPARE_FEEDBACK)
    how = "matched one-to-one" if view["matched"] else "best match (not matched one-to-one)"
    coact = view["coactivation"]
    return html.Div(
        [
            html.P(
                f"Factor {view['factor_a']} of {a} ↔ factor {view['factor_b']} of {b}: {how}, "
                f"cosine {view['cosine']:.3f}"
                + (f", co-activation {coact:.3f}" if coact is not None else ""),
                className="small",
                id=ids.COMPARE_FEEDBACK,
            ),
            dbc.Row(
                [dbc.Col(_side_column(view["a"]), md=6), dbc.Col(_side_column(view["b"]), md=6)]
            ),
        ]
    )


def _side_column(side: dict) -> html.Div:
    title = html.H5(
        [
            _factor_link(side["factor"], side["dictionary"]),
            f" of dictionary {side['dictionary']} ",
            ui.level_badge(side.get("level")),
        ]
    )
    if not side["encoded"]:
        return html.Div(
            [
                title,
                html.P(
                    f"Dictionary {side['dictionary']} is not encoded: run `factorscope encode "
                    f"--dictionary {side['dictionary']}` to see its contexts and IS curve.",
                    className="small text-muted",
                ),
            ]
        )
    peak = side.get("peak_layer")
    return html.Div(
        [
            title,
            html.Div(
                [
                    html.Span(f"label: {side.get('label') or '–'}", className="me-3"),
                    html.Span(f"IS peak layer: {peak if peak is not None else '–'}"),
                ],
                className="small text-muted mb-1",
            ),
            ui.graph(
                f"{ids.COMPARE_SIDE}-is-{side['dictionary']}",
                ui.importance_figure(
                    side["importance"], factor=side["factor"], layer=side["layer"]
                ),
            ),
            html.Div(f"Top contexts at layer {side['layer']}", className="small fw-semibold"),
            ui.contexts_table(side["top"]) if side.get("top") is not None else html.Div(),
        ]
    )


@callback(
    Output(ids.COMPARE_NAV, "href"),
    Input(ids.COMPARE_A, "value"),
    Input(ids.COMPARE_B, "value"),
    State(ids.COMPARE_NAV, "search"),
    prevent_initial_call=True,
)
def pick_pair(a: Any, b: Any, search: Any) -> Any:
    """Navigate to the chosen pair (the page says which command makes it if missing)."""
    if a is None or b is None:
        return no_update
    current = f"?a={int(a)}&b={int(b)}"
    if search and str(search).startswith(current):
        return no_update
    return compare_href(a, b)


@callback(
    Output(ids.COMPARE_NAV, "href", allow_duplicate=True),
    Output(ids.COMPARE_FEEDBACK + "-box", "children"),
    Input(ids.COMPARE_GO, "n_clicks"),
    Input(ids.COMPARE_FACTOR, "n_submit"),
    State(ids.COMPARE_FACTOR, "value"),
    State(ids.COMPARE_SIDE + "-state", "data"),
    prevent_initial_call=True,
)
def show_factor(clicks: Any, submit: Any, raw: Any, state: dict | None) -> tuple[Any, Any]:
    if not (clicks or submit) or not state:
        return no_update, no_update
    text = str(raw or "").strip()
    if not text.isdigit():
        return no_update, f"{text!r} is not a factor number." if text else "Enter a factor number."
    return compare_href(state["a"], state["b"], int(text)), ""
