"""Factor explorer: ``/factor/<c>?layer=L&dictionary=D`` (``/`` shows a default factor).

``dictionary`` picks one of the encoded dictionaries (default: the last encoded one);
the navbar's picker (``navigation``) navigates to another dictionary, and every link and
callback of the page carries it (in ``ids.FACTOR_STATE``), so a shared link shows the
same factor of the same dictionary.

Beside the contexts, the Explanation card gives what ``factorscope explain`` found at
the layer shown (the best short rule, its held-out detection with its interval and the
other scores) and what the dictionary's random controls score at that layer; when
nothing was explained, or there is no control, it names the command to run.

The Effects card says what the factor *does* at the layer shown: what removing it at
its top contexts changes (for the default MiniLM, which has no language-model head, the
sentence embedding and the same tokens' last layer; with a head, the output tokens it
promotes and suppresses and its direct effect), each beside the control (a random
direction of the same norm) and beside its neighbours' effects. ``factorscope effects``
stores every factor at its peak layer; any other layer is measured on demand by the
card's button, in the background (``effect_jobs``, polled like LIME), and stored, so a
reload reads it. Nothing is measured when the page loads.

The URL is the page's state: typing a factor, switching layers or pressing a random
button navigates (without a reload) to the new URL, and the layout is rebuilt from it,
so every view can be shared as a link.

One round trip per view: the page router's callback returns the whole page (its data
comes from :func:`logic.factor_view`, cached per file version, factor and layer). The
page's own callbacks navigate through a ``dcc.Location`` inside the page
(``ids.FACTOR_NAV``), not the app's: Dash calls a ``prevent_initial_call`` callback
when the page is inserted if its output lives outside the page, which cost three
extra requests per view. The layer buttons navigate in the browser (a clientside
callback reading the links the server put in ``ids.FACTOR_STATE``).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, clientside_callback, ctx, dcc, html, no_update

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, effect_jobs, ids, lime_jobs, logic, navigation
from factorscope.errors import FactorscopeError, InputError
from factorscope.palette import LEVEL_THEME

dash.register_page(
    __name__,
    path="/",
    path_template="/factor/<factor>",
    redirect_from=["/factor"],
    name="Factors",
    title="factorscope · factor",
)

LIME_COUNT_DEFAULT = 3

_RENDERED: weakref.WeakKeyDictionary[logic.FactorView, dict[Any, Any]] = weakref.WeakKeyDictionary()
_RENDERED_LOCK = threading.Lock()


def _rendered(view: logic.FactorView, part: Any, build: Callable[[], Any]) -> Any:
    """A part of the page drawn from ``view``, drawn once per view.

    Building Dash components and serialising them took most of a cached view's time
    (7 ms of 9). The parts are kept, in wire form, as long as the cached view lives
    and are only read afterwards, so requests on several threads can share them.
    """
    with _RENDERED_LOCK:
        parts = _RENDERED.setdefault(view, {})
        if part in parts:
            return parts[part]
    built = build()
    with _RENDERED_LOCK:
        return parts.setdefault(part, built)


def layout(
    factor: str | None = None,
    layer: str | None = None,
    dictionary: str | None = None,
    **_query: Any,
) -> html.Div:
    db_path = config.db_path()
    try:
        with logic.dictionary_scope(dictionary):
            if factor is None:
                factor = logic.default_factor(db_path)
            view = logic.factor_view(db_path, factor, layer)
            # Everything but the LIME card (which may start a job per visit) is drawn
            # once per cached view and kept in the form Dash sends (ui.wire).
            before, after = _rendered(view, "page", lambda: _static_parts(view))
            effects = _effects_card(view)
            lime = _lime_card(view)
    except FactorscopeError as e:
        return html.Div(
            [_header(factor, None), ui.error_alert(str(e), id=ids.FACTOR_FEEDBACK + "-page")]
        )
    return html.Div([*before, effects, lime, *after])


def _static_parts(view: logic.FactorView) -> tuple[list[Any], list[Any]]:
    before = [
        _header(view.factor, view.n_factors, view.dictionary_id),
        _title(view),
        _layer_bar(view),
        dbc.Row(
            [
                dbc.Col(_contexts_card(view), lg=7, className="mb-3"),
                dbc.Col(_side_cards(view), lg=5, className="mb-3"),
            ]
        ),
    ]
    after = [
        dbc.Card(
            [
                dbc.CardHeader("Contexts sampled from activation intervals"),
                dbc.CardBody(
                    ui.intervals_block(view.intervals, view.interval_bounds), id=ids.INTERVALS
                ),
            ],
            className="mb-3 fs-card",
        )
    ]
    return ui.wire(before), ui.wire(after)


# --------------------------------------------------------------------------- layout parts


def _header(
    factor: Any,
    n_factors: int | None,
    shown: int | None = None,
) -> dbc.Row:
    hint = f"0 – {n_factors - 1}" if n_factors else "factor number"
    return dbc.Row(
        [
            dbc.Col(
                [
                    dbc.InputGroup(
                        [
                            dbc.InputGroupText("Factor"),
                            dbc.Input(
                                id=ids.FACTOR_INPUT,
                                type="text",
                                inputMode="numeric",
                                value=str(factor) if factor is not None else "",
                                placeholder=hint,
                                debounce=False,
                                autoComplete="off",
                            ),
                            dbc.Button("Go", id=ids.FACTOR_GO, color="primary"),
                        ],
                        size="sm",
                    ),
                    html.Div(id=ids.FACTOR_FEEDBACK, className="small text-danger mt-1"),
                ],
                md=5,
                lg=4,
            ),
            dbc.Col(
                navigation.dictionary_badge(shown) if shown is not None else None,
                md=3,
                lg=3,
                className="pt-1",
            ),
            dbc.Col(
                [
                    html.Span("Random factor: ", className="small text-muted me-2"),
                    dbc.ButtonGroup(
                        [
                            dbc.Button(
                                "low", id=ids.RANDOM_LOW, color=LEVEL_THEME["low"], outline=True
                            ),
                            dbc.Button(
                                "mid", id=ids.RANDOM_MID, color=LEVEL_THEME["mid"], outline=True
                            ),
                            dbc.Button(
                                "high", id=ids.RANDOM_HIGH, color=LEVEL_THEME["high"], outline=True
                            ),
                        ],
                        size="sm",
                    ),
                    html.Div(id=ids.RANDOM_FEEDBACK, className="small text-danger mt-1"),
                ],
                md=4,
                lg=5,
                className="text-md-end mt-2 mt-md-0",
            ),
            dcc.Location(id=ids.FACTOR_NAV, refresh="callback-nav"),
        ],
        className="mb-3 align-items-start",
    )


AUTO_LABEL_TIP = (
    "Automatic label: the three most frequent words of this factor's top contexts at its "
    "peak layer, not reviewed by a person. Type your own label in the box to describe it."
)

EXPLAINED_LABEL_TIP = (
    "Automatic label: the short rule that best explains this factor at its peak layer "
    "{layer} (held-out detection {detection}; `factorscope explain`), not reviewed by a "
    "person. Type your own label in the box to describe it."
)


def _auto_label_tip(view: logic.FactorView) -> str:
    """How the automatic label was made: the explanation at the peak layer, when the
    label is that rule, else the top words."""
    found = view.evidence.peak_explanation if view.evidence else None
    if found is None or found["text"] != view.auto_label:
        return AUTO_LABEL_TIP
    return EXPLAINED_LABEL_TIP.format(
        layer=view.peak_layer, detection=ui.number(found.get("detection"))
    )


def _label_count(label: str) -> str:
    return f"{len(label.strip())} / {logic.MAX_LABEL_LENGTH}"


def _title(view: logic.FactorView) -> dbc.Row:
    """The factor's name, level and peak; the Label box holds only the user's label,
    the automatic one is shown beside it, marked "auto" (a tooltip says how it is made)."""
    peak = f"IS peaks at layer {view.peak_layer}" if view.peak_layer is not None else ""
    user = view.user_label or ""
    auto = (
        html.Span(
            f"auto: {view.auto_label}",
            id=ids.LABEL_AUTO,
            title=_auto_label_tip(view),
            className="small text-muted fs-auto-label me-3",
        )
        if view.auto_label
        else html.Span(id=ids.LABEL_AUTO, className="d-none")
    )
    return dbc.Row(
        [
            dbc.Col(
                [
                    html.H3(
                        [f"Factor {view.factor}", ui.level_badge(view.level)],
                        className="mb-0",
                        id=ids.LEVEL_BADGE,
                    ),
                    html.Div(peak, className="small text-muted"),
                ],
                md=5,
            ),
            dbc.Col(
                [
                    dbc.InputGroup(
                        [
                            dbc.InputGroupText("Label"),
                            # No maxLength: the browser would cut a longer paste silently;
                            # the server refuses it with the length and the limit instead.
                            dbc.Input(
                                id=ids.LABEL_INPUT,
                                value=user,
                                placeholder=(
                                    "describe this factor "
                                    f"(up to {logic.MAX_LABEL_LENGTH} characters)"
                                ),
                                autoComplete="off",
                            ),
                            dbc.Button("Save", id=ids.LABEL_SAVE, color="secondary"),
                        ],
                        size="sm",
                    ),
                    html.Div(
                        [
                            auto,
                            html.Span(
                                _label_count(user),
                                id=ids.LABEL_COUNT,
                                className="small text-muted ms-auto",
                                title="characters of your label / the most a label may have",
                            ),
                        ],
                        className="d-flex align-items-baseline mt-1",
                    ),
                    html.Div(id=ids.LABEL_FEEDBACK, className="small text-success mt-1"),
                ],
                md=7,
            ),
        ],
        className="mb-3 align-items-center",
    )


def _layer_bar(view: logic.FactorView) -> html.Div:
    return html.Div(
        [
            html.Span("Layer ", className="small text-muted me-2"),
            dbc.RadioItems(
                id=ids.LAYER_SELECT,
                options=[{"label": str(layer), "value": layer} for layer in view.layers],
                value=view.layer,
                inline=True,
                className="btn-group fs-layer-group",
                inputClassName="btn-check",
                labelClassName="btn btn-outline-primary btn-sm",
                labelCheckedClassName="active",
            ),
            dcc.Store(
                id=ids.FACTOR_STATE,
                data={
                    "factor": view.factor,
                    "layer": view.layer,
                    "dictionary": logic.current_dictionary(),
                    "shown": view.dictionary_id,
                    # where each layer button leads (read by the clientside callback)
                    "hrefs": {str(x): logic.factor_href(view.factor, x) for x in view.layers},
                },
            ),
        ],
        className="mb-3 d-flex align-items-center flex-wrap",
    )


def _contexts_card(view: logic.FactorView) -> dbc.Card:
    pages = max(1, -(-view.total_contexts // logic.CONTEXTS_PER_PAGE))
    return dbc.Card(
        [
            dbc.CardHeader(
                [
                    html.Span(f"Top contexts at layer {view.layer}"),
                    html.Span(
                        f"{view.total_contexts} contexts",
                        id=ids.CONTEXTS_TOTAL,
                        className="badge text-bg-light ms-2",
                    ),
                ]
            ),
            dbc.CardBody(
                [
                    dbc.Pagination(
                        id=ids.CONTEXTS_PAGE,
                        max_value=pages,
                        active_page=1,
                        size="sm",
                        fully_expanded=True,
                        className="mb-2",
                    ),
                    dcc.Loading(
                        html.Div(ui.contexts_table(view.contexts), id=ids.CONTEXTS_TABLE),
                        type="dot",
                        delay_show=300,
                    ),
                ]
            ),
        ],
        className="fs-card h-100",
    )


def _side_cards(view: logic.FactorView) -> html.Div:
    return html.Div(
        [
            _explanation_card(view),
            dbc.Card(
                dbc.CardBody(
                    ui.graph(
                        ids.IS_GRAPH,
                        ui.importance_figure(
                            view.importance,
                            factor=view.factor,
                            layer=view.layer,
                            level=view.level,
                            clickable=True,
                        ),
                    ),
                    className="p-1",
                ),
                className="mb-3 fs-card",
            ),
            dbc.Card(
                dbc.CardBody(
                    ui.graph(ids.HIST_GRAPH, ui.histogram_figure(view.histogram, layer=view.layer)),
                    className="p-1",
                ),
                className="mb-3 fs-card",
            ),
            dbc.Card(
                [
                    dbc.CardHeader("Neighbours"),
                    dbc.CardBody(
                        ui.neighbors_table(view.neighbors, layer=view.layer), id=ids.NEIGHBORS
                    ),
                ],
                className="fs-card",
            ),
        ]
    )


# --------------------------------------------------------------------------- explanation


def _explanation_card(view: logic.FactorView) -> dbc.Card:
    """What ``factorscope explain`` says about the factor at the layer shown, beside its
    dictionary's controls at that layer; every empty state names the command to run."""
    evidence = view.evidence
    shown = view.dictionary_id
    header = dbc.CardHeader(
        [
            html.Span(f"Explanation at layer {view.layer}"),
            html.Span(f"dictionary {shown}", className="badge text-bg-light ms-2"),
            dcc.Link(
                "evidence for the dictionary",
                href=logic.evidence_href(),
                className="small float-end",
            ),
        ]
    )
    if evidence is None or not evidence.explained_layers:
        body = [
            html.P(
                [
                    f"No explanations for dictionary {shown} yet: run ",
                    ui.command(logic.explain_command(shown)),
                    " to fit a short rule for every factor (on training sentences) and "
                    "score it on held-out sentences, then reload this page.",
                ],
                className="small text-muted mb-0",
            )
        ]
    elif evidence.explanation is None:
        body = [
            html.P(
                [
                    f"Layer {view.layer} of dictionary {shown} was not explained: run ",
                    ui.command(logic.explain_command(shown)),
                    " (it resumes where it stopped).",
                ],
                className="small text-muted mb-0",
            )
        ]
    else:
        body = [*_explanation_body(evidence.explanation), _controls_line(evidence)]
    return dbc.Card([header, dbc.CardBody(body, id=ids.EXPLANATION)], className="mb-3 fs-card")


def _explanation_body(found: dict[str, Any]) -> list[Any]:
    detection = found.get("detection")
    held_out = f"{int(found['n_active_train']):,} active tokens in training"
    if found.get("n_active") is not None:
        held_out = f"{int(found['n_active']):,} active tokens held out"
        if found.get("n_sentences"):
            held_out += f" in {int(found['n_sentences']):,} sentences"
        held_out += f"; {int(found['n_active_train']):,} in training"
    if not found["explained"]:
        lines = [html.P(found["text"], className="mb-1 fst-italic", title=EXPLAIN_TIP)]
        if detection is not None:  # the best rule, scored though it fell short
            lines.append(
                html.Div(
                    "its best rule on held-out sentences: detection "
                    + ui.interval_text(
                        detection, found.get("detection_low"), found.get("detection_high")
                    )
                    + " (chance 0.50)",
                    className="small text-muted",
                )
            )
        lines.append(html.Div(held_out, className="small text-muted mb-2"))
        return lines
    scores = [
        (
            "detection",
            ui.interval_text(detection, found.get("detection_low"), found.get("detection_high"))
            + " (chance 0.50)",
            "balanced accuracy of the rule as a detector of the factor's active tokens on "
            "held-out sentences, each activation quintile weighted the same; 95% interval",
        ),
        (
            "top quintile",
            ui.number(found.get("detection_top")),
            "the same detection for the factor's strongest fifth of activations alone",
        ),
        ("AUROC", ui.number(found.get("auroc")), "ranked by how many of the rule's terms hold"),
        (
            "precision",
            ui.number(found.get("precision")),
            "of the tokens the rule picks, the share where the factor is active",
        ),
        (
            "localisation",
            f"{ui.number(found.get('localisation'))} "
            f"(chance {ui.number(found.get('localisation_chance'))})",
            "does the rule pick the sentence's most active token; chance: a token at random",
        ),
    ]
    return [
        html.P(found["text"], className="fs-5 fw-semibold mb-1", title=EXPLAIN_TIP),
        html.Div(
            [
                html.Span(
                    [html.Span(f"{name} ", className="text-muted"), value],
                    className="me-3 text-nowrap",
                    title=tip,
                )
                for name, value, tip in scores
            ],
            className="small d-flex flex-wrap",
        ),
        html.Div(held_out, className="small text-muted mb-2"),
    ]


EXPLAIN_TIP = (
    "The best rule of one or two token features (word, lemma, part of speech, WordNet "
    "class, neighbouring word, position), chosen on training sentences and scored on "
    "held-out sentences never seen when it was chosen (`factorscope explain`)."
)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _controls_line(evidence: logic.FactorEvidence) -> html.Div:
    """The controls' detection at this layer, or why there is none to compare with."""
    shown = evidence.dictionary_id
    controls = evidence.controls
    if evidence.kind == "control":
        parts: list[Any] = [
            f"Dictionary {shown} is a control (random atoms) of dictionary "
            f"{evidence.parent_id}: its rules are the baseline a learned factor is judged by."
        ]
    elif not controls["controls"]:
        commands = logic.control_commands(shown)
        parts = [
            "No control dictionary to compare with: ",
            ui.command(commands[0]),
            ", then ",
            ui.command(commands[1]),
            " (N: the control's id) and ",
            ui.command(commands[2]),
            ".",
        ]
    elif not controls["n_scored"]:
        which = ", ".join(map(str, controls["controls"]))
        parts = [
            f"The controls ({_plural(len(controls['controls']), 'dictionary', 'dictionaries')} "
            f"{which}) are not explained at layer {evidence.layer}: run ",
            ui.command(logic.explain_command(shown)),
            ".",
        ]
    else:
        which = ", ".join(map(str, controls["explained"]))
        noun = "dictionary" if len(controls["explained"]) == 1 else "dictionaries"
        parts = [
            f"Controls' 95th percentile at layer {evidence.layer}: "
            f"{ui.number(controls['p95'])} (median {ui.number(controls['median'])}; "
            f"{_plural(controls['n_scored'], 'control factor')}, {noun} {which})."
        ]
        detection = (evidence.explanation or {}).get("detection")
        if detection is not None and controls["p95"] is not None:
            above = detection > controls["p95"]
            parts.append(
                " This factor's detection is above it."
                if above
                else " This factor's rule does no better than the controls' 95th percentile."
            )
    return html.Div(parts, id=ids.EXPLANATION_CONTROLS, className="small border-top pt-2")


# --------------------------------------------------------------------------- effects


def _effects_card(view: logic.FactorView) -> Any:
    """What the factor does at the layer shown: its stored effect (``factorscope
    effects``, or measured here before), else a button that measures it in the
    background (:mod:`effect_jobs`). Drawn once per view, except a result this process
    measured on a file it could not store it in."""
    fx = view.effects
    if fx is None:
        return html.Div()
    if fx.effect is None:
        found = effect_jobs.recent(config.db_path(), fx.dictionary_id, fx.factor, fx.layer)
        if found is not None:
            return _draw_effects_card(view, found)
    return _rendered(view, "effects", lambda: ui.wire(_draw_effects_card(view, fx.effect)))


def _headline(kind: str | None) -> str:
    return "embedding_shift" if kind in (None, "sentence-embedding") else "output_kl"


def _effect_output(view: logic.FactorView, effect: dict | None) -> Any:
    fx = view.effects
    if effect is not None:
        return ui.effect_body(
            effect, headline=_headline(effect["output_kind"]), neighbors=fx.neighbors
        )
    if not view.total_contexts:
        return html.P(
            f"Factor {view.factor} is never active at layer {view.layer}: there is nothing "
            "to remove there.",
            className="text-muted mb-0",
        )
    peak = f" (layer {view.peak_layer} for this factor)" if view.peak_layer is not None else ""
    stored = [int(x) for x in fx.layers["layer"].to_list()] if fx.layers.height else []
    parts: list[Any] = [
        html.Div(
            [
                dbc.Button(
                    f"Measure at layer {view.layer}",
                    id=ids.EFFECTS_RUN,
                    color="primary",
                    size="sm",
                    className="me-2",
                ),
                html.Span(
                    "removes the factor at its top contexts and, as the control, a random "
                    "direction of the same norm (about a second)",
                    className="small text-muted",
                ),
            ],
            className="mb-2",
        ),
        html.P(
            [
                ui.command(logic.EFFECTS_COMMAND),
                f" measures every factor at its peak layer{peak}.",
            ]
            + (
                [
                    " Stored for this factor at layer ",
                    *_layer_links(view, stored),
                    ".",
                ]
                if stored
                else []
            ),
            className="small text-muted mb-2",
        ),
    ]
    if not fx.tables:
        parts.append(
            html.P(
                "This file was made before the effect tables existed: a measurement is "
                "kept by this server until the file is replaced, not stored in it.",
                className="small text-muted mb-2",
            )
        )
    parts.append(html.H6("Neighbours' effects", className="mt-2 mb-1"))
    parts.append(ui.neighbor_effects_table(fx.neighbors, None))
    return html.Div(parts)


def _layer_links(view: logic.FactorView, layers: list[int]) -> list[Any]:
    out: list[Any] = []
    for i, x in enumerate(layers):
        if i:
            out.append(", ")
        out.append(dcc.Link(str(x), href=logic.factor_href(view.factor, x)))
    return out


def _draw_effects_card(view: logic.FactorView, effect: dict | None) -> dbc.Card:
    fx = view.effects
    kind = effect["output_kind"] if effect is not None else fx.output_kind
    return dbc.Card(
        [
            dbc.CardHeader(
                [
                    html.Span(f"Effects at layer {view.layer}"),
                    html.Span(
                        "what removing the factor does to the model",
                        className="small text-muted ms-2",
                    ),
                    dcc.Link(
                        f"Steer with f{view.factor} on the Analyze page",
                        id=ids.EFFECTS_STEER,
                        href=logic.steer_href(view.factor, view.layer),
                        className="small float-end",
                    ),
                ]
            ),
            dbc.CardBody(
                [
                    ui.output_kind_note(kind, logic.OUTPUT_KIND_TEXT, id=ids.EFFECTS_KIND),
                    html.Div(_effect_output(view, effect), id=ids.EFFECTS_OUTPUT),
                    html.Div(id=ids.EFFECTS_FEEDBACK, className="small mt-1"),
                    dcc.Store(id=ids.EFFECTS_JOB),
                    dcc.Interval(id=ids.EFFECTS_POLL, interval=300, disabled=True),
                ],
                id=ids.EFFECTS,
            ),
        ],
        className="mb-3 fs-card",
    )


# Over 80 lines: one declarative Dash layout (controls, progress, results); no logic to split out.
def _lime_card(view: logic.FactorView) -> dbc.Card:
    cfg = config.get_config()
    job_id = None
    if view.level == "high" and cfg.lime_auto_contexts > 0 and view.total_contexts:
        try:
            job_id = _start_lime(
                view.factor, view.layer, cfg.lime_auto_contexts, cfg.lime_default_samples
            )
        except FactorscopeError:
            job_id = None  # the button still offers it, with the error shown then
    return dbc.Card(
        [
            dbc.CardHeader("LIME saliency of the top contexts"),
            dbc.CardBody(
                [
                    html.P(
                        "Which words make this factor fire? Each sample replaces some words "
                        "by [UNK] and re-encodes the sentence; a ridge fit gives every word "
                        "a weight.",
                        className="small text-muted mb-2",
                    ),
                    dbc.Row(
                        [
                            dbc.Col(
                                dbc.InputGroup(
                                    [
                                        dbc.InputGroupText("samples"),
                                        dbc.Input(
                                            id=ids.LIME_SAMPLES,
                                            type="number",
                                            min=10,
                                            max=10000,
                                            step=10,
                                            value=cfg.lime_default_samples,
                                        ),
                                    ],
                                    size="sm",
                                ),
                                xs=6,
                                md=3,
                            ),
                            dbc.Col(
                                dbc.InputGroup(
                                    [
                                        dbc.InputGroupText("contexts"),
                                        dbc.Input(
                                            id=ids.LIME_COUNT,
                                            type="number",
                                            min=1,
                                            max=10,
                                            step=1,
                                            value=LIME_COUNT_DEFAULT,
                                        ),
                                    ],
                                    size="sm",
                                ),
                                xs=6,
                                md=3,
                            ),
                            dbc.Col(
                                dbc.Button(
                                    "Explain with LIME", id=ids.LIME_RUN, color="primary", size="sm"
                                ),
                                md=3,
                                className="mt-2 mt-md-0",
                            ),
                        ],
                        className="mb-2 g-2",
                    ),
                    html.Div(id=ids.LIME_FEEDBACK, className="small text-danger"),
                    dbc.Progress(
                        id=ids.LIME_PROGRESS,
                        value=0,
                        striped=True,
                        animated=True,
                        className="mb-2" if job_id else "mb-2 d-none",
                    ),
                    ui.lime_legend(),
                    html.Div(id=ids.LIME_OUTPUT),
                    dcc.Store(id=ids.LIME_JOB, data=job_id),
                    dcc.Interval(id=ids.LIME_POLL, interval=500, disabled=job_id is None),
                ]
            ),
        ],
        className="mb-3 fs-card",
    )


def _start_lime(factor: int, layer: int, count: int, n_samples: int) -> str:
    cfg = config.get_config()
    targets = logic.lime_targets(cfg.db_path, factor, layer, count=count)
    # The page's dictionary, bound now: the job runs on a worker thread outside the scope.
    get_analyzer = functools.partial(cfg.analyzer, logic.current_dictionary())
    return lime_jobs.start(cfg.db_path, get_analyzer, targets, n_samples)


# --------------------------------------------------------------------------- callbacks


@callback(
    Output(ids.FACTOR_NAV, "href", allow_duplicate=True),
    Output(ids.FACTOR_FEEDBACK, "children"),
    Input(ids.FACTOR_GO, "n_clicks"),
    Input(ids.FACTOR_INPUT, "n_submit"),
    State(ids.FACTOR_INPUT, "value"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def go_to_factor(clicks: Any, submit: Any, raw: Any, state: dict | None = None) -> tuple[Any, str]:
    if not clicks and not submit:  # only a real click or Enter (a count) navigates
        return no_update, no_update
    try:
        with logic.dictionary_scope(_dictionary_of(state)):
            factor = logic.parse_factor(raw, logic.dictionary_size(config.db_path()))
            return logic.factor_href(factor), ""
    except InputError as e:
        return no_update, str(e)


def _dictionary_of(state: dict | None) -> Any:
    """The dictionary the rendered page shows (None: the default)."""
    return (state or {}).get("dictionary")


@callback(
    Output(ids.FACTOR_NAV, "href", allow_duplicate=True),
    Output(ids.RANDOM_FEEDBACK, "children"),
    Input(ids.RANDOM_LOW, "n_clicks"),
    Input(ids.RANDOM_MID, "n_clicks"),
    Input(ids.RANDOM_HIGH, "n_clicks"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def random_factor(low: Any, mid: Any, high: Any, state: dict | None = None) -> tuple[Any, str]:
    buttons = {ids.RANDOM_LOW: "low", ids.RANDOM_MID: "mid", ids.RANDOM_HIGH: "high"}
    level = buttons.get(ctx.triggered_id)
    if level is None or not any((low, mid, high)):  # the page was inserted, nothing clicked
        return no_update, no_update
    try:
        with logic.dictionary_scope(_dictionary_of(state)):
            factor = logic.pick_random(config.db_path(), level)
            return logic.factor_href(factor), ""
    except InputError as e:
        return no_update, str(e)


clientside_callback(
    """
    function (layer, state) {
        if (!state || layer === null || layer === undefined || Number(layer) === state.layer) {
            return window.dash_clientside.no_update;
        }
        return (state.hrefs || {})[String(layer)] || window.dash_clientside.no_update;
    }
    """,
    Output(ids.FACTOR_NAV, "href", allow_duplicate=True),
    Input(ids.LAYER_SELECT, "value"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)


IS_CLICK_JS = """
function (click, state) {
    const point = click && click.points && click.points[0];
    if (!point || !state || Number(point.x) === state.layer) {
        return window.dash_clientside.no_update;
    }
    return (state.hrefs || {})[String(point.x)] || window.dash_clientside.no_update;
}
"""
"""A click on a point of the IS curve shows that layer: the link the server put in
``ids.FACTOR_STATE`` for it, as the layer buttons do (in the browser, no round trip)."""

clientside_callback(
    IS_CLICK_JS,
    Output(ids.FACTOR_NAV, "href", allow_duplicate=True),
    Input(ids.IS_GRAPH, "clickData"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)


clientside_callback(
    f"""
    function (value) {{
        const n = [...String(value || "").trim()].length;  // characters, as Python counts
        const over = n > {logic.MAX_LABEL_LENGTH};
        return [
            n + " / {logic.MAX_LABEL_LENGTH}",
            "small ms-auto " + (over ? "text-danger fw-semibold" : "text-muted"),
        ];
    }}
    """,
    Output(ids.LABEL_COUNT, "children"),
    Output(ids.LABEL_COUNT, "className"),
    Input(ids.LABEL_INPUT, "value"),
    prevent_initial_call=True,
)


@callback(
    Output(ids.CONTEXTS_TABLE, "children"),
    Input(ids.CONTEXTS_PAGE, "active_page"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def show_contexts_page(page: Any, state: dict | None) -> Any:
    if not state:
        return no_update
    try:
        with logic.dictionary_scope(_dictionary_of(state)):
            frame = logic.contexts_page(
                config.db_path(), state["factor"], state["layer"], page or 1
            )
            view = logic.cached_view(config.db_path(), state["factor"], state["layer"])
    except FactorscopeError as e:
        return ui.error_alert(str(e))
    if view is None:
        return ui.contexts_table(frame)
    return _rendered(view, ("contexts", int(page or 1)), lambda: ui.wire(ui.contexts_table(frame)))


@callback(
    Output(ids.LABEL_FEEDBACK, "children"),
    Output(ids.LABEL_FEEDBACK, "className"),
    Input(ids.LABEL_SAVE, "n_clicks"),
    Input(ids.LABEL_INPUT, "n_submit"),
    State(ids.LABEL_INPUT, "value"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def save_label(_clicks: Any, _submit: Any, label: Any, state: dict | None) -> tuple[str, str]:
    if not state:
        return no_update, no_update
    try:
        with logic.dictionary_scope(_dictionary_of(state)):
            message = logic.save_label(config.db_path(), state["factor"], label)
    except FactorscopeError as e:
        return str(e), "small text-danger mt-1"
    return message, "small text-success mt-1"


@callback(
    Output(ids.LIME_JOB, "data"),
    Output(ids.LIME_POLL, "disabled"),
    Output(ids.LIME_FEEDBACK, "children"),
    Input(ids.LIME_RUN, "n_clicks"),
    State(ids.LIME_SAMPLES, "value"),
    State(ids.LIME_COUNT, "value"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def run_lime(_clicks: Any, samples: Any, count: Any, state: dict | None) -> tuple[Any, Any, str]:
    if not state:
        return no_update, no_update, ""
    try:
        n_samples = logic.parse_n_samples(samples)
        n_contexts = logic.parse_n_samples(count, low=1, high=10, name="Contexts")
        with logic.dictionary_scope(_dictionary_of(state)):
            job_id = _start_lime(state["factor"], state["layer"], n_contexts, n_samples)
    except FactorscopeError as e:
        return no_update, no_update, str(e)
    return job_id, False, ""


@callback(
    Output(ids.LIME_PROGRESS, "value"),
    Output(ids.LIME_PROGRESS, "label"),
    Output(ids.LIME_PROGRESS, "className"),
    Output(ids.LIME_OUTPUT, "children"),
    Output(ids.LIME_POLL, "disabled", allow_duplicate=True),
    Input(ids.LIME_POLL, "n_intervals"),
    State(ids.LIME_JOB, "data"),
    prevent_initial_call=True,
)
def poll_lime(_n: Any, job_id: str | None) -> tuple:
    state = lime_jobs.status(job_id)
    if state is None:
        return 0, "", "mb-2 d-none", no_update, True
    percent = round(100 * state["done"] / state["total"])
    maps: list[Any] = []
    for result in state["results"]:
        word = result.get("word") or ""
        piece = result.get("target_piece") or ""
        if word:
            # the ranked token may be a later piece of its word (“leaving” at “##ing”)
            shown = f"“{word}”" if piece in ("", word.lower()) else f"“{word}” at “{piece}”"
            maps.append(html.Div(shown, className="small fw-semibold"))
        maps.append(ui.lime_map(result))
    if state["error"]:
        maps.append(ui.error_alert(state["error"]))
    if state["finished"]:
        if not state["results"] and not state["error"]:
            maps.append(html.P("No contexts to explain.", className="text-muted"))
        return 100, "done", "mb-2 d-none", maps, True
    label = f"{len(state['results'])}/{state['n_targets']} maps · {percent}%"
    return percent, label, "mb-2", maps, False


@callback(
    Output(ids.EFFECTS_JOB, "data"),
    Output(ids.EFFECTS_POLL, "disabled"),
    Output(ids.EFFECTS_FEEDBACK, "children"),
    Input(ids.EFFECTS_RUN, "n_clicks"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def run_effect(clicks: Any, state: dict | None) -> tuple[Any, Any, Any]:
    """Start measuring the shown factor's effect at the shown layer (in the background)."""
    if not clicks or not state:
        return no_update, no_update, no_update
    cfg = config.get_config()
    dictionary = state.get("shown")
    # The page's dictionary, bound now: the job runs on a worker thread outside the scope.
    get_analyzer = functools.partial(cfg.analyzer, dictionary)
    job_id = effect_jobs.start(
        cfg.db_path, get_analyzer, dictionary, state["factor"], state["layer"]
    )
    message = html.Span(
        [
            dbc.Spinner(size="sm", spinner_class_name="me-2"),
            f"Measuring factor {state['factor']} at layer {state['layer']}…",
        ],
        className="text-muted",
    )
    return job_id, False, message


@callback(
    Output(ids.EFFECTS_OUTPUT, "children"),
    Output(ids.EFFECTS_FEEDBACK, "children", allow_duplicate=True),
    Output(ids.EFFECTS_POLL, "disabled", allow_duplicate=True),
    Input(ids.EFFECTS_POLL, "n_intervals"),
    State(ids.EFFECTS_JOB, "data"),
    State(ids.FACTOR_STATE, "data"),
    prevent_initial_call=True,
)
def poll_effect(_n: Any, job_id: str | None, state: dict | None) -> tuple[Any, Any, Any]:
    """The measured effect once its job ends (or its error)."""
    found = effect_jobs.status(job_id)
    if found is None:
        return no_update, "", True
    if not found["finished"]:
        return no_update, no_update, False
    if found["error"]:
        return no_update, ui.error_alert(found["error"]), True
    result = found["result"]
    try:
        with logic.dictionary_scope(_dictionary_of(state)):
            view = logic.factor_view(config.db_path(), result["factor"], result["layer"])
            neighbors = view.effects.neighbors if view.effects is not None else None
            body = ui.effect_body(
                result, headline=_headline(result["output_kind"]), neighbors=neighbors
            )
    except FactorscopeError as e:
        return no_update, ui.error_alert(str(e)), True
    return body, "", True
