"""The report's PNG plots (matplotlib, Agg backend, imported only when a plot is drawn)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from factorscope.palette import CONTROL_COLOR, LEARNED_COLOR, LEVEL_COLORS, NO_LEVEL_COLOR
from factorscope.report.model import ReportData
from factorscope.warehouse.queries import LEVELS

# The levels wear the app's colours: LEVEL_COLORS is factorscope.palette's, one definition.

FIGURE_DPI = 160
"""Pixels per inch of the PNGs. At the report's first 90 dpi a 4.8-inch plot was 430 px
wide, unreadable; sizes below are inches at this dpi (``WIDE`` is 960 × 544 px)."""
WIDE = (6.0, 3.4)
"""Every plot's size in inches: a full-width figure of a Markdown page."""


@dataclass
class Figures:
    """The PNGs of one report: ``examples`` maps (level, factor) to the factor's curve."""

    levels: Path
    quality: Path | None
    examples: dict[tuple[str, int], Path] = field(default_factory=dict)
    senses: Path | None = None
    evidence: Path | None = None

    @property
    def all(self) -> list[Path]:
        """Every PNG, in the order the report shows them."""
        return [
            self.levels,
            *([self.quality] if self.quality else []),
            *self.examples.values(),
            *([self.senses] if self.senses else []),
            *([self.evidence] if self.evidence else []),
        ]


def draw_figures(figures_dir: Path, data: ReportData) -> Figures:
    """Draw every plot of the report into ``figures_dir``, replacing its old PNGs."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    for old in figures_dir.glob("*.png"):
        old.unlink()
    figures = Figures(levels=figures_dir / "levels.png", quality=None)
    plot_levels(figures.levels, data.level_counts)
    if data.quality:
        figures.quality = figures_dir / "quality.png"
        plot_quality(
            figures.quality,
            [int(r["layer"]) for r in data.quality],
            [float(r["fvu"]) for r in data.quality],
            [float(r["mean_l0"]) for r in data.quality],
        )
    for level in LEVELS:
        for ex in data.examples[level]:
            png = figures_dir / f"is_{level}_factor_{ex.factor}.png"
            plot_importance(png, ex.factor, level, ex.curve_layers, ex.curve_importance)
            figures.examples[(level, ex.factor)] = png
    if data.senses and data.senses["summary"]:
        figures.senses = figures_dir / "senses.png"
        plot_senses(figures.senses, data.senses["summary"])
    view = data.evidence
    if view is not None and view.claims.get(view.dictionary_id):
        figures.evidence = figures_dir / "evidence.png"
        plot_evidence(figures.evidence, view.claims, view.dictionary_id, view.scored_controls)
    return figures


def plot_evidence(path: Path, claims: dict, shown: int, controls: list[int]) -> None:
    """Mean held-out detection per layer with 95% intervals: dictionary, controls, chance."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=WIDE)
    series = [(shown, f"dictionary {shown}", LEARNED_COLOR)]
    series += [(c, f"control {c}", CONTROL_COLOR) for c in controls]
    for d, name, color in series:
        layers = sorted(x for x in claims[d] if claims[d][x].detection is not None)
        est = [claims[d][x].detection.estimate for x in layers]
        low = [claims[d][x].detection.estimate - claims[d][x].detection.low for x in layers]
        high = [claims[d][x].detection.high - claims[d][x].detection.estimate for x in layers]
        ax.errorbar(layers, est, yerr=[low, high], marker="o", capsize=3, color=color, label=name)
    ax.axhline(0.5, color="#999999", linestyle=":", label="chance")
    ax.set_xlabel("layer")
    ax.set_ylabel("mean held-out detection")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


def plot_senses(path: Path, summary: list[dict]) -> None:
    """Sense accuracy per layer: codes vs hidden states vs chance, with 95% CI bands."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=WIDE)
    series = (("codes", "codes", "#4c78a8"), ("states", "hidden states", "#f58518"))
    for representation, name, color in series:
        rows = sorted(
            (r for r in summary if r["representation"] == representation),
            key=lambda r: r["layer"],
        )
        layers = [r["layer"] for r in rows]
        ax.plot(layers, [r["accuracy"] for r in rows], marker="o", color=color, label=name)
        ax.fill_between(
            layers,
            [r["accuracy_lo"] for r in rows],
            [r["accuracy_hi"] for r in rows],
            alpha=0.15,
            color=color,
        )
        if representation == "codes":
            ax.plot(layers, [r["chance"] for r in rows], ls="--", color="#888888", label="chance")
            ax.set_xticks(layers)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("1-NN sense accuracy")
    ax.set_title("Sense separation per layer (mean over words, 95% CI)", fontsize=11)
    ax.legend(fontsize=9, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_levels(path: Path, counts: dict[str, int]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=WIDE)
    names = list(LEVELS)
    values = [counts.get(name, 0) for name in names]
    bars = ax.bar(names, values, color=[LEVEL_COLORS[n] for n in names])
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=10)
    ax.set_ylabel("factors")
    ax.set_title("Factors by level (layer of peak importance)", fontsize=11)
    ax.set_ylim(0, max([*values, 1]) * 1.15)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


def plot_quality(path: Path, layers: list[int], fvu: list[float], l0: list[float]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=WIDE)
    ax.plot(layers, fvu, marker="o", color="#4c78a8", label="FVU")
    ax.set_xlabel("layer")
    ax.set_ylabel("FVU", color="#4c78a8")
    ax.set_ylim(0, max([*fvu, 0.05]) * 1.2)
    ax.set_xticks(layers)
    ax2 = ax.twinx()
    ax2.plot(layers, l0, marker="s", color="#e45756", label="mean L0")
    ax2.set_ylabel("mean L0 (non-zeros per token)", color="#e45756")
    ax2.set_ylim(0, max([*l0, 1.0]) * 1.2)
    ax.set_title("Reconstruction quality per layer", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


def plot_importance(
    path: Path, factor: int, level: str, layers: list[int], values: list[float]
) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=WIDE)
    color = LEVEL_COLORS.get(level, NO_LEVEL_COLOR)
    ax.plot(layers, values, marker="o", color=color)
    ax.fill_between(layers, values, alpha=0.15, color=color)
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("importance (IS)")
    ax.set_ylim(0, max([*values, 1e-9]) * 1.15)
    ax.set_title(f"factor {factor} ({level})", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)
