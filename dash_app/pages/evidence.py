"""Evidence: ``/evidence?dictionary=N`` weighs a dictionary's factors against random ones.

``factorscope explain`` fits a short rule for every factor at every layer on training
sentences and scores it on held-out ones, for the dictionary and for its controls
(``factorscope learn --control``: random atoms at the same sparsity). Per layer, this
page sets the dictionary beside each control: the mean held-out detection with its
bootstrap 95% interval, the share of word-level factors and the level distribution with
Wilson intervals (``factorscope.evidence.claims``), the verdict "learned minus control"
and the reconstruction quality (FVU, mean L0) of each. Every empty state names the
command that fills it. ``?dictionary=N`` shows dictionary N, as on every page.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import polars as pl
from dash import dcc, html

from factorscope.dash_app import components as ui
from factorscope.dash_app import config, ids, logic, navigation
from factorscope.errors import FactorscopeError
from factorscope.evidence import claims
from factorscope.stages.evidence_summary import EvidenceView

dash.register_page(__name__, path="/evidence", name="Evidence", title="factorscope · evidence")


def layout(dictionary: str | None = None, **_query: Any) -> html.Div:
    try:
        with logic.dictionary_scope(dictionary):  # the links drawn inside carry it
            view = logic.evidence_view(config.db_path())
            return _layout(view)
    except FactorscopeError as e:
        return html.Div([html.H3("Evidence"), ui.error_alert(str(e))])


def _layout(view: EvidenceView) -> html.Div:
    title = html.H3(["Evidence ", navigation.dictionary_badge(view.dictionary_id)])
    intro = html.P(
        "What each factor means and how sure we are: the best short rule of every factor "
        "at every layer, fitted on training sentences and scored on held-out ones "
        "(detection: balanced accuracy, chance 0.50), for this dictionary and for its "
        "controls, random dictionaries at the same sparsity. A claim about the learned "
        "factors holds only where they beat the controls.",
        className="text-muted small",
    )
    if view.kind == "control":
        return html.Div([title, intro, _control_note(view), _quality_card(view)])
    parts: list[Any] = [title, intro, _messages(view)]
    if view.explained_layers:
        parts += [
            dbc.Card(
                dbc.CardBody(
                    ui.graph(
                        ids.EVIDENCE_FIGURE,
                        ui.detection_figure(view.claims, view.dictionary_id, view.control_ids),
                    ),
                    className="p-1",
                ),
                className="fs-card mb-3",
            ),
            _layers_card(view),
        ]
    parts += [_quality_card(view), _levels_card(view)]
    return html.Div(parts)


# --------------------------------------------------------------------------- messages


def _control_note(view: EvidenceView) -> dbc.Alert:
    parent = view.parent_id
    return dbc.Alert(
        [
            f"Dictionary {view.dictionary_id} is a control (random atoms) of dictionary "
            f"{parent}: its scores are the baseline. See ",
            dcc.Link(f"the evidence of dictionary {parent}", href=f"/evidence?dictionary={parent}"),
            ", where they stand beside the learned factors.",
        ],
        color="info",
        id=ids.EVIDENCE_MESSAGE,
    )


def _messages(view: EvidenceView) -> html.Div:
    shown = view.dictionary_id
    alerts: list[Any] = []
    if not view.explained_layers:
        others = [d for d in view.explained_dictionaries if d != shown]
        alerts.append(
            dbc.Alert(
                [
                    f"Dictionary {shown} has not been explained yet: run ",
                    ui.command(logic.explain_command(shown)),
                    " (it explains the dictionary's encoded controls too), then reload this page.",
                    html.Div(
                        [
                            "Explained: ",
                            *_links(others),
                            ".",
                        ],
                        className="mt-1",
                    )
                    if others
                    else None,
                ],
                color="info",
                id=ids.EVIDENCE_MESSAGE,
            )
        )
    if not view.controls:
        commands = logic.control_commands(shown)
        alerts.append(
            dbc.Alert(
                [
                    f"Dictionary {shown} has no control to be compared with, so nothing "
                    "here says its factors beat random ones. Make one: ",
                    ui.command(commands[0]),
                    ", then ",
                    ui.command(commands[1]),
                    " (N: the control's id) and ",
                    ui.command(commands[2]),
                    ".",
                ],
                color="warning",
                id=ids.EVIDENCE_CONTROLS,
            )
        )
    elif view.explained_layers and len(view.scored_controls) < len(view.controls):
        missing = [d for d in view.control_ids if d not in view.scored_controls]
        alerts.append(
            dbc.Alert(
                [
                    f"Control {', '.join(map(str, missing))} is encoded but not explained: run ",
                    ui.command(logic.explain_command(shown)),
                    ".",
                ],
                color="warning",
                id=ids.EVIDENCE_CONTROLS,
            )
        )
    return html.Div(alerts)


def _links(dictionaries: list[int]) -> list[Any]:
    out: list[Any] = []
    for d in dictionaries:
        out += [", " if out else "", dcc.Link(f"dictionary {d}", href=f"/evidence?dictionary={d}")]
    return out


# --------------------------------------------------------------------------- per layer


def _shares(levels: dict[str, claims.Share]) -> Any:
    known = [levels[lv] for lv in claims.LEVELS if lv in levels]
    if not known or not known[0].n:
        return "–"
    return html.Span(
        [
            html.Span(
                f"{lv} {100 * levels[lv].share:.0f}%",
                className="me-2 text-nowrap",
                style={"color": ui.level_color(lv)},
                title=f"{lv}: {levels[lv].count} of {levels[lv].n} factors, "
                f"95% Wilson interval {levels[lv].text()}",
            )
            for lv in claims.LEVELS
        ]
    )


def _claim_cells(claim: claims.LayerClaim | None) -> list[html.Td]:
    if claim is None:
        return [html.Td("–", className="text-end"), html.Td("–"), html.Td("–"), html.Td("–")]
    detection = claim.detection
    return [
        html.Td(f"{claim.n_scored:,}", className="text-end"),
        html.Td(detection.text() if detection else "–", className="font-monospace text-nowrap"),
        html.Td(
            claim.word_level.text(),
            className="font-monospace text-nowrap",
            title=f"{claim.word_level.count} of {claim.word_level.n} scored factors",
        ),
        html.Td(_shares(claim.levels)),
    ]


def _verdict_cell(comparison: claims.Comparison | None, has_controls: bool) -> html.Td:
    if comparison is None or not has_controls:
        return html.Td("no control", className="text-muted small")
    gap = comparison.difference.text() if comparison.difference else "–"
    return html.Td(
        [
            ui.verdict_badge(comparison.verdict, className="me-2"),
            html.Span(gap, className="font-monospace small text-nowrap"),
        ],
        title=comparison.sentence(),
    )


def layer_rows(view: EvidenceView) -> list[html.Tr]:
    """One row per layer and dictionary: the dictionary shown first (with its verdict
    against the controls pooled), then each control."""
    rows = []
    layers = sorted({x for per in view.claims.values() for x in per})
    has_controls = bool(view.scored_controls)
    for layer in layers:
        for i, d in enumerate([view.dictionary_id, *view.control_ids]):
            mine = i == 0
            rows.append(
                html.Tr(
                    [
                        html.Td(str(layer) if mine else "", className="fw-semibold"),
                        html.Td(
                            f"dictionary {d}" if mine else f"control {d}",
                            className="text-nowrap" + ("" if mine else " text-muted"),
                        ),
                        *_claim_cells(view.claims.get(d, {}).get(layer)),
                        _verdict_cell(view.comparisons.get(layer), has_controls)
                        if mine
                        else html.Td(""),
                    ],
                    className="fs-evidence-first" if mine else "fs-evidence-control",
                )
            )
    return rows


def _layers_card(view: EvidenceView) -> dbc.Card:
    head = html.Thead(
        html.Tr(
            [
                html.Th("layer"),
                html.Th("dictionary"),
                html.Th("factors scored", className="text-end"),
                html.Th("mean detection [95%]", title="seeded percentile bootstrap"),
                html.Th(
                    "word-level [95%]",
                    title="the best rule is one word or lemma with held-out detection "
                    f">= {claims.WORD_LEVEL_DETECTION}; Wilson interval",
                ),
                html.Th("levels of the scored factors", title="by the layer of the IS peak"),
                html.Th(
                    "verdict: learned − controls",
                    title="mean detection minus the controls' (pooled), bootstrap 95% "
                    "interval: beats (above 0), does not beat (below "
                    f"{claims.MIN_GAIN}), cannot tell",
                ),
            ]
        )
    )
    return dbc.Card(
        [
            dbc.CardHeader("Per layer: the dictionary beside each control"),
            dbc.CardBody(
                dbc.Table(
                    [head, html.Tbody(layer_rows(view))],
                    size="sm",
                    hover=True,
                    className="mb-0 small",
                    id=ids.EVIDENCE_TABLE,
                ),
                className="fs-scroll",
            ),
        ],
        className="fs-card mb-3",
    )


# --------------------------------------------------------------------------- quality, levels


def quality_table(quality: pl.DataFrame, shown: int) -> Any:
    """FVU and mean L0 per layer, one column pair per dictionary (the shown one first)."""
    if quality.height == 0:
        return html.P(
            f"Dictionary {shown} has no per-layer quality (run `factorscope encode`).",
            className="text-muted mb-0",
        )
    order = list(dict.fromkeys(quality["dictionary_id"].to_list()))
    cells = {(r["dictionary_id"], r["layer"]): r for r in quality.iter_rows(named=True)}
    layers = sorted({int(x) for x in quality["layer"].to_list()})

    def name(d: int) -> str:
        return f"dictionary {d}" if d == shown else f"control {d}"

    head = html.Thead(
        [
            html.Tr(
                [
                    html.Th("layer", rowSpan=2),
                    html.Th("FVU", colSpan=len(order), className="text-center"),
                    html.Th("mean L0", colSpan=len(order), className="text-center"),
                ]
            ),
            html.Tr([html.Th(name(d), className="text-end") for d in order] * 2),
        ]
    )
    body = []
    for layer in layers:
        row = [html.Td(str(layer))]
        for column in ("fvu", "mean_l0"):
            for d in order:
                found = cells.get((d, layer))
                value = None if found is None else found[column]
                digits = 3 if column == "fvu" else 1
                row.append(
                    html.Td(
                        ui.number(value, digits),
                        className="text-end font-monospace" + ("" if d == shown else " text-muted"),
                    )
                )
        body.append(html.Tr(row))
    return dbc.Table([head, html.Tbody(body)], size="sm", hover=True, className="mb-0 small")


def _quality_card(view: EvidenceView) -> dbc.Card:
    return dbc.Card(
        [
            dbc.CardHeader(
                "Reconstruction beside the controls: fraction of variance unexplained "
                "(lower is better) at the same mean L0"
            ),
            dbc.CardBody(quality_table(view.quality, view.dictionary_id), id=ids.EVIDENCE_QUALITY),
        ],
        className="fs-card mb-3",
    )


def _levels_card(view: EvidenceView) -> dbc.Card:
    head = html.Thead(
        html.Tr(
            [html.Th("dictionary"), html.Th("factors that fire", className="text-end")]
            + [html.Th(lv, style={"color": ui.level_color(lv)}) for lv in claims.LEVELS]
        )
    )
    body = []
    for d in [view.dictionary_id, *view.control_ids]:
        shares = view.levels.get(d, {})
        n = next(iter(shares.values())).n if shares else 0
        body.append(
            html.Tr(
                [
                    html.Td(f"dictionary {d}" if d == view.dictionary_id else f"control {d}"),
                    html.Td(f"{n:,}", className="text-end"),
                ]
                + [
                    html.Td(
                        shares[lv].text() if n else "–",
                        className="font-monospace text-nowrap",
                        title=f"{shares[lv].count} of {n} factors" if n else None,
                    )
                    for lv in claims.LEVELS
                ]
            )
        )
    return dbc.Card(
        [
            dbc.CardHeader(
                "Levels: where each factor's importance score peaks (low, mid, high layers), "
                "share with a 95% Wilson interval"
            ),
            dbc.CardBody(
                dbc.Table([head, html.Tbody(body)], size="sm", className="mb-0 small"),
                id=ids.EVIDENCE_LEVELS,
            ),
        ],
        className="fs-card mb-3",
    )
