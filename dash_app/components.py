"""Rendering helpers shared by the pages: tables, figures, the LIME map."""

from __future__ import annotations

import functools
from typing import Any

import dash_bootstrap_components as dbc
import polars as pl
from dash import dcc, html

from factorscope.dash_app.logic import factor_href
from factorscope.evidence import claims
from factorscope.palette import (
    CONTROL_COLOR,
    LEARNED_COLOR,
    LEVEL_COLORS,
    LEVEL_THEME,
    NO_LEVEL_COLOR,
    THEME_HEX,
)

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def wire(value: Any) -> Any:
    """``value`` (a component, or lists of them) in the JSON form Dash sends to the browser.

    Dash serialises a component tree by calling ``to_plotly_json`` on every component
    through a ``json`` fallback hook, about 15 µs a component; a tree already in this
    form serialises ten times faster. For parts drawn once and sent many times.
    """
    if hasattr(value, "to_plotly_json") and not isinstance(value, dict):
        found = value.to_plotly_json()
        return {**found, "props": {k: wire(v) for k, v in found["props"].items()}}
    if isinstance(value, list | tuple):
        return [wire(v) for v in value]
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    return value


def element(tag: str, children: Any = None, class_name: str | None = None) -> dict[str, Any]:
    """An ``html.<tag>`` already in the JSON form Dash sends (see :func:`wire`).

    For the hot paths (the contexts of a factor page: about 500 elements a page),
    where building component objects took about a third of a cold page's time.
    """
    props: dict[str, Any] = {"children": children}
    if class_name:
        props["className"] = class_name
    return {"type": tag, "namespace": "dash_html_components", "props": props}


def error_alert(message: str, **kwargs: Any) -> dbc.Alert:
    return dbc.Alert(message, color="danger", className="mb-2", **kwargs)


def level_badge(level: str | None) -> dbc.Badge:
    if not level:
        return dbc.Badge("no level", color="secondary", className="ms-1")
    return dbc.Badge(f"{level} level", color=LEVEL_THEME.get(level, "secondary"), className="ms-1")


def level_color(level: str | None) -> str:
    """The hex colour of a level in plots (the report draws the same, factorscope.palette)."""
    return LEVEL_COLORS.get(level or "", NO_LEVEL_COLOR)


def highlighted_context(context: str, start: int | None, end: int | None) -> dict[str, Any]:
    """The context string with ``context[start:end]`` in a <mark> (a wire-form Span)."""
    if start is None or end is None or not 0 <= start <= end <= len(context):
        return element("Span", context)
    hit = element("Mark", context[start:end], "fs-hit")
    return element("Span", [context[:start], hit, context[end:]], "fs-context")


def contexts_table(frame: pl.DataFrame) -> html.Table | html.P:
    if frame.height == 0:
        return html.P("This factor is never active at this layer.", className="text-muted")
    rows = [
        element(
            "Tr",
            [
                element("Td", str(r["rank"]), "text-muted text-end fs-rank"),
                element("Td", f"{r['alpha']:.3f}", "text-end font-monospace"),
                element(
                    "Td",
                    highlighted_context(
                        r["context"], r.get("highlight_start"), r.get("highlight_end")
                    ),
                ),
            ],
            "fs-context-row",
        )
        for r in frame.iter_rows(named=True)
    ]
    head = html.Thead(
        html.Tr(
            [
                html.Th("#", className="text-end"),
                html.Th("α", className="text-end"),
                html.Th("word in context"),
            ]
        )
    )
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="fs-contexts")


# Figures are plain dicts (what plotly.js reads), not ``go.Figure``: building and
# validating a ``go.Figure`` took 30-70 ms per figure, most of the factor page's time.


@functools.cache
def _template() -> dict[str, Any]:
    """plotly's ``plotly_white`` look, reduced to what 2-D line and bar charts use
    (the full template is 7 kB of JSON per figure, mostly 3-D, map and polar axes)."""
    import plotly.io as pio

    full = pio.templates["plotly_white"].to_plotly_json()
    keep = (
        "font",
        "paper_bgcolor",
        "plot_bgcolor",
        "colorway",
        "hovermode",
        "hoverlabel",
        "xaxis",
        "yaxis",
        "title",
    )
    layout = {key: full["layout"][key] for key in keep if key in full["layout"]}
    data = {kind: full["data"][kind] for kind in ("scatter", "bar") if kind in full["data"]}
    return {"layout": layout, "data": data}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
        "height": 260,
        "template": _template(),
        **extra,
    }


IS_HOVER = "layer %{x} · IS %{y:.3f}<extra></extra>"
"""The IS curve's tooltip: "layer 3 · IS 0.123" (no trace name box)."""


def importance_figure(
    frame: pl.DataFrame,
    *,
    factor: int,
    layer: int,
    level: str | None = None,
    clickable: bool = False,
) -> dict[str, Any]:
    """The IS curve, in the level's colour when given. ``clickable``: the page opens a
    point's layer on a click (the factor page's clientside callback reads ``clickData``),
    and the axis says so."""
    xs = frame["layer"].to_list() if frame.height else []
    ys = frame["importance"].to_list() if frame.height else []
    curve: dict[str, Any] = {
        "type": "scatter",
        "x": xs,
        "y": ys,
        "mode": "lines+markers",
        "name": "IS",
        "line": {"width": 2},
        "marker": {"size": 9},
        "hovertemplate": IS_HOVER,
    }
    if level:
        curve["line"]["color"] = curve["marker"]["color"] = level_color(level)
    data: list[dict[str, Any]] = [curve]
    if layer in xs:
        data.append(
            {
                "type": "scatter",
                "x": [layer],
                "y": [ys[xs.index(layer)]],
                "mode": "markers",
                "marker": {
                    "size": 15,
                    "symbol": "circle-open",
                    "color": "#212529",
                    "line": {"width": 2},
                },
                "name": "shown layer",
                "hovertemplate": "layer %{x} · IS %{y:.3f} (shown)<extra></extra>",
            }
        )
    return {
        "data": data,
        "layout": _layout(
            f"Importance score of factor {factor}",
            xaxis={
                "title": {"text": "layer (click a point to show it)" if clickable else "layer"},
                "dtick": 1,
            },
            yaxis={"title": {"text": "IS (mean of top α)"}, "rangemode": "tozero"},
            showlegend=False,
            hovermode="closest",
            **({"dragmode": False} if clickable else {}),
        ),
    }


def histogram_figure(frame: pl.DataFrame, *, layer: int) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    if frame.height:
        lows = frame["bin_low"].to_list()
        highs = frame["bin_high"].to_list()
        data.append(
            {
                "type": "bar",
                "x": [(a + b) / 2 for a, b in zip(lows, highs, strict=True)],
                "y": frame["count"].to_list(),
                "width": [b - a for a, b in zip(lows, highs, strict=True)],
                "marker": {"line": {"width": 0}},
            }
        )
    return {
        "data": data,
        "layout": _layout(
            f"Non-zero α at layer {layer}",
            xaxis={"title": {"text": "α"}},
            yaxis={"title": {"text": "tokens"}, "type": "log", "dtick": 1},
            bargap=0,
        ),
    }


def graph(graph_id: str, figure: dict[str, Any]) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=figure, config=_PLOT_CONFIG)


def factor_link(factor: int, layer: int | None = None, *, label: str | None = None) -> dcc.Link:
    text = f"f{factor}"
    return dcc.Link(text, href=factor_href(factor, layer), title=label or f"factor {factor}")


def neighbors_table(frame: pl.DataFrame | None, *, layer: int) -> Any:
    if frame is None or frame.height == 0:
        return html.P("No neighbours.", className="text-muted")
    head = html.Thead(html.Tr([html.Th("factor"), html.Th("cosine"), html.Th("co-activation")]))
    body = []
    for r in frame.iter_rows(named=True):
        co = r.get("coactivation")
        body.append(
            html.Tr(
                [
                    html.Td(factor_link(int(r["neighbor"]), layer)),
                    html.Td(f"{r['cosine']:.3f}" if r.get("cosine") is not None else "–"),
                    html.Td(f"{co:.3f}" if co is not None else "–"),
                ]
            )
        )
    return dbc.Table([head, html.Tbody(body)], size="sm", hover=True, className="mb-0")


def interval_range(bound: dict[str, Any], n_intervals: int) -> str:
    """An interval's own bounds as a range: ``[0.310, 0.620)``.

    The refresh cuts (0, max α] into equal intervals, an α falling in the interval
    whose lower bound it reaches (summary_sql/75_intervals.sql): interval 0 is
    ``(0, b)``, the strongest ends at the maximum, included.
    """
    interval = int(bound["interval"])
    low, high = float(bound["alpha_low"]), float(bound["alpha_high"])
    opening = "(0, " if interval == 0 else f"[{low:.3f}, "
    closing = "]" if interval == n_intervals - 1 else ")"
    return f"{opening}{high:.3f}{closing}"


def _interval_title(interval: int, bounds: dict[int, dict[str, Any]], shown: list[dict]) -> str:
    bound = bounds.get(interval)
    if bound is None:  # bounds not read (older callers): the samples' own range
        low, high = shown[-1]["alpha"], shown[0]["alpha"]
        return f"Interval {interval + 1} · sampled α {low:.3f} – {high:.3f}"
    count = int(bound["count"])
    sampled = f" · {len(shown)} shown" if len(shown) < count else ""
    return (
        f"Interval {interval + 1} · α in {interval_range(bound, len(bounds))} · "
        f"{count:,} context{'s' if count != 1 else ''}{sampled}"
    )


def intervals_block(
    intervals: list[dict[str, Any]], bounds: list[dict[str, Any]] | None = None
) -> Any:
    """Contexts sampled from α intervals, strongest interval first.

    ``bounds`` (one ``{"interval", "alpha_low", "alpha_high", "count"}`` per interval,
    :func:`factorscope.warehouse.queries.factor_page`'s ``interval_bounds``) titles
    each interval with its own bounds and how many contexts fall in it.
    """
    if not intervals:
        return html.P("No activations to sample from.", className="text-muted")
    by_interval = {int(b["interval"]): b for b in bounds or []}
    groups: dict[int, list[dict]] = {}
    for row in intervals:
        groups.setdefault(int(row.get("interval") or 0), []).append(row)
    blocks = []
    for interval in sorted(groups, reverse=True):
        rows = sorted(groups[interval], key=lambda r: -r["alpha"])
        title = _interval_title(interval, by_interval, rows)
        items = [
            element(
                "Li",
                [
                    element("Span", f"{r['alpha']:.3f}", "font-monospace text-muted me-2"),
                    highlighted_context(
                        r.get("context") or r.get("word", ""),
                        r.get("highlight_start"),
                        r.get("highlight_end"),
                    ),
                ],
                "small",
            )
            for r in rows
        ]
        blocks.append(
            dbc.Col(
                [
                    html.H6(title, className="mt-2 mb-1", title=_INTERVAL_TIP),
                    html.Ul(items, className="ps-3"),
                ],
                md=6,
            )
        )
    return dbc.Row(blocks)


_INTERVAL_TIP = (
    "(0, max α] at this layer cut into equal intervals; the count is every token whose α "
    "falls in the interval, of which a few are drawn at random (seeded) and shown."
)


def frame_table(frame: pl.DataFrame, *, max_rows: int = 200) -> Any:
    if frame is None or frame.height == 0:
        return html.P("No rows.", className="text-muted")
    head = html.Thead(html.Tr([html.Th(c) for c in frame.columns]))
    body = [html.Tr([html.Td(_fmt(v)) for v in row]) for row in frame.head(max_rows).iter_rows()]
    return dbc.Table([head, html.Tbody(body)], size="sm", hover=True, striped=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    return str(value)


def _lime_runs(words: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The words in runs of words that touch (no character of the sentence between them).

    The tokenizer's words are finer than written words ("don't" is "don", "'", "t"):
    each keeps its own weight and tint, and a run is drawn as the sentence writes it.
    """
    runs: list[list[dict[str, Any]]] = []
    for w in words:
        if runs and runs[-1][-1]["end"] == w["start"]:
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def _lime_tint(weight: float, scale: float) -> str:
    strength = min(1.0, abs(weight) / scale)
    if weight > 0:
        return f"rgba(220, 53, 69, {0.12 + 0.78 * strength:.2f})"
    if weight < 0:
        return f"rgba(25, 135, 84, {0.12 + 0.78 * strength:.2f})"
    return "transparent"


def lime_map(result: dict[str, Any]) -> html.Div:
    """A sentence with each word tinted by its LIME weight: red raises α, green lowers it.

    Every word is its span of the sentence (its character offsets) and what lies
    between words is the sentence's own text, so the map reads as the sentence does;
    words with nothing between them (the tokenizer's "don", "'", "t") form one run
    with no padding inside it (``fs-lime-glued-*``), so "don't" is not drawn "don ' t".
    """
    words = result.get("words", [])
    text = result.get("text", "")
    scale = max((abs(w["weight"]) for w in words), default=0.0) or 1.0
    parts: list[Any] = []
    cursor = 0
    for run in _lime_runs(words):
        if run[0]["start"] > cursor:
            parts.append(text[cursor : run[0]["start"]])
        spans = []
        for i, w in enumerate(run):
            class_name = "fs-lime-word"
            if i > 0:
                class_name += " fs-lime-glued-left"
            if i < len(run) - 1:
                class_name += " fs-lime-glued-right"
            if w.get("target"):
                class_name += " fs-lime-target"
            shown = text[w["start"] : w["end"]] or w["word"]
            spans.append(
                html.Span(
                    shown,
                    style={"backgroundColor": _lime_tint(w["weight"], scale)},
                    className=class_name,
                    title=f"{shown}: {w['weight']:+.4f}",
                )
            )
        parts.append(html.Span(spans, className="fs-lime-run"))
        cursor = run[-1]["end"]
    if cursor < len(text):
        parts.append(text[cursor:])
    caption = (
        f"α = {result.get('alpha', 0.0):.3f} at layer {result.get('layer')} · "
        f"{result.get('n_samples')} samples · local R² = {result.get('score', 0.0):.2f}"
        + (" · cached" if result.get("cached") else f" · {result.get('seconds', 0):.1f} s")
    )
    return html.Div(
        [
            html.Div(parts, className="fs-lime-sentence"),
            html.Div(caption, className="small text-muted"),
        ],
        className="fs-lime mb-3",
    )


def lime_legend() -> html.Div:
    return html.Div(
        [
            html.Span(
                "raises α",
                className="fs-lime-word me-2",
                style={"backgroundColor": "rgba(220,53,69,.6)"},
            ),
            html.Span(
                "lowers α",
                className="fs-lime-word me-2",
                style={"backgroundColor": "rgba(25,135,84,.6)"},
            ),
            html.Span("target word", className="fs-lime-word fs-lime-target"),
        ],
        className="small mb-2",
    )


_SEPARATION_SERIES = (
    ("codes", "codes (sparse factors)", "#1f77b4", "31, 119, 180"),
    ("states", "hidden states (ceiling)", "#ff7f0e", "255, 127, 14"),
)


def separation_figure(frame: pl.DataFrame, *, title: str, bands: bool = True) -> dict[str, Any]:
    """Sense accuracy per layer: codes vs hidden states vs chance, with 95% CI bands.

    ``frame`` has ``layer``, ``representation``, ``accuracy`` and ``chance`` (and, for
    bands, ``accuracy_lo``/``accuracy_hi``/``chance_lo``/``chance_hi``: the
    ``sense_probe_summary`` view)."""
    data: list[dict[str, Any]] = []
    bands = bands and "accuracy_lo" in frame.columns

    def band(xs: list, lo: list, hi: list, rgb: str, name: str) -> dict[str, Any]:
        return {
            "type": "scatter",
            "mode": "lines",
            "x": xs + xs[::-1],
            "y": hi + lo[::-1],
            "fill": "toself",
            "fillcolor": f"rgba({rgb}, 0.15)",
            "line": {"width": 0},
            "hoverinfo": "skip",
            "showlegend": False,
            "name": name,
        }

    for representation, name, color, rgb in _SEPARATION_SERIES:
        part = frame.filter(pl.col("representation") == representation).sort("layer")
        if part.height == 0:
            continue
        xs = part["layer"].to_list()
        if bands:
            data.append(
                band(xs, part["accuracy_lo"].to_list(), part["accuracy_hi"].to_list(), rgb, name)
            )
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": xs,
                "y": part["accuracy"].to_list(),
                "name": name,
                "line": {"color": color},
            }
        )
    part = frame.filter(pl.col("representation") == "codes").sort("layer")
    if part.height:
        xs = part["layer"].to_list()
        if bands:
            data.append(
                band(
                    xs,
                    part["chance_lo"].to_list(),
                    part["chance_hi"].to_list(),
                    "127, 127, 127",
                    "chance",
                )
            )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": part["chance"].to_list(),
                "name": "chance (random neighbour)",
                "line": {"color": "#7f7f7f", "dash": "dash"},
            }
        )
    return {
        "data": data,
        "layout": _layout(
            title,
            height=300,
            xaxis={"title": {"text": "layer"}, "dtick": 1},
            yaxis={"title": {"text": "1-NN sense accuracy"}, "range": [0, 1.02]},
            legend={"orientation": "h", "y": -0.25},
        ),
    }


# --------------------------------------------------------------------------- evidence


VERDICT_THEME: dict[str, str] = {
    "beats": "success",
    "does not beat": "danger",
    "cannot tell": "secondary",
}
"""Bootstrap theme of each verdict's badge."""


def number(value: float | None, digits: int = 2) -> str:
    """A score as the pages print it; "–" for a missing one."""
    return "–" if value is None else f"{value:.{digits}f}"


def interval_text(value: float | None, low: float | None, high: float | None) -> str:
    """``0.91 [0.88, 0.94]`` (the interval left out when missing)."""
    if value is None:
        return "–"
    if low is None or high is None:
        return number(value)
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def verdict_badge(verdict: str, **kwargs: Any) -> dbc.Badge:
    return dbc.Badge(verdict, color=VERDICT_THEME.get(verdict, "secondary"), **kwargs)


def command(text: str) -> html.Code:
    """A command a user can copy, as the empty states give it."""
    return html.Code(text, className="user-select-all")


def _error_trace(
    layer_claims: dict[int, claims.LayerClaim], name: str, color: str, dash: str | None
) -> dict[str, Any] | None:
    layers = [x for x in sorted(layer_claims) if layer_claims[x].detection is not None]
    if not layers:
        return None
    found = [layer_claims[x].detection for x in layers]
    line: dict[str, Any] = {"color": color, "width": 2}
    if dash:
        line["dash"] = dash
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "x": layers,
        "y": [d.estimate for d in found],
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": [d.high - d.estimate for d in found],
            "arrayminus": [d.estimate - d.low for d in found],
            "color": color,
            "thickness": 1.5,
            "width": 4,
        },
        "customdata": [[d.low, d.high, d.n] for d in found],
        "hovertemplate": (
            f"{name} · layer %{{x}}<br>mean detection %{{y:.3f}} "
            "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>%{customdata[2]} factors"
            "<extra></extra>"
        ),
        "name": name,
        "line": line,
        "marker": {"color": color, "size": 7},
    }


def detection_figure(
    by_dictionary: dict[int, dict[int, claims.LayerClaim]], shown: int, controls: list[int]
) -> dict[str, Any]:
    """Mean held-out detection per layer with 95% bootstrap error bars: the dictionary
    shown (solid) and each of its controls (grey, dashed), over the chance line."""
    data: list[dict[str, Any]] = []
    traces = [(shown, f"dictionary {shown}", LEARNED_COLOR, None)] + [
        (d, f"control {d}", CONTROL_COLOR, "dash") for d in controls
    ]
    for d, name, color, dash in traces:
        trace = _error_trace(by_dictionary.get(d, {}), name, color, dash)
        if trace is not None:
            data.append(trace)
    layers = sorted({x for d in by_dictionary.values() for x in d})
    lows = [c.detection.low for d in by_dictionary.values() for c in d.values() if c.detection]
    bottom = min([0.4, *(low - 0.02 for low in lows)])
    if layers:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": [layers[0], layers[-1]],
                "y": [claims.CHANCE, claims.CHANCE],
                "name": "chance",
                "line": {"color": THEME_HEX["secondary"], "dash": "dot", "width": 1},
                "hoverinfo": "skip",
            }
        )
    return {
        "data": data,
        "layout": _layout(
            "Mean held-out detection of the factors' rules, 95% bootstrap interval",
            height=320,
            xaxis={"title": {"text": "layer"}, "dtick": 1},
            yaxis={"title": {"text": "mean detection (balanced accuracy)"}, "range": [bottom, 1.0]},
            legend={"orientation": "h", "y": -0.25},
            hovermode="closest",
        ),
    }


# --------------------------------------------------------------------------- effects


def sig(value: float | None, digits: int = 3) -> str:
    """A measure as the Effects card prints it (``digits`` significant digits); "–" for
    a missing one."""
    if value is None:
        return "–"
    return f"{value:.{digits}g}"


EFFECT_MEASURES: tuple[tuple[str, str, str], ...] = (
    (
        "embedding_shift",
        "sentence embedding turned (1 − cos)",
        "the pooled sentence embedding (the mean of the last layer over the sentence) "
        "before and after, averaged over the top-context sentences",
    ),
    (
        "embedding_change",
        "sentence embedding moved (‖Δ‖ / ‖e‖)",
        "the length of the pooled embedding's change over its length",
    ),
    (
        "state_change",
        "same tokens' last layer moved (‖Δx‖ / ‖x‖)",
        "at the tokens where the factor was removed, the last layer's state change over its length",
    ),
    (
        "state_cosine",
        "same tokens' last layer, cos(before, after)",
        "1 means unchanged",
    ),
    (
        "output_kl",
        "output distribution moved (KL, nats)",
        "KL(clean ‖ edited) of the head's prediction at the edited tokens",
    ),
    (
        "top_logprob_change",
        "log p of the clean top prediction",
        "change of the log-probability of the token predicted before the edit",
    ),
)
"""The measures of the Effects card: key (warehouse.effects.MEASURES), name, tooltip."""

HEADLINE_NAME = {
    "embedding_shift": "turns the sentence embedding by",
    "output_kl": "moves the output distribution by KL",
}


def output_kind_note(kind: str | None, text: dict[str, str], **kwargs: Any) -> html.P:
    """What the run's model gives (``text``: logic.OUTPUT_KIND_TEXT)."""
    found = text.get(kind or "")
    if found is None:
        found = (
            "The run's model could not be read: the effect it gives (sentence embedding, "
            "or output tokens with a language-model head) shows once measured."
        )
    return html.P(found, className="small text-muted mb-2 fs-effect-kind", **kwargs)


def effect_headline(effect: dict[str, Any], headline: str) -> html.P:
    """“Removing factor 12 at layer 3 … turns the sentence embedding by 0.0312
    (control 0.0021)”: the measure that leads, beside its control's."""
    factor, layer = effect["factor"], effect["layer"]
    value = effect["ablation"].get(headline)
    control = effect["control"].get(headline)
    where = (
        f"(mean α {sig(effect.get('mean_alpha'))} at {effect['n_tokens']:,} tokens of "
        f"{effect['n_sentences']:,} top-context sentences; the edit is "
        f"{sig(100 * effect['edit_rel'] if effect.get('edit_rel') is not None else None, 2)}% "
        "of the state's length)"
    )
    ratio = ""
    if value is not None and control:
        ratio = f", {value / control:.3g}× the random direction of the same norm"
    return html.P(
        [
            f"Removing factor {factor} at layer {layer} {where} ",
            html.Strong(f"{HEADLINE_NAME.get(headline, headline)} {sig(value)}"),
            " ",
            html.Span(f"(control {sig(control)})", className="fs-effect-control"),
            ratio,
            ".",
        ],
        className="mb-2 fs-effect-headline",
    )


def effect_measures_table(effect: dict[str, Any]) -> dbc.Table:
    """Each measure of the factor's removal beside the random direction's (the control)."""
    head = html.Thead(
        html.Tr(
            [
                html.Th("measure"),
                html.Th(f"removing f{effect['factor']}", className="text-end"),
                html.Th(
                    "control",
                    className="text-end",
                    title="a random direction of exactly the same norm, removed at the same tokens",
                ),
            ]
        )
    )
    rows = []
    for key, name, tip in EFFECT_MEASURES:
        value, control = effect["ablation"].get(key), effect["control"].get(key)
        if value is None and control is None:
            continue
        rows.append(
            html.Tr(
                [
                    html.Td(name, title=tip),
                    html.Td(sig(value), className="text-end font-monospace"),
                    html.Td(sig(control), className="text-end font-monospace text-muted"),
                ]
            )
        )
    return dbc.Table(
        [head, html.Tbody(rows)], size="sm", className="mb-2 fs-effect-measures", hover=True
    )


def output_tokens_tables(output: dict[str, dict[str, list]], kind: str) -> Any:
    """The tokens a factor promotes and suppresses, as two short tables side by side."""
    found = output.get(kind) or {}
    cols = []
    for direction, title, color in (
        ("promoted", "Promoted", "success"),
        ("suppressed", "Suppressed", "danger"),
    ):
        rows = [
            html.Tr(
                [
                    html.Td(html.Code(t["token"]), className="fs-output-token"),
                    html.Td(f"{t['effect']:+.3g}", className="text-end font-monospace"),
                ]
            )
            for t in found.get(direction, [])
        ]
        cols.append(
            dbc.Col(
                dbc.Table(
                    [
                        html.Thead(
                            html.Tr(
                                [
                                    html.Th(title, className=f"text-{color}"),
                                    html.Th("Δ log p", className="text-end"),
                                ]
                            )
                        ),
                        html.Tbody(rows),
                    ],
                    size="sm",
                    className=f"mb-2 fs-output-tokens fs-{direction}",
                ),
                xs=6,
            )
        )
    return dbc.Row(cols, className="g-2")


def _sentences_moved(sentences: list[dict[str, Any]], limit: int = 5) -> Any:
    if not sentences:
        return None
    rows = []
    for s in sentences[:limit]:
        text = str(s.get("text") or "")
        short = text if len(text) <= 160 else text[:159] + "…"
        rows.append(
            html.Tr(
                [
                    html.Td(short, title=text),
                    html.Td(sig(s["embedding_shift"]), className="text-end font-monospace"),
                    html.Td(
                        sig(s["control_embedding_shift"]),
                        className="text-end font-monospace text-muted",
                    ),
                    html.Td(str(s["n_tokens"]), className="text-end"),
                ]
            )
        )
    head = html.Thead(
        html.Tr(
            [
                html.Th("sentences moved most"),
                html.Th("1 − cos", className="text-end"),
                html.Th("control", className="text-end"),
                html.Th("tokens", className="text-end", title="tokens edited in it"),
            ]
        )
    )
    return dbc.Table(
        [head, html.Tbody(rows)], size="sm", className="mb-2 fs-effect-sentences", hover=True
    )


def neighbor_effects_table(frame: pl.DataFrame | None, effect: dict[str, Any] | None) -> Any:
    """The stored effects of the factor's nearest neighbours (by atom cosine), beside
    this factor's, each with its control."""
    if frame is None or frame.height == 0:
        return html.P(
            [
                "No neighbour's effect is stored yet (",
                command("factorscope effects"),
                " measures every factor at its peak layer).",
            ],
            className="small text-muted mb-0 fs-neighbor-effects",
        )
    head = html.Thead(
        html.Tr(
            [
                html.Th("neighbour"),
                html.Th("cosine", className="text-end"),
                html.Th("layer", className="text-end"),
                html.Th("effect", className="text-end"),
                html.Th("control", className="text-end"),
            ]
        )
    )
    rows = []
    if effect is not None:
        kind = effect.get("output_kind")
        measure = "embedding_shift" if kind == "sentence-embedding" else "output_kl"
        rows.append(
            html.Tr(
                [
                    html.Td(f"f{effect['factor']} (this factor)", className="fw-semibold"),
                    html.Td("1", className="text-end"),
                    html.Td(str(effect["layer"]), className="text-end"),
                    html.Td(sig(effect["ablation"].get(measure)), className="text-end"),
                    html.Td(sig(effect["control"].get(measure)), className="text-end text-muted"),
                ],
                className="table-light",
            )
        )
    for r in frame.iter_rows(named=True):
        rows.append(
            html.Tr(
                [
                    html.Td(factor_link(int(r["neighbor"]), int(r["layer"]))),
                    html.Td(sig(r["cosine"]), className="text-end"),
                    html.Td(str(r["layer"]), className="text-end"),
                    html.Td(sig(r["effect"]), className="text-end font-monospace"),
                    html.Td(sig(r["control"]), className="text-end font-monospace text-muted"),
                ]
            )
        )
    return dbc.Table(
        [head, html.Tbody(rows)], size="sm", hover=True, className="mb-0 fs-neighbor-effects"
    )


def effect_body(
    effect: dict[str, Any],
    *,
    headline: str,
    neighbors: pl.DataFrame | None = None,
) -> html.Div:
    """A measured effect: the headline beside its control, every measure beside the
    control's, the sentences moved most, the output tokens with a head, the neighbours'."""
    if not effect.get("n_tokens"):
        return html.Div(
            html.P(
                f"Factor {effect['factor']} is not active in its top contexts at layer "
                f"{effect['layer']}: there is nothing to remove there.",
                className="text-muted mb-0",
            ),
            className="fs-effect",
        )
    if effect.get("source") == "on-demand":
        source: list[Any] = [f"Measured on demand ({sig(effect.get('seconds'), 2)} s)"]
    else:
        source = [
            "Stored by ",
            command("factorscope effects"),
            " (every factor at its peak layer)",
        ]
    settings = effect.get("settings") or {}
    if settings.get("n_contexts"):
        source.append(f"; up to {settings['n_contexts']} top-context sentences")
    parts: list[Any] = [
        effect_headline(effect, headline),
        effect_measures_table(effect),
    ]
    output = effect.get("output_tokens") or {}
    if output.get("ablation"):
        parts.append(
            html.H6("Output tokens (through the upper layers and the head)", className="mt-2 mb-1")
        )
        parts.append(output_tokens_tables(output, "ablation"))
    if output.get("direct"):
        parts.append(
            html.H6(
                "Direct effect (the head alone on the last layer, the atom removed there)",
                className="mt-2 mb-1",
                title="The head applied to the clean last-layer states with the factor's atom "
                "removed there, no upper layers in between",
            )
        )
        parts.append(output_tokens_tables(output, "direct"))
    sentences = _sentences_moved(effect.get("sentences") or [])
    if sentences is not None:
        parts.append(sentences)
    parts.append(html.H6("Neighbours' effects", className="mt-2 mb-1"))
    parts.append(neighbor_effects_table(neighbors, effect))
    parts.append(html.Div([*source, "."], className="small text-muted mt-2 fs-effect-source"))
    return html.Div(parts, className="fs-effect")


# --------------------------------------------------------------------------- steering


def _terms(terms: list, labels: dict[str, str], steered: int) -> list[Any]:
    """``0.52·f7 0.31·f12`` as wire-form spans (a factor's label as its tooltip; the
    steered factor in bold)."""
    out: list[Any] = []
    for f, a in terms:
        label = labels.get(str(f))
        css = "fs-factor-term" + (" fs-steered-factor" if int(f) == steered else "")
        span = element("Span", f"{a:.2f}·f{f}", css)
        if label:
            span["props"]["title"] = label
        out += [span, " "]
    return out or ["0"]


def _changes(pairs: list, layer: int) -> list[Any]:
    out: list[Any] = []
    for f, d in pairs:  # a space between terms: where the line may break
        out += [
            html.Span(
                [factor_link(int(f), layer), html.Span(f" {d:+.3g}", className="small")],
                className="fs-factor-term",
            ),
            " ",
        ]
    return out or ["–"]


def steer_result(data: dict[str, Any]) -> html.Div:
    """What steering changed (logic.steer_text): the sentence embedding, then per layer
    from the steered one up, the tokens' top factors before → after and the factors
    that rose and fell most; with a head, the top predictions before and after."""
    parts: list[Any] = [
        _steer_summary(data),
        _steer_overview(data),
        html.Div([_steer_layer(data, x) for x in data["layers"]], className="fs-analyze mb-2"),
        _steer_predictions(data.get("predictions")),
    ]
    return html.Div(parts, className="fs-steer-result")


def _steer_summary(data: dict[str, Any]) -> html.P:
    factor, layer = data["factor"], data["layer"]
    how = {
        "typical": (
            " (the strength: the mean α of its strongest contexts at layer "
            f"{data.get('strength_layer')})"
        ),
        "default": " (the strength: 1.0, as it never fires)",
    }.get(data.get("strength_source", ""), "")
    steered = sum(t["steered"] for t in data["tokens"])
    cosine = data["embedding_cosine"]
    below = ""
    if layer == 1:
        below = " Layer 0 is unchanged: the edit only reaches the layers above it."
    elif layer > 1:
        below = f" Layers 0–{layer - 1} are unchanged: the edit only reaches the layers above it."
    return html.P(
        [
            f"Added {data['strength']:.3g} × f{factor} (dictionary {data['dictionary']}) at "
            f"layer {layer} to {steered} of {len(data['tokens'])} tokens{how}. ",
            html.Strong(
                f"Sentence embedding: cos(before, after) = {cosine:.4f} "
                f"(1 − cos = {sig(1.0 - cosine)})",
                className="fs-steer-embedding",
            ),
            "." + below,
        ],
        className="mb-2 fs-steer-summary",
    )


def _steer_overview(data: dict[str, Any]) -> dbc.Table:
    """One row per layer: how many tokens' top factor changed, and what rose and fell."""
    factor = data["factor"]
    rows = [
        html.Tr(
            [
                html.Td(str(x["layer"])),
                html.Td(f"{x['top_changed']} / {len(x['rows'])}", className="text-end"),
                html.Td(f"{x['mean_cosine']:.3f}", className="text-end font-monospace"),
                html.Td(
                    f"{sig(x['factor_before'])} → {sig(x['factor_after'])}",
                    className="text-end font-monospace text-nowrap",
                ),
                html.Td(_changes(x["gains"], x["layer"])),
                html.Td(_changes(x["losses"], x["layer"])),
            ]
        )
        for x in data["layers"]
    ]
    head = html.Tr(
        [
            html.Th("layer"),
            html.Th("top factor changed", className="text-end"),
            html.Th("cos(state)", className="text-end", title="mean over tokens"),
            html.Th(f"mean α of f{factor}", className="text-end"),
            html.Th("rose most (Σ Δα)"),
            html.Th("fell most (Σ Δα)"),
        ]
    )
    return dbc.Table(
        [html.Thead(head), html.Tbody(rows)],
        size="sm",
        hover=True,
        responsive=True,
        className="mb-2 fs-steer-overview",
    )


def _steer_layer(data: dict[str, Any], x: dict[str, Any]) -> html.Details:
    """One layer's tokens, top factors before → after (the last layer open)."""
    labels, factor = data.get("labels") or {}, data["factor"]
    rows = [
        element(
            "Tr",
            [
                element("Td", r["token"], "fs-decomp-word"),
                element("Td", _terms(r["before"], labels, factor)),
                element("Td", "→", "text-muted"),
                element("Td", _terms(r["after"], labels, factor)),
                element("Td", f"{r['cosine']:.3f}", "text-end font-monospace"),
            ],
            "fs-steer-changed" if r["changed"] else None,
        )
        for r in x["rows"]
    ]
    head = html.Thead(
        html.Tr(
            [
                html.Th("token"),
                html.Th("before"),
                html.Th(""),
                html.Th("after"),
                html.Th("cos", className="text-end"),
            ]
        )
    )
    return html.Details(
        [
            html.Summary(
                f"Layer {x['layer']}: top factor changed at {x['top_changed']} of "
                f"{len(x['rows'])} tokens",
                className="fs-layer-summary",
            ),
            dbc.Table([head, html.Tbody(rows)], size="sm", className="mb-0 fs-steer-tokens"),
        ],
        className="mb-1 fs-layer fs-steer-layer",
        open=x["layer"] == data["layers"][-1]["layer"],
    )


def _steer_predictions(predictions: list[dict[str, Any]] | None) -> html.Div:
    """With a head, the top predictions before and after; else why there are none."""
    if predictions is None:
        return html.P(
            "This model has no language-model head: there are no predictions to compare; "
            "the sentence embedding above is its output.",
            className="small text-muted mb-0",
        )
    rows = [
        html.Tr(
            [
                html.Td(p["token"], className="fs-decomp-word"),
                html.Td(", ".join(f"{w} {q:.2f}" for w, q in p["before"])),
                html.Td(", ".join(f"{w} {q:.2f}" for w, q in p["after"])),
            ]
        )
        for p in predictions
    ]
    return html.Div(
        [
            html.H6("Top predictions before → after", className="mt-2 mb-1"),
            dbc.Table(
                [
                    html.Thead(html.Tr([html.Th("token"), html.Th("before"), html.Th("after")])),
                    html.Tbody(rows),
                ],
                size="sm",
                className="mb-0 fs-steer-predictions",
            ),
        ]
    )
