"""The reproduction report: one Markdown page and a few PNG plots for a database.

:func:`write_report` reads a published database through :mod:`factorscope.warehouse.queries`
(it never writes to it) and writes ``README.md`` plus ``figures/*.png`` into an output
folder: counts, stage timings, reconstruction quality per layer, factor levels, example
factors of each level with their top contexts and importance curves, and the
reference's polysemy observation checked on this run.

It runs in three steps, one module each: :mod:`~factorscope.report.gather` (every read,
into plain data), :mod:`~factorscope.report.compute` (pure functions: polysemy rows,
baseline, interpretation, example picks) and render (:mod:`~factorscope.report.figures`,
:mod:`~factorscope.report.markdown`). :mod:`~factorscope.report.model` holds the data
that passes between them.

Polysemy check (Yun et al. 2021 saw a factor for "left" whose layer-0 contexts are all
"left" while later layers separate its senses): for each word, the *top factor* of an
occurrence at a layer is the factor of largest alpha there. Comparing the first and the
last layer we report the number of distinct top factors, the share of occurrences the
most common top factor covers, and the Jaccard index of the two top-factor sets. More
distinct top factors at the last layer reads as "later layers split senses".
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from factorscope.errors import InputError
from factorscope.report import compute
from factorscope.report.compute import polysemy_row
from factorscope.report.facts import FACTS_NAME, run_facts, write_facts
from factorscope.report.figures import Figures, draw_figures
from factorscope.report.gather import gather
from factorscope.report.markdown import Page, highlight, md_escape, render_markdown
from factorscope.report.model import (
    BASELINE_MIN_OCCURRENCES,
    CONTEXTS_PER_FACTOR,
    DEFAULT_WORDS,
    FIGURES_DIR,
    ExampleFactor,
    PolysemyRow,
    ReportData,
    ReportSummary,
)
from factorscope.warehouse.queries import LEVELS

__all__ = [
    "BASELINE_MIN_OCCURRENCES",
    "CONTEXTS_PER_FACTOR",
    "DEFAULT_WORDS",
    "FIGURES_DIR",
    "ExampleFactor",
    "PolysemyRow",
    "ReportSummary",
    "highlight",
    "md_escape",
    "polysemy_row",
    "write_report",
]

log = logging.getLogger(__name__)


def write_report(
    db_path: str | Path,
    out_dir: str | Path,
    *,
    examples_per_level: int = 3,
    words: tuple[str, ...] | list[str] = DEFAULT_WORDS,
    seed: int = 0,
) -> ReportSummary:
    """Write ``out_dir/README.md``, ``out_dir/figures/*.png`` and ``out_dir/facts.json`` (the
    run's figures, which the project README quotes) for the database at ``db_path``.

    Reads only. Example factors: ``examples_per_level`` per level, drawn with ``seed``
    from the stronger half of the level (by importance at the peak layer). The PNGs
    left in ``out_dir/figures`` by an earlier report are removed first.
    """
    if isinstance(examples_per_level, bool) or not isinstance(examples_per_level, int):
        raise InputError(f"examples_per_level must be an integer, got {examples_per_level!r}")
    if not 0 <= examples_per_level <= 20:
        raise InputError(f"examples_per_level must be in 0..20, got {examples_per_level}")
    clean_words = compute.clean_words(words)

    started = time.perf_counter()
    db_path, out = Path(db_path), Path(out_dir)
    data = gather(db_path, words=clean_words, examples_per_level=examples_per_level, seed=seed)
    # Figures only once the database has been read: a bad path leaves the folder alone.
    figures = draw_figures(out / FIGURES_DIR, data)
    summary = _summarise(data, figures, readme=out / "README.md")
    page = Page(
        summary=summary,
        data=data,
        figures=figures,
        db_path=db_path,
        out=out,
        seed=seed,
        examples_per_level=examples_per_level,
        words=clean_words,
    )
    summary.readme.write_text(render_markdown(page), encoding="utf-8")
    # The run's figures as a file: README quotes them from it (report/facts.py).
    write_facts(out / FACTS_NAME, run_facts(summary, data))
    summary.seconds = time.perf_counter() - started
    log.info("report written to %s in %.1f s", summary.readme, summary.seconds)
    return summary


def _summarise(data: ReportData, figures: Figures, *, readme: Path) -> ReportSummary:
    """The report's numbers from the gathered data and the drawn figures."""
    polysemy, skipped = compute.polysemy_rows(
        list(data.tops), data.tops, layers=(data.first_layer, data.last_layer)
    )
    overview = data.overview
    return ReportSummary(
        readme=readme,
        figures=figures.all,
        model=str(overview["model"]),
        corpus=str(overview["corpus"]),
        n_sentences=overview["n_sentences"],
        n_tokens=overview["n_tokens"],
        n_layers=overview["n_layers"],
        n_factors=overview["n_factors"],
        n_codes=compute.total_codes(data.counts),
        n_factors_active=data.n_active,
        timings=dict(overview["timings"]),
        fvu=compute.fvu_by_layer(data.quality),
        level_counts=data.level_counts,
        examples={
            level: [
                ExampleFactor(
                    factor=ex.factor,
                    level=level,
                    peak_layer=ex.peak_layer,
                    importance=ex.importance,
                    label=ex.label,
                    n_contexts=len(ex.contexts),
                    figure=figures.examples[(level, ex.factor)],
                )
                for ex in data.examples[level]
            ]
            for level in LEVELS
        },
        polysemy=polysemy,
        skipped_words=skipped,
        baseline=compute.baseline(data.spread_first, data.spread_last),
        senses=compute.sense_rows(data.senses["summary"]) if data.senses else None,
    )
