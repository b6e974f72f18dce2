"""The report's reads: one read-only pass over a database, through the warehouse queries.

Nothing here knows SQL; every read is a :mod:`factorscope.warehouse.queries` function,
and what comes back is turned into plain Python values (:class:`ReportData`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factorscope.report.compute import pick_examples
from factorscope.report.model import (
    BASELINE_MIN_OCCURRENCES,
    CONTEXTS_PER_FACTOR,
    ExampleData,
    ReportData,
)
from factorscope.stages.evidence_summary import EvidenceView, summarise_evidence
from factorscope.warehouse import effects, evidence_read, queries, senses
from factorscope.warehouse.connection import Connection
from factorscope.warehouse.queries import LEVELS, WarehouseReader


def gather(
    db_path: str | Path, *, words: list[str], examples_per_level: int, seed: int
) -> ReportData:
    """Read everything the report shows from the database at ``db_path`` (read-only).

    ``words`` are the (clean) polysemy words; the example factors are picked with
    :func:`~factorscope.report.compute.pick_examples` from ``examples_per_level`` and
    ``seed``, and only the picked ones have their contexts and curves read.
    """
    reader = WarehouseReader(Path(db_path))
    try:
        with reader.connect() as con:
            # The reads run in the order the report has always made them, so a broken
            # database fails on the same read (and with the same message) as before.
            overview = queries.run_overview(con)
            quality = queries.layer_quality(con).to_dicts()
            counts = queries.code_counts(con).to_dicts()
            n_active = queries.active_factor_count(con)
            level_counts = queries.level_counts(con)
            all_layers = queries.layers(con)
            examples = _examples(con, examples_per_level, seed)
            first_layer, last_layer = all_layers[0], all_layers[-1]
            tops = _word_tops(con, words, first_layer, last_layer)
            spread_first = _spread(con, first_layer)
            spread_last = _spread(con, last_layer)
            top_factors = {f for pair in tops.values() for f in (*pair[0], *pair[1])} - {None}
            labels = queries.factor_labels(con, sorted(top_factors))
            sense_probe = _senses(con)
            evidence = _evidence(con, int(overview["dictionary_id"]))
            by_level = effects.effects_by_level(con, int(overview["dictionary_id"])).to_dicts()
    finally:
        reader.close()
    return ReportData(
        overview=overview,
        quality=quality,
        counts=counts,
        n_active=n_active,
        level_counts=level_counts,
        first_layer=first_layer,
        last_layer=last_layer,
        examples=examples,
        tops=tops,
        spread_first=spread_first,
        spread_last=spread_last,
        labels=labels,
        senses=sense_probe,
        evidence=evidence,
        effects_by_level=by_level,
    )


def _evidence(con: Connection, dictionary_id: int) -> EvidenceView | None:
    """The dictionary's evidence beside its controls, or None before schema 7."""
    if not evidence_read.has_evidence_tables(con):
        return None
    return summarise_evidence(con, dictionary_id)


def _senses(con: Connection) -> dict[str, Any] | None:
    """The sense probe of the active dictionary, or None when it has not been probed."""
    info = senses.probe_info(con)
    if info is None:
        return None
    summary = senses.probe_summary(con, int(info["dictionary_id"]))
    return {"info": info, "summary": summary.to_dicts()}


def _examples(con: Connection, examples_per_level: int, seed: int) -> dict[str, list[ExampleData]]:
    """The picked example factors of every level, with their contexts and curves."""
    examples: dict[str, list[ExampleData]] = {}
    for level in LEVELS:
        frame = queries.level_factors(con, level)
        info = {int(r["factor"]): r for r in frame.iter_rows(named=True)}
        picked = pick_examples(list(info), examples_per_level, seed, level)
        labels = queries.factor_labels(con, picked)
        examples[level] = []
        for f in picked:
            peak = int(info[f]["peak_layer"])
            curve = queries.importance_curve(con, f)
            examples[level].append(
                ExampleData(
                    factor=f,
                    level=level,
                    peak_layer=peak,
                    importance=float(info[f]["importance"]),
                    label=labels.get(f),
                    contexts=queries.top_contexts(con, f, peak, k=CONTEXTS_PER_FACTOR).to_dicts(),
                    curve_layers=[int(x) for x in curve["layer"].to_list()],
                    curve_importance=[float(x) for x in curve["importance"].to_list()],
                )
            )
    return examples


def _word_tops(
    con: Connection, words: list[str], first_layer: int, last_layer: int
) -> dict[str, tuple[list[int | None], list[int | None]]]:
    """{word: (top factor of each occurrence at the first layer, ... at the last layer)}."""
    tops: dict[str, tuple[list[int | None], list[int | None]]] = {}
    for word in words:
        a = queries.word_top_factors(con, word, first_layer)
        b = queries.word_top_factors(con, word, last_layer)
        tops[word] = (a["factor"].to_list(), b["factor"].to_list())
    return tops


def _spread(con: Connection, layer: int) -> list[dict]:
    return queries.word_top_factor_spread(
        con, layer, min_occurrences=BASELINE_MIN_OCCURRENCES
    ).to_dicts()
