"""One dictionary's evidence beside its controls: what the Evidence page and the report
both show, read and computed in one place so the two never disagree.

The reads are ``warehouse.evidence_read``'s, the numbers ``evidence.claims``' (mean
held-out detection with a bootstrap interval, word-level share and levels with Wilson
intervals, learned minus control with a verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from factorscope.evidence import claims
from factorscope.warehouse import evidence_read
from factorscope.warehouse.connection import Connection


@dataclass(frozen=True, eq=False)
class EvidenceView:
    """What the Evidence page shows for one dictionary beside its controls.

    ``claims`` maps each dictionary (the one shown, then its controls) to its
    :class:`~factorscope.evidence.claims.LayerClaim` by layer; ``comparisons`` is the
    shown dictionary against its controls pooled, by layer; ``quality`` the
    ``layer_quality`` rows of all of them (``role`` 'dictionary' or 'control');
    ``levels`` each dictionary's level distribution over every factor that fires.
    """

    dictionary_id: int
    kind: str
    parent_id: int | None
    controls: list[dict[str, Any]]
    explained_layers: list[int]
    claims: dict[int, dict[int, claims.LayerClaim]]
    comparisons: dict[int, claims.Comparison]
    quality: pl.DataFrame
    levels: dict[int, dict[str, claims.Share]]
    explained_dictionaries: list[int] = field(default_factory=list)

    @property
    def control_ids(self) -> list[int]:
        return [int(c["dictionary_id"]) for c in self.controls]

    @property
    def scored_controls(self) -> list[int]:
        """The controls with scored factors (explained)."""
        return [d for d in self.control_ids if self.claims.get(d)]


def scored_of(frame: pl.DataFrame, dictionary_id: int) -> claims.ScoredFactors:
    """One dictionary's rows of :func:`evidence_read.scored_factors` as claims' input."""
    part = frame.filter(pl.col("dictionary_id") == int(dictionary_id))
    return claims.ScoredFactors.from_columns(
        int(dictionary_id),
        layer=part["layer"].to_list(),
        factor=part["factor"].to_list(),
        detection=part["detection"].to_list(),
        word_level=part["word_level"].to_list(),
        level=part["level"].to_list(),
    )


def summarise_evidence(con: Connection, shown: int) -> EvidenceView:
    """Dictionary ``shown`` and its encoded controls, read from ``con`` (read-only)."""
    about = evidence_read.dictionary_info(con, shown) or {}
    controls = evidence_read.dictionary_controls(con, shown)
    ids = [shown] + [int(c["dictionary_id"]) for c in controls]
    frame = evidence_read.scored_factors(con, ids, word_level_at=claims.WORD_LEVEL_DETECTION)
    quality = evidence_read.quality_beside_controls(con, shown)
    counts = evidence_read.level_counts(con, ids)
    explained = evidence_read.explained_layers(con, shown)
    explained_dictionaries = evidence_read.explained_dictionaries(con)
    scored = {d: scored_of(frame, d) for d in ids}
    by_dictionary = {d: claims.layer_claims(scored[d]) for d in ids}
    comparisons_ = claims.compare_layers(
        scored[shown], [scored[d] for d in ids[1:] if scored[d].layer.size]
    )
    levels = {}
    for d in ids:
        part = counts.filter(pl.col("dictionary_id") == d)
        found = dict(zip(part["level"].to_list(), part["n_factors"].to_list(), strict=True))
        total = sum(found.values())
        levels[d] = {lv: claims.wilson(int(found.get(lv, 0)), total) for lv in claims.LEVELS}
    return EvidenceView(
        dictionary_id=shown,
        kind=str(about.get("kind") or "learned"),
        parent_id=about.get("parent_id"),
        controls=controls,
        explained_layers=explained,
        claims=by_dictionary,
        comparisons=comparisons_,
        quality=quality,
        levels=levels,
        explained_dictionaries=explained_dictionaries,
    )
