"""The report's Markdown: one function per section, each returning its lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factorscope.report.compute import interpretation, sense_reading
from factorscope.report.figures import Figures
from factorscope.report.model import (
    BASELINE_MIN_OCCURRENCES,
    CONTEXTS_PER_FACTOR,
    DEFAULT_WORDS,
    ExampleData,
    ExampleFactor,
    ReportData,
    ReportSummary,
)
from factorscope.warehouse.queries import LEVELS

LEVEL_TEXT = {
    "low": "Low-level factors (importance peaks in the first third of the layers)",
    "mid": "Mid-level factors (importance peaks in the middle third)",
    "high": "High-level factors (importance peaks in the last third)",
}

_MD_SPECIAL = set("\\`*_{}[]<>#|~")


def md_escape(text: str) -> str:
    """``text`` on one line with Markdown's special characters backslash-escaped."""
    text = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def highlight(context: str, start: int, end: int) -> str:
    """The context, escaped, with ``context[start:end]`` in bold."""
    start = max(0, min(int(start), len(context)))
    end = max(start, min(int(end), len(context)))
    word = context[start:end].strip()
    if not word:
        return md_escape(context)
    before, after = context[:start], context[end:]
    pad_l = " " if before[-1:].isspace() else ""
    pad_r = " " if after[:1].isspace() else ""
    return f"{md_escape(before)}{pad_l}**{md_escape(word)}**{pad_r}{md_escape(after)}".strip()


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


@dataclass(frozen=True)
class Page:
    """What the Markdown is written from: the numbers, the data, the figures, the call."""

    summary: ReportSummary
    data: ReportData
    figures: Figures
    db_path: Path
    out: Path
    seed: int
    examples_per_level: int
    words: list[str]

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()


def render_markdown(page: Page) -> str:
    """The whole README.md of the report."""
    return "\n".join(
        [
            *_header(page),
            *_counts(page),
            *_timings(page),
            *_quality(page),
            *_levels(page),
            *_evidence(page),
            *_effects(page),
            *_examples(page),
            *(_senses(page) if page.summary.senses else [*_polysemy(page), *_baseline(page)]),
            *_regenerate(page),
        ]
    )


def _header(page: Page) -> list[str]:
    s, overview = page.summary, page.data.overview
    return [
        "# factorscope reproduction report",
        "",
        f"Model **{md_escape(s.model)}** over corpus **{md_escape(s.corpus)}**, "
        f"dictionary {overview['dictionary_id']} ({s.n_factors:,} factors, "
        f"lambda {overview['lambda1']:g}, status {overview['dictionary_status']}). "
        f"Database `{md_escape(page.db_path.name)}`. Method: Yun et al. 2021, "
        '"Transformer visualization via dictionary learning".',
        "",
    ]


def _counts(page: Page) -> list[str]:
    s = page.summary
    md = [
        "## Counts",
        "",
        *table(
            ["what", "count"],
            [
                ["sentences", f"{s.n_sentences:,}"],
                ["tokens (stored word pieces)", f"{s.n_tokens:,}"],
                ["layers (0 = embeddings)", f"{s.n_layers:,}"],
                ["factors in the dictionary", f"{s.n_factors:,}"],
                ["factors active at some layer", f"{s.n_factors_active:,}"],
                ["non-zero codes", f"{s.n_codes:,}"],
            ],
        ),
        "",
    ]
    if page.data.counts:
        md += [
            "Per layer:",
            "",
            *table(
                ["layer", "active factors", "non-zero codes"],
                [
                    [r["layer"], f"{r['active_factors']:,}", f"{r['non_zeros']:,}"]
                    for r in page.data.counts
                ],
            ),
            "",
        ]
    return md


def _timings(page: Page) -> list[str]:
    timings = page.summary.timings
    rows = [
        ["ingest (model forward passes, storing)", _seconds(timings.get("ingest_seconds"))],
        ["learn (dictionary fit)", _seconds(timings.get("fit_seconds"))],
        ["encode (sparse codes, all layers)", _seconds(timings.get("encode_seconds"))],
        ["summaries (views behind the app)", _seconds(timings.get("summaries_seconds"))],
    ]
    return ["## Timings", "", *table(["stage", "seconds"], rows), ""]


def _quality(page: Page) -> list[str]:
    md = ["## Reconstruction quality per layer", ""]
    if not page.data.quality:
        return [
            *md,
            "No quality rows for this dictionary (its codes were not written by `encode`).",
            "",
        ]
    quality_png = page.figures.quality
    return [
        *md,
        "FVU = residual variance / variance of the (preprocessed) hidden states; mean L0 = "
        "non-zero codes per token; all-zero = share of tokens with no active factor; dead = "
        "factors never active at the layer.",
        "",
        *table(
            ["layer", "vectors", "FVU", "mean L0", "all-zero", "dead factors"],
            [
                [
                    r["layer"],
                    f"{r['n_vectors']:,}",
                    f"{r['fvu']:.3f}",
                    f"{r['mean_l0']:.1f}",
                    f"{r['zero_code_share']:.2%}",
                    f"{r['dead_factors']:,}",
                ]
                for r in page.data.quality
            ],
        ),
        "",
        f"![FVU and mean L0 per layer]({page.rel(quality_png)})" if quality_png else "",
        "",
    ]


def _levels(page: Page) -> list[str]:
    level_counts, n_active = page.summary.level_counts, page.summary.n_factors_active
    return [
        "## Factor levels",
        "",
        "A factor's level follows the layer where its importance score IS (mean of its "
        "K largest alphas at the layer) peaks: low = first third of the layers, mid = "
        "middle third, high = last third. Factors that never fire have no level.",
        "",
        *table(
            ["level", "factors", "share of active"],
            [
                [
                    level,
                    f"{level_counts[level]:,}",
                    f"{level_counts[level] / n_active:.1%}" if n_active else "n/a",
                ]
                for level in LEVELS
            ],
        ),
        "",
        f"![factors per level]({page.rel(page.figures.levels)})",
        "",
    ]


def _evidence(page: Page) -> list[str]:
    """The paper's claims as numbers, each beside the controls (issue 20)."""
    view = page.data.evidence
    head = [
        "## Evidence: what the factors mean, against a random control",
        "",
        "`factorscope explain` fits a short rule over token features (word, lemma, part of "
        "speech, WordNet class, neighbours, place in the sentence) for every factor at every "
        "layer on 80% of the sentences and scores it on the held-out 20%: *detection* is "
        "the rule's balanced accuracy at telling the factor's active tokens (each activation "
        "quintile weighted the same) from inactive ones; chance is 0.50. A *control* is a "
        "dictionary of random Gaussian atoms with the same size, preprocessing and mean L0 "
        "(`factorscope learn --control gaussian`), encoded and explained the same way. "
        "Intervals are 95%: bootstrap for means, Wilson for shares.",
        "",
    ]
    if view is None or not view.explained_layers:
        return [*head, "Not measured on this run: run `factorscope explain`.", ""]
    shown = view.dictionary_id
    controls = view.scored_controls
    if not controls:
        head += [
            "No control was explained: run `factorscope learn --control gaussian`, "
            f"`factorscope encode --dictionary N` and `factorscope explain --dictionary {shown}`.",
            "",
        ]
    rows = []
    for layer in sorted(view.claims.get(shown, {})):
        mine = view.claims[shown][layer]
        theirs = [view.claims[c][layer] for c in controls if layer in view.claims[c]]
        comparison = view.comparisons.get(layer)
        rows.append(
            [
                layer,
                f"{mine.n_scored:,}",
                mine.detection.text() if mine.detection else "n/a",
                "; ".join(t.detection.text() for t in theirs if t.detection) or "n/a",
                comparison.sentence() if comparison else "n/a",
                mine.word_level.text(),
                "; ".join(t.word_level.text() for t in theirs) or "n/a",
            ]
        )
    beats = [c for c in view.comparisons.values() if c.verdict == "beats"]
    verdict = (
        f"The learned dictionary beats its matched-L0 control on mean detection at "
        f"**{len(beats)} of {len(view.comparisons)} layers**"
    )
    if beats:
        gaps = [c.difference.estimate for c in beats if c.difference]
        verdict += f", by {min(gaps):.3f} to {max(gaps):.3f}"
    others = [c for c in view.comparisons.values() if c.verdict != "beats"]
    if others:
        verdict += "; " + "; ".join(f"layer {c.layer}: {c.sentence()}" for c in others)
    lines = [
        *head,
        *table(
            [
                "layer",
                "factors scored",
                f"mean detection, dictionary {shown}",
                "control(s)",
                "learned − control",
                "word-level share",
                "control(s)",
            ],
            rows,
        ),
        "",
        verdict + ".",
        "",
        "*Word-level* factors (the paper's): the best rule is one word or lemma with held-out "
        "detection ≥ 0.8.",
        "",
    ]
    if page.figures.evidence:
        lines += [f"![mean detection per layer]({page.rel(page.figures.evidence)})", ""]
    lines += _evidence_levels(view) + _evidence_quality(view)
    return lines


def _effects(page: Page) -> list[str]:
    """Which levels matter: ablation effects by IS level against the random direction."""
    rows = page.data.effects_by_level
    head = [
        "## Which levels matter: removing a factor, against a random direction",
        "",
        "`factorscope effects` removes each factor's contribution α·φ at its peak layer from "
        "the tokens where it is active in its top-context sentences, runs the model's layers "
        "above, and measures how far the output turns (for a sentence-embedding model such as "
        "MiniLM: 1 − cos of the pooled sentence embedding; with a language-model head: the KL "
        "of the output distribution). The control removes a random direction of the same norm "
        "at the same tokens. Interval: Wilson 95% for the share of factors above their control.",
        "",
    ]
    if not rows:
        return [*head, "Not measured on this run: run `factorscope effects`.", ""]
    from factorscope.evidence.claims import wilson

    body = []
    for r in rows:
        n = int(r["n_factors"])
        above = wilson(round(float(r["share_above_control"]) * n), n)
        body.append(
            [
                r["level"],
                f"{n:,}",
                f"{r['effect_median']:.4f} [{r['effect_p25']:.4f}, {r['effect_p75']:.4f}]",
                f"{r['control_median']:.4f} [{r['control_p25']:.4f}, {r['control_p75']:.4f}]",
                above.text(),
            ]
        )
    measure = rows[0]["measure"]
    return [
        *head,
        *table(
            [
                "level",
                "factors",
                f"{measure}: median [quartiles]",
                "control: median [quartiles]",
                "factors above their control",
            ],
            body,
        ),
        "",
    ]


def _evidence_levels(view) -> list[str]:
    """Are low / mid / high a property of the learned factors or of any dictionary?"""
    ids = [view.dictionary_id, *view.control_ids]
    rows = [
        [
            f"{d} ({'dictionary' if d == view.dictionary_id else 'control'})",
            *(view.levels[d][lv].text() for lv in ("low", "mid", "high")),
        ]
        for d in ids
        if d in view.levels
    ]
    return [
        "Levels (share of the factors that fire, by the layer of their IS peak), the "
        "dictionary beside its controls:",
        "",
        *table(["dictionary", "low", "mid", "high"], rows),
        "",
    ]


def _evidence_quality(view) -> list[str]:
    """Reconstruction beside the controls: where the learned dictionary wins for sure."""
    frame = view.quality
    if frame is None or frame.is_empty():
        return []
    rows = [
        [r["layer"], r["dictionary_id"], r["role"], f"{r['fvu']:.3f}", f"{r['mean_l0']:.1f}"]
        for r in frame.sort(["layer", "dictionary_id"]).iter_rows(named=True)
    ]
    return [
        "Reconstruction (fraction of variance unexplained, FVU, at mean L0) beside the "
        "controls at the same sparsity:",
        "",
        *table(["layer", "dictionary", "role", "FVU", "mean L0"], rows),
        "",
    ]


def _examples(page: Page) -> list[str]:
    md = [
        "## Example factors",
        "",
        f"{page.examples_per_level} per level, drawn with seed {page.seed} from the stronger "
        "half of the level (by IS at the peak layer). Contexts: the "
        f"{CONTEXTS_PER_FACTOR} tokens of largest alpha at the peak layer, the token's word "
        "in bold.",
        "",
    ]
    for level in LEVELS:
        md += [f"### {LEVEL_TEXT[level]}", ""]
        if not page.data.examples[level]:
            md += [f"No {level}-level factor in this run.", ""]
            continue
        pairs = zip(page.summary.examples[level], page.data.examples[level], strict=True)
        for ex, info in pairs:
            md += _example(page, ex, info)
    return md


def _example(page: Page, ex: ExampleFactor, info: ExampleData) -> list[str]:
    label = f" — {md_escape(ex.label)}" if ex.label else ""
    md = [
        f"#### Factor {ex.factor}{label}",
        "",
        f"Peak layer {ex.peak_layer}, IS {ex.importance:.3f}.",
        "",
        f"![importance curve of factor {ex.factor}]({page.rel(ex.figure)})",
        "",
    ]
    if info.contexts:
        md += table(
            ["rank", "alpha", "context"],
            [
                [
                    c["rank"],
                    f"{c['alpha']:.3f}",
                    highlight(c["context"], c["highlight_start"], c["highlight_end"]),
                ]
                for c in info.contexts
            ],
        )
    else:
        md.append("No contexts.")
    md.append("")
    return md


def _senses(page: Page) -> list[str]:
    """The sense probe's measurement (replaces the four-word table when the run is probed)."""
    rows = page.summary.senses or []
    info = page.data.senses["info"] if page.data.senses else {}
    settings = info.get("settings", {})
    md = [
        "## Polysemy: do later layers separate a word's senses?",
        "",
        'The reference found a factor for "left" whose layer-0 contexts are almost all the '
        "word left, while later layers separate its senses. `factorscope probe` measures "
        f"this on {rows[0].n_lemmas:,} words from {md_escape(str(info.get('source', '?')))} "
        f"with at least {settings.get('min_senses', 2)} senses (metadata field "
        f"`{md_escape(str(settings.get('sense', '?')))}`) of at least "
        f"{settings.get('min_examples', '?')} example sentences each: at the first word piece "
        "of the word, each occurrence takes the sense of its most cosine-similar other "
        "occurrence (leave-one-out 1-nearest-neighbour accuracy), on the sparse codes and "
        "on the raw hidden states (the ceiling). Chance is the accuracy of a neighbour drawn "
        "at random. Off word factor = share of occurrences whose top factor is not the "
        f"word's layer-{rows[0].layer} factor (its most common top factor there). Means "
        "over words with 95% confidence intervals (normal approximation over words).",
        "",
    ]
    if page.figures.senses is not None:
        md += [f"![sense separation per layer]({page.rel(page.figures.senses)})", ""]
    md += table(
        ["layer", "codes", "hidden states", "chance", "codes / states", "off word factor"],
        [
            [
                r.layer,
                f"{r.codes:.3f} ({r.codes_lo:.3f}–{r.codes_hi:.3f})",
                f"{r.states:.3f} ({r.states_lo:.3f}–{r.states_hi:.3f})",
                f"{r.chance:.3f}",
                "n/a" if r.kept is None else f"{r.kept:.0%}",
                "n/a" if r.off_word_share is None else f"{r.off_word_share:.0%}",
            ]
            for r in rows
        ],
    )
    md += [
        "",
        sense_reading(rows),
        "",
        "Per word, and each occurrence's top factor per layer: the app's Senses page "
        "(`/senses?lemma=left`), or the tables `sense_probe` and `sense_occurrences`.",
        "",
    ]
    return md


def _polysemy(page: Page) -> list[str]:
    first, last = page.data.first_layer, page.data.last_layer
    rows, skipped = page.summary.polysemy, page.summary.skipped_words
    md = [
        "## Polysemy: do later layers split a word's senses?",
        "",
        'The reference found a factor for "left" whose layer-0 contexts are almost all the '
        "word left, while later layers separate its senses. Here, for each word, the top "
        "factor of an occurrence is the factor with the largest alpha there; we compare "
        f"layer {first} with layer {last}. Share = occurrences covered by the "
        "most common top factor; Jaccard = overlap of the two sets of top factors.",
        "",
    ]
    if rows:
        md += _polysemy_table(page)
        md += ["", interpretation(rows, first, last, page.summary.baseline), ""]
        md += [
            "These are a few hand-picked words; `factorscope probe --corpus wordnet` measures "
            "sense separation over every WordNet word with enough examples, and this section "
            "then reports that measurement.",
            "",
        ]
    else:
        md += ["None of the words occurs in this corpus.", ""]
    if skipped:
        md += [
            "Skipped (no occurrences in this corpus): "
            + ", ".join(f'"{md_escape(w)}"' for w in skipped)
            + ".",
            "",
        ]
    return md


def _polysemy_table(page: Page) -> list[str]:
    first, last = page.data.first_layer, page.data.last_layer

    def named(f: int | None) -> str:
        if f is None:
            return "none"
        label = page.data.labels.get(f)
        return f"{f} ({md_escape(label)})" if label else str(f)

    return table(
        [
            "word",
            "occurrences",
            f"distinct top factors L{first} → L{last}",
            f"top-factor share L{first} → L{last}",
            f"most common top factor L{first}",
            f"most common top factor L{last}",
            "Jaccard",
            "reading",
        ],
        [
            [
                md_escape(r.word),
                r.occurrences,
                f"{r.distinct_first} → {r.distinct_last}",
                f"{r.top_share_first:.0%} → {r.top_share_last:.0%}",
                named(r.top_factor_first),
                named(r.top_factor_last),
                f"{r.jaccard:.2f}",
                r.reading,
            ]
            for r in page.summary.polysemy
        ],
    )


def _baseline(page: Page) -> list[str]:
    first, last = page.data.first_layer, page.data.last_layer
    baseline = page.summary.baseline
    md = [f"### Baseline: every word with {BASELINE_MIN_OCCURRENCES}+ occurrences", ""]
    if not baseline:
        return [*md, f"No word occurs {BASELINE_MIN_OCCURRENCES} times or more.", ""]
    return [
        *md,
        "Contextual layers give most words more top factors, ambiguous or not; this is "
        "the yardstick for the table above (medians over the words).",
        "",
        *table(
            [
                "words",
                f"median distinct top factors L{first} → L{last}",
                f"median top-factor share L{first} → L{last}",
                "words whose distinct top factors grow",
            ],
            [
                [
                    f"{baseline['n_words']:,}",
                    f"{baseline['median_distinct_first']:g} → {baseline['median_distinct_last']:g}",
                    f"{baseline['median_share_first']:.0%} → {baseline['median_share_last']:.0%}",
                    f"{baseline['share_growing']:.0%}",
                ]
            ],
        ),
        "",
    ]


def _regenerate(page: Page) -> list[str]:
    words = page.words
    probe = []
    if page.data.senses:
        source = page.data.senses["info"].get("source", "run")
        corpus = "" if source == "run" else f" --corpus {source}"
        probe = [f"factorscope probe --db {page.db_path}{corpus}"]
    return [
        "## Regenerate",
        "",
        "```",
        *probe,
        f"factorscope report --db {page.db_path} --out {page.out} --seed {page.seed}"
        + "".join(f" --word {w}" for w in words if tuple(words) != DEFAULT_WORDS),
        "```",
        "",
    ]
