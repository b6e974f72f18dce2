"""The reproduction report: one Markdown page and a few PNG plots for a database.

:func:`write_report` reads a published database through :mod:`factorscope.warehouse.queries`
(it never writes to it) and writes ``README.md`` plus ``figures/*.png`` into an output
folder: counts, stage timings, reconstruction quality per layer, factor levels, example
factors of each level with their top contexts and importance curves, and the
reference's polysemy observation checked on this run.

Polysemy check (Yun et al. 2021 saw a factor for "left" whose layer-0 contexts are all
"left" while later layers separate its senses): for each word, the *top factor* of an
occurrence at a layer is the factor of largest alpha there. Comparing the first and the
last layer we report the number of distinct top factors, the share of occurrences the
most common top factor covers, and the Jaccard index of the two top-factor sets. More
distinct top factors at the last layer reads as "later layers split senses".
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factorscope.errors import InputError
from factorscope.warehouse import queries
from factorscope.warehouse.queries import LEVELS, WarehouseReader

log = logging.getLogger(__name__)

DEFAULT_WORDS = ("left", "right", "bank", "play")
"""Frequent ambiguous words whose factors the polysemy check compares."""

FIGURES_DIR = "figures"
"""Sub-folder of the output folder that the report owns (its PNGs are rewritten)."""

CONTEXTS_PER_FACTOR = 10
BASELINE_MIN_OCCURRENCES = 20
"""Words with at least this many occurrences form the polysemy check's baseline."""
DPI = 90

_LEVEL_TEXT = {
    "low": "Low-level factors (importance peaks in the first third of the layers)",
    "mid": "Mid-level factors (importance peaks in the middle third)",
    "high": "High-level factors (importance peaks in the last third)",
}
_LEVEL_COLORS = {"low": "#4c78a8", "mid": "#f58518", "high": "#54a24b"}


@dataclass(frozen=True)
class PolysemyRow:
    """How the top factors of one word's occurrences change from the first to the last layer.

    ``distinct_*``: number of different top factors; ``top_share_*``: share of the
    occurrences (with any active factor) whose top factor is the most common one;
    ``top_factor_*``: that most common factor (None when nothing fires); ``jaccard``:
    |A ∩ B| / |A ∪ B| of the two top-factor sets.
    """

    word: str
    occurrences: int
    first_layer: int
    last_layer: int
    distinct_first: int
    distinct_last: int
    top_share_first: float
    top_share_last: float
    top_factor_first: int | None
    top_factor_last: int | None
    jaccard: float

    @property
    def reading(self) -> str:
        if self.distinct_last > self.distinct_first:
            return "split"
        if self.distinct_last < self.distinct_first:
            return "merged"
        return "unchanged"


@dataclass(frozen=True)
class ExampleFactor:
    """One example factor of a level, with what the report shows about it."""

    factor: int
    level: str
    peak_layer: int
    importance: float
    label: str | None
    n_contexts: int
    figure: Path


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote, with the numbers it reported."""

    readme: Path
    figures: list[Path]
    model: str
    corpus: str
    n_sentences: int
    n_tokens: int
    n_layers: int
    n_factors: int
    n_codes: int
    n_factors_active: int
    timings: dict[str, float | None]
    fvu: dict[int, float]
    level_counts: dict[str, int]
    examples: dict[str, list[ExampleFactor]]
    polysemy: list[PolysemyRow]
    skipped_words: list[str]
    baseline: dict[str, Any] | None = None
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"report: {self.readme} ({len(self.figures)} figures, "
            f"{self.n_factors_active:,}/{self.n_factors:,} factors active, "
            f"{len(self.polysemy)} polysemy words) in {self.seconds:.1f} s"
        )


# ----------------------------------------------------------------------------- numbers


def polysemy_row(
    word: str, first: list[int | None], last: list[int | None], *, layers: tuple[int, int]
) -> PolysemyRow:
    """The polysemy numbers of one word from its occurrences' top factors at two layers.

    ``first`` and ``last`` hold one entry per occurrence (None: no factor fired).
    """
    if len(first) != len(last):
        raise InputError("first and last must list the same occurrences")

    def stats(tops: list[int | None]) -> tuple[int, float, int | None, set[int]]:
        fired = [t for t in tops if t is not None]
        if not fired:
            return 0, 0.0, None, set()
        (best, n), *_ = sorted(Counter(fired).items(), key=lambda kv: (-kv[1], kv[0]))
        return len(set(fired)), n / len(fired), best, set(fired)

    d1, s1, t1, set1 = stats(first)
    d2, s2, t2, set2 = stats(last)
    union = set1 | set2
    return PolysemyRow(
        word=word,
        occurrences=len(first),
        first_layer=layers[0],
        last_layer=layers[1],
        distinct_first=d1,
        distinct_last=d2,
        top_share_first=s1,
        top_share_last=s2,
        top_factor_first=t1,
        top_factor_last=t2,
        jaccard=len(set1 & set2) / len(union) if union else 0.0,
    )


def _pick_examples(candidates: list[int], k: int, seed: int, level: str) -> list[int]:
    """``k`` factors from the stronger half of ``candidates`` (strongest first), seeded."""
    if k <= 0 or not candidates:
        return []
    pool = candidates[: max(k, (len(candidates) + 1) // 2)]
    rng = random.Random(f"{seed}:{level}")
    picked = set(rng.sample(pool, min(k, len(pool))))
    return [f for f in pool if f in picked]


# ----------------------------------------------------------------------------- markdown


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


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


# ----------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plot_levels(path: Path, counts: dict[str, int]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    names = list(LEVELS)
    values = [counts.get(name, 0) for name in names]
    bars = ax.bar(names, values, color=[_LEVEL_COLORS[n] for n in names])
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=8)
    ax.set_ylabel("factors")
    ax.set_title("Factors by level (layer of peak importance)", fontsize=9)
    ax.set_ylim(0, max([*values, 1]) * 1.15)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _plot_quality(path: Path, layers: list[int], fvu: list[float], l0: list[float]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 2.8))
    ax.plot(layers, fvu, marker="o", color="#4c78a8", label="FVU")
    ax.set_xlabel("layer")
    ax.set_ylabel("FVU", color="#4c78a8")
    ax.set_ylim(0, max([*fvu, 0.05]) * 1.2)
    ax.set_xticks(layers)
    ax2 = ax.twinx()
    ax2.plot(layers, l0, marker="s", color="#e45756", label="mean L0")
    ax2.set_ylabel("mean L0 (non-zeros per token)", color="#e45756")
    ax2.set_ylim(0, max([*l0, 1.0]) * 1.2)
    ax.set_title("Reconstruction quality per layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _plot_importance(
    path: Path, factor: int, level: str, layers: list[int], values: list[float]
) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 2.4))
    ax.plot(layers, values, marker="o", color=_LEVEL_COLORS.get(level, "#333333"))
    ax.fill_between(layers, values, alpha=0.15, color=_LEVEL_COLORS.get(level, "#333333"))
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("importance (IS)")
    ax.set_ylim(0, max([*values, 1e-9]) * 1.15)
    ax.set_title(f"factor {factor} ({level})", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# ----------------------------------------------------------------------------- report


def write_report(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    examples_per_level: int = 3,
    words: tuple[str, ...] | list[str] = DEFAULT_WORDS,
    seed: int = 0,
) -> ReportSummary:
    """Write ``out_dir/README.md`` and ``out_dir/figures/*.png`` for the database at ``db_path``.

    Reads only. Example factors: ``examples_per_level`` per level, drawn with ``seed``
    from the stronger half of the level (by importance at the peak layer). The PNGs
    left in ``out_dir/figures`` by an earlier report are removed first.
    """
    if isinstance(examples_per_level, bool) or not isinstance(examples_per_level, int):
        raise InputError(f"examples_per_level must be an integer, got {examples_per_level!r}")
    if not 0 <= examples_per_level <= 20:
        raise InputError(f"examples_per_level must be in 0..20, got {examples_per_level}")
    if isinstance(words, str):
        raise InputError("words must be a list of words, not one string")
    clean_words: list[str] = []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise InputError(f"every word must be a non-empty string, got {word!r}")
        w = word.strip().lower()
        if w not in clean_words:
            clean_words.append(w)

    started = time.perf_counter()
    db_path = Path(db_path)
    out = Path(out_dir)
    figures_dir = out / FIGURES_DIR
    reader = WarehouseReader(db_path)
    try:
        with reader.connect() as con:
            overview = queries.run_overview(con)
            quality = queries.layer_quality(con)
            counts = queries.code_counts(con)
            n_active = queries.active_factor_count(con)
            level_counts = queries.level_counts(con)
            all_layers = queries.layers(con)
            by_level = {level: queries.level_factors(con, level) for level in LEVELS}
            examples_raw: dict[str, list[dict]] = {}
            for level in LEVELS:
                frame = by_level[level]
                candidates = [int(f) for f in frame["factor"].to_list()]
                info = {int(r["factor"]): r for r in frame.iter_rows(named=True)}
                examples_raw[level] = []
                for f in _pick_examples(candidates, examples_per_level, seed, level):
                    peak = int(info[f]["peak_layer"])
                    label = queries.factor_label(con, f)
                    examples_raw[level].append(
                        {
                            "factor": f,
                            "peak_layer": peak,
                            "importance": float(info[f]["importance"]),
                            "label": label["label"] if label else None,
                            "contexts": queries.top_contexts(
                                con, f, peak, k=CONTEXTS_PER_FACTOR
                            ).to_dicts(),
                            "curve": queries.importance_curve(con, f),
                        }
                    )
            first_layer, last_layer = all_layers[0], all_layers[-1]
            tops: dict[str, tuple[list, list]] = {}
            for word in clean_words:
                a = queries.word_top_factors(con, word, first_layer)
                b = queries.word_top_factors(con, word, last_layer)
                tops[word] = (a["factor"].to_list(), b["factor"].to_list())
            spread_first = queries.word_top_factor_spread(
                con, first_layer, min_occurrences=BASELINE_MIN_OCCURRENCES
            )
            spread_last = queries.word_top_factor_spread(
                con, last_layer, min_occurrences=BASELINE_MIN_OCCURRENCES
            )
            top_labels: dict[int, str | None] = {}
            for first, last in tops.values():
                for f in {*first, *last} - {None}:
                    label = queries.factor_label(con, f)
                    top_labels[int(f)] = label["label"] if label else None
    finally:
        reader.close()

    # Numbers.
    fvu = {int(r["layer"]): float(r["fvu"]) for r in quality.iter_rows(named=True)}
    n_codes = int(counts["non_zeros"].sum()) if counts.height else 0
    polysemy: list[PolysemyRow] = []
    skipped: list[str] = []
    for word in clean_words:
        first, last = tops[word]
        if not first:
            skipped.append(word)
            continue
        polysemy.append(polysemy_row(word, first, last, layers=(first_layer, last_layer)))

    baseline = _baseline(spread_first, spread_last)

    # Figures (only once the database has been read: a bad path leaves the folder alone).
    figures_dir.mkdir(parents=True, exist_ok=True)
    for old in figures_dir.glob("*.png"):
        old.unlink()
    figures: list[Path] = []
    levels_png = figures_dir / "levels.png"
    _plot_levels(levels_png, level_counts)
    figures.append(levels_png)
    quality_png = None
    if quality.height:
        quality_png = figures_dir / "quality.png"
        _plot_quality(
            quality_png,
            [int(x) for x in quality["layer"].to_list()],
            [float(x) for x in quality["fvu"].to_list()],
            [float(x) for x in quality["mean_l0"].to_list()],
        )
        figures.append(quality_png)
    examples: dict[str, list[ExampleFactor]] = {}
    for level in LEVELS:
        examples[level] = []
        for ex in examples_raw[level]:
            png = figures_dir / f"is_{level}_factor_{ex['factor']}.png"
            curve = ex["curve"]
            _plot_importance(
                png,
                ex["factor"],
                level,
                [int(x) for x in curve["layer"].to_list()],
                [float(x) for x in curve["importance"].to_list()],
            )
            figures.append(png)
            examples[level].append(
                ExampleFactor(
                    factor=ex["factor"],
                    level=level,
                    peak_layer=ex["peak_layer"],
                    importance=ex["importance"],
                    label=ex["label"],
                    n_contexts=len(ex["contexts"]),
                    figure=png,
                )
            )

    timings = dict(overview["timings"])
    summary = ReportSummary(
        readme=out / "README.md",
        figures=figures,
        model=str(overview["model"]),
        corpus=str(overview["corpus"]),
        n_sentences=overview["n_sentences"],
        n_tokens=overview["n_tokens"],
        n_layers=overview["n_layers"],
        n_factors=overview["n_factors"],
        n_codes=n_codes,
        n_factors_active=n_active,
        timings=timings,
        fvu=fvu,
        level_counts=level_counts,
        examples=examples,
        polysemy=polysemy,
        skipped_words=skipped,
        baseline=baseline,
    )

    # Markdown.
    def rel(path: Path) -> str:
        return path.relative_to(out).as_posix()

    md: list[str] = [
        "# factorscope reproduction report",
        "",
        f"Model **{md_escape(summary.model)}** over corpus **{md_escape(summary.corpus)}**, "
        f"dictionary {overview['dictionary_id']} ({summary.n_factors:,} factors, "
        f"lambda {overview['lambda1']:g}, status {overview['dictionary_status']}). "
        f"Database `{md_escape(db_path.name)}`. Method: Yun et al. 2021, "
        '"Transformer visualization via dictionary learning".',
        "",
        "## Counts",
        "",
        *_table(
            ["what", "count"],
            [
                ["sentences", f"{summary.n_sentences:,}"],
                ["tokens (stored word pieces)", f"{summary.n_tokens:,}"],
                ["layers (0 = embeddings)", f"{summary.n_layers:,}"],
                ["factors in the dictionary", f"{summary.n_factors:,}"],
                ["factors active at some layer", f"{summary.n_factors_active:,}"],
                ["non-zero codes", f"{summary.n_codes:,}"],
            ],
        ),
        "",
    ]
    if counts.height:
        md += [
            "Per layer:",
            "",
            *_table(
                ["layer", "active factors", "non-zero codes"],
                [
                    [r["layer"], f"{r['active_factors']:,}", f"{r['non_zeros']:,}"]
                    for r in counts.iter_rows(named=True)
                ],
            ),
            "",
        ]
    stage_rows = [
        ["ingest (model forward passes, storing)", _seconds(timings.get("ingest_seconds"))],
        ["learn (dictionary fit)", _seconds(timings.get("fit_seconds"))],
        ["encode (sparse codes, all layers)", _seconds(timings.get("encode_seconds"))],
        ["summaries (views behind the app)", _seconds(timings.get("summaries_seconds"))],
    ]
    md += ["## Timings", "", *_table(["stage", "seconds"], stage_rows), ""]

    md += ["## Reconstruction quality per layer", ""]
    if quality.height:
        md += [
            "FVU = residual variance / variance of the (preprocessed) hidden states; mean L0 = "
            "non-zero codes per token; all-zero = share of tokens with no active factor; dead = "
            "factors never active at the layer.",
            "",
            *_table(
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
                    for r in quality.iter_rows(named=True)
                ],
            ),
            "",
            f"![FVU and mean L0 per layer]({rel(quality_png)})" if quality_png else "",
            "",
        ]
    else:
        md += [
            "No quality rows for this dictionary (its codes were not written by `encode`).",
            "",
        ]

    md += [
        "## Factor levels",
        "",
        "A factor's level follows the layer where its importance score IS (mean of its "
        "K largest alphas at the layer) peaks: low = first third of the layers, mid = "
        "middle third, high = last third. Factors that never fire have no level.",
        "",
        *_table(
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
        f"![factors per level]({rel(levels_png)})",
        "",
        "## Example factors",
        "",
        f"{examples_per_level} per level, drawn with seed {seed} from the stronger half of "
        "the level (by IS at the peak layer). Contexts: the "
        f"{CONTEXTS_PER_FACTOR} tokens of largest alpha at the peak layer, the token's word "
        "in bold.",
        "",
    ]
    for level in LEVELS:
        md += [f"### {_LEVEL_TEXT[level]}", ""]
        if not examples_raw[level]:
            md += [f"No {level}-level factor in this run.", ""]
            continue
        for ex, info in zip(examples[level], examples_raw[level], strict=True):
            label = f" — {md_escape(ex.label)}" if ex.label else ""
            md += [
                f"#### Factor {ex.factor}{label}",
                "",
                f"Peak layer {ex.peak_layer}, IS {ex.importance:.3f}.",
                "",
                f"![importance curve of factor {ex.factor}]({rel(ex.figure)})",
                "",
            ]
            if info["contexts"]:
                md += _table(
                    ["rank", "alpha", "context"],
                    [
                        [
                            c["rank"],
                            f"{c['alpha']:.3f}",
                            highlight(c["context"], c["highlight_start"], c["highlight_end"]),
                        ]
                        for c in info["contexts"]
                    ],
                )
            else:
                md.append("No contexts.")
            md.append("")

    md += [
        "## Polysemy: do later layers split a word's senses?",
        "",
        'The reference found a factor for "left" whose layer-0 contexts are almost all the '
        "word left, while later layers separate its senses. Here, for each word, the top "
        "factor of an occurrence is the factor with the largest alpha there; we compare "
        f"layer {first_layer} with layer {last_layer}. Share = occurrences covered by the "
        "most common top factor; Jaccard = overlap of the two sets of top factors.",
        "",
    ]
    if polysemy:

        def named(f: int | None) -> str:
            if f is None:
                return "none"
            label = top_labels.get(f)
            return f"{f} ({md_escape(label)})" if label else str(f)

        md += _table(
            [
                "word",
                "occurrences",
                f"distinct top factors L{first_layer} → L{last_layer}",
                f"top-factor share L{first_layer} → L{last_layer}",
                f"most common top factor L{first_layer}",
                f"most common top factor L{last_layer}",
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
                for r in polysemy
            ],
        )
        md += ["", _interpretation(polysemy, first_layer, last_layer, baseline), ""]
    else:
        md += ["None of the words occurs in this corpus.", ""]
    if skipped:
        md += [
            "Skipped (no occurrences in this corpus): "
            + ", ".join(f'"{md_escape(w)}"' for w in skipped)
            + ".",
            "",
        ]
    md += [f"### Baseline: every word with {BASELINE_MIN_OCCURRENCES}+ occurrences", ""]
    if baseline:
        md += [
            "Contextual layers give most words more top factors, ambiguous or not; this is "
            "the yardstick for the table above (medians over the words).",
            "",
            *_table(
                [
                    "words",
                    f"median distinct top factors L{first_layer} → L{last_layer}",
                    f"median top-factor share L{first_layer} → L{last_layer}",
                    "words whose distinct top factors grow",
                ],
                [
                    [
                        f"{baseline['n_words']:,}",
                        f"{baseline['median_distinct_first']:g} → "
                        f"{baseline['median_distinct_last']:g}",
                        f"{baseline['median_share_first']:.0%} → "
                        f"{baseline['median_share_last']:.0%}",
                        f"{baseline['share_growing']:.0%}",
                    ]
                ],
            ),
            "",
        ]
    else:
        md += [f"No word occurs {BASELINE_MIN_OCCURRENCES} times or more.", ""]
    md += [
        "## Regenerate",
        "",
        "```",
        f"factorscope report --db {db_path} --out {out} --seed {seed}"
        + "".join(f" --word {w}" for w in clean_words if tuple(clean_words) != DEFAULT_WORDS),
        "```",
        "",
    ]
    summary.readme.write_text("\n".join(md), encoding="utf-8")
    summary.seconds = time.perf_counter() - started
    log.info("report written to %s in %.1f s", summary.readme, summary.seconds)
    return summary


def _baseline(first: Any, last: Any) -> dict[str, Any] | None:
    """Medians of the top-factor spread over the frequent words, first vs last layer."""
    import numpy as np

    a = {r["word"]: r for r in first.iter_rows(named=True)}
    b = {r["word"]: r for r in last.iter_rows(named=True)}
    words = sorted(set(a) & set(b))
    if not words:
        return None

    def share(r: dict) -> float:
        return r["top_count"] / r["fired"] if r["fired"] else 0.0

    d1 = np.array([a[w]["distinct_top"] for w in words], dtype=float)
    d2 = np.array([b[w]["distinct_top"] for w in words], dtype=float)
    return {
        "n_words": len(words),
        "min_occurrences": BASELINE_MIN_OCCURRENCES,
        "median_distinct_first": float(np.median(d1)),
        "median_distinct_last": float(np.median(d2)),
        "median_share_first": float(np.median([share(a[w]) for w in words])),
        "median_share_last": float(np.median([share(b[w]) for w in words])),
        "share_growing": float(np.mean(d2 > d1)),
    }


def _interpretation(
    rows: list[PolysemyRow], first_layer: int, last_layer: int, baseline: dict | None
) -> str:
    split = [r.word for r in rows if r.reading == "split"]
    few = [r.word for r in rows if r.occurrences < 10]
    if len(split) == len(rows):
        verdict = (
            f"For every word the number of distinct top factors grows from layer "
            f"{first_layer} to layer {last_layer}: later layers split senses, as the "
            "reference observed."
        )
    elif split:
        verdict = (
            f"For {len(split)} of {len(rows)} words ({', '.join(split)}) the number of "
            f"distinct top factors grows from layer {first_layer} to layer {last_layer}: "
            "there, later layers split senses; for the others they do not."
        )
    else:
        verdict = (
            f"For no word does the number of distinct top factors grow from layer "
            f"{first_layer} to layer {last_layer}: this run does not show later layers "
            "splitting senses."
        )
    if baseline:
        verdict += (
            f" For comparison, the median word with {baseline['min_occurrences']}+ "
            f"occurrences goes from {baseline['median_distinct_first']:g} to "
            f"{baseline['median_distinct_last']:g} distinct top factors (most common one: "
            f"{baseline['median_share_first']:.0%} → {baseline['median_share_last']:.0%} of "
            "occurrences), so splitting by itself is not specific to ambiguous words."
        )
    if few:
        verdict += f" Fewer than 10 occurrences of {', '.join(few)}: read those rows with care."
    return verdict
