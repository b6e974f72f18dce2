"""The report's settings and the plain data that flows through gather → compute → render."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorscope.stages.evidence_summary import EvidenceView

DEFAULT_WORDS = ("left", "right", "bank", "play")
"""Frequent ambiguous words whose factors the polysemy check compares."""

FIGURES_DIR = "figures"
"""Sub-folder of the output folder that the report owns (its PNGs are rewritten)."""

CONTEXTS_PER_FACTOR = 10
BASELINE_MIN_OCCURRENCES = 20
"""Words with at least this many occurrences form the polysemy check's baseline."""


# ----------------------------------------------------------------------------- gathered


@dataclass(frozen=True)
class ExampleData:
    """What the warehouse holds about one picked example factor."""

    factor: int
    level: str
    peak_layer: int
    importance: float
    label: str | None
    contexts: list[dict[str, Any]]
    """Top contexts at the peak layer: rank, alpha, context, highlight_start, highlight_end."""
    curve_layers: list[int]
    curve_importance: list[float]


@dataclass(frozen=True)
class ReportData:
    """Everything the report reads from a database, as plain Python values.

    ``quality`` and ``counts`` are the rows of ``layer_quality`` and of the per-layer code
    counts; ``tops`` maps each word to the top factor of each of its occurrences at the
    first and at the last layer (None: nothing fired); ``spread_first`` / ``spread_last``
    are the top-factor spreads of the frequent words; ``labels`` names the words' top
    factors that have a label.
    """

    overview: dict[str, Any]
    quality: list[dict[str, Any]]
    counts: list[dict[str, Any]]
    n_active: int
    level_counts: dict[str, int]
    first_layer: int
    last_layer: int
    examples: dict[str, list[ExampleData]]
    tops: dict[str, tuple[list[int | None], list[int | None]]]
    spread_first: list[dict[str, Any]]
    spread_last: list[dict[str, Any]]
    labels: dict[int, str] = field(default_factory=dict)
    senses: dict[str, Any] | None = None
    """The sense probe of the active dictionary (``factorscope probe``), None if unprobed:
    ``info`` (source, settings, counts) and ``summary`` (rows of ``sense_probe_summary``)."""
    effects_by_level: list[dict[str, Any]] = field(default_factory=list)
    """``factorscope effects``'s ablation effects by IS level against the random-direction
    control (rows of ``warehouse.effects.effects_by_level``); empty when not measured."""
    evidence: EvidenceView | None = None
    """The dictionary's explanations beside its controls (``factorscope explain``, the
    Evidence page's numbers), None on a file made before schema 7."""


# ----------------------------------------------------------------------------- computed


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
class SenseRow:
    """The sense probe at one layer, averaged over the probed words (95% CI: lo, hi)."""

    layer: int
    n_lemmas: int
    codes: float
    codes_lo: float
    codes_hi: float
    states: float
    states_lo: float
    states_hi: float
    chance: float
    off_word_share: float | None

    @property
    def kept(self) -> float | None:
        """Codes' accuracy as a share of the states' (None when the states are at 0)."""
        return self.codes / self.states if self.states > 0 else None


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
    """What :func:`~factorscope.report.write_report` wrote, with the numbers it reported."""

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
    senses: list[SenseRow] | None = None
    """The sense probe per layer (None: the run has not been probed)."""
    seconds: float = 0.0

    def line(self) -> str:
        polysemy = (
            f"sense probe of {self.senses[0].n_lemmas:,} words"
            if self.senses
            else f"{len(self.polysemy)} polysemy words"
        )
        return (
            f"report: {self.readme} ({len(self.figures)} figures, "
            f"{self.n_factors_active:,}/{self.n_factors:,} factors active, "
            f"{polysemy}) in {self.seconds:.1f} s"
        )
