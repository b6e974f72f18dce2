"""The reproduction report: numbers, Markdown sections, figures, CLI."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from factorscope.cli import main
from factorscope.errors import InputError
from factorscope.report import highlight, md_escape, polysemy_row, write_report
from factorscope.warehouse.connection import connect
from factorscope.warehouse.queries import LEVELS
from factorscope.warehouse.synthetic import build_synthetic_db
from tests.conftest import copy_db

SECTIONS = (
    "## Counts",
    "## Timings",
    "## Reconstruction quality per layer",
    "## Factor levels",
    "## Example factors",
    "## Polysemy",
    "### Baseline",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _check_figures(out: Path, summary) -> str:
    text = summary.readme.read_text(encoding="utf-8")
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert referenced, "the report shows no figure"
    for ref in referenced:
        width, height = _png_size(out / ref)
        assert 800 <= width <= 1400 and 300 <= height <= 1000, (ref, width, height)
    on_disk = {p.relative_to(out).as_posix() for p in (out / "figures").glob("*.png")}
    assert on_disk == set(referenced) == {p.relative_to(out).as_posix() for p in summary.figures}
    return text


def _sql(db: Path, query: str, params=None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def _occurrences(db: Path, word: str) -> int:
    return _sql(
        db,
        "SELECT count(*) FROM tokens WHERE lower(word) = ? AND char_start = word_start",
        [word],
    )[0][0]


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report-synth") / "synth.duckdb"
    return build_synthetic_db(path, n_sentences=150, n_factors=32, hidden_size=8, seed=4)


def test_report_on_a_real_pipeline_db(tiny_pipeline_db, tmp_path):
    db = copy_db(tiny_pipeline_db, tmp_path)
    out = tmp_path / "report"
    summary = write_report(db, out, examples_per_level=2)
    text = _check_figures(out, summary)
    for section in SECTIONS:
        assert section in text

    quality = dict(_sql(db, "SELECT layer, fvu FROM layer_quality"))
    n_layers = _sql(db, "SELECT n_layers FROM runs")[0][0]
    assert sorted(summary.fvu) == list(range(n_layers)) == sorted(quality)
    for layer, fvu in summary.fvu.items():
        assert 0.0 <= fvu <= 1.0
        assert fvu == pytest.approx(quality[layer])
        assert f"| {layer} |" in text

    active = _sql(db, "SELECT count(DISTINCT factor) FROM codes")[0][0]
    assert summary.n_factors_active == active > 0
    assert sum(summary.level_counts.values()) == active
    assert summary.n_codes == _sql(db, "SELECT count(*) FROM codes")[0][0]
    assert summary.n_sentences == _sql(db, "SELECT count(*) FROM sentences")[0][0]

    # Example factors belong to their level and show their top contexts, word in bold.
    levels = dict(_sql(db, "SELECT factor, level FROM factor_levels"))
    for level, picked in summary.examples.items():
        assert len(picked) == min(2, summary.level_counts[level])
        for ex in picked:
            assert levels[ex.factor] == level
            assert ex.n_contexts > 0
            assert f"#### Factor {ex.factor}" in text
    assert "**" in text.split("## Example factors")[1]

    # Every conftest sentence word is there; the polysemy numbers are consistent.
    assert summary.skipped_words == []
    assert [r.word for r in summary.polysemy] == ["left", "right", "bank", "play"]
    for row in summary.polysemy:
        assert row.occurrences == _occurrences(db, row.word) > 0
        assert (row.first_layer, row.last_layer) == (0, n_layers - 1)
        for distinct, share in (
            (row.distinct_first, row.top_share_first),
            (row.distinct_last, row.top_share_last),
        ):
            assert 0 <= distinct <= row.occurrences
            assert (distinct == 0 and share == 0) or 1 / row.occurrences <= share <= 1
        assert 0.0 <= row.jaccard <= 1.0
        assert f"| {row.word} | {row.occurrences} |" in text


def test_report_on_a_synthetic_db(synthetic_db, tmp_path):
    out = tmp_path / "report"
    words = ("left", "play", "bank", "xylophone")
    summary = write_report(synthetic_db, out, words=words, seed=3)
    text = _check_figures(out, summary)
    for section in SECTIONS:
        assert section in text
    quality = dict(_sql(synthetic_db, "SELECT layer, fvu FROM layer_quality"))
    assert summary.fvu == pytest.approx(quality)
    assert len(summary.fvu) == summary.n_layers
    assert all(0.0 <= fvu <= 1.0 for fvu in summary.fvu.values())
    assert sum(summary.level_counts.values()) == summary.n_factors_active
    assert (
        summary.n_factors_active
        == _sql(synthetic_db, "SELECT count(DISTINCT factor) FROM codes")[0][0]
    )
    assert all(summary.level_counts[level] > 0 for level in LEVELS)
    assert all(len(summary.examples[level]) == 3 for level in LEVELS)

    # Words the corpus lacks are skipped and named; the others are measured.
    absent = [w for w in words if _occurrences(synthetic_db, w) == 0]
    assert "xylophone" in absent
    assert summary.skipped_words == absent
    assert [r.word for r in summary.polysemy] == [w for w in words if w not in absent]
    assert "Skipped (no occurrences in this corpus)" in text and '"xylophone"' in text
    assert summary.baseline is not None and summary.baseline["n_words"] > 0

    # Same seed, same picks; a new report in the same folder leaves no stale figure.
    again = write_report(synthetic_db, out, words=words, seed=3)
    assert again.examples == summary.examples
    other = write_report(synthetic_db, out, words=words, seed=11)
    _check_figures(out, other)


def test_polysemy_row_numbers():
    row = polysemy_row("w", [5, 5, 5, None], [7, 8, 7, None], layers=(0, 6))
    assert (row.occurrences, row.distinct_first, row.distinct_last) == (4, 1, 2)
    assert row.top_share_first == 1.0 and row.top_share_last == pytest.approx(2 / 3)
    assert (row.top_factor_first, row.top_factor_last) == (5, 7)
    assert row.jaccard == 0.0 and row.reading == "split"
    same = polysemy_row("w", [1, 2], [2, 1], layers=(0, 2))
    assert same.jaccard == 1.0 and same.reading == "unchanged"
    assert same.top_factor_first == 1  # ties: the smaller factor
    with pytest.raises(InputError):
        polysemy_row("w", [1], [], layers=(0, 1))


def test_markdown_escaping_and_highlight():
    assert md_escape("a|b *c*\n_d_") == "a\\|b \\*c\\* \\_d\\_"
    assert highlight("he left | it", 3, 7) == "he **left** \\| it"
    assert highlight("x", 5, 9) == "x"


def test_bad_arguments(synthetic_db, tmp_path):
    with pytest.raises(InputError, match="examples_per_level"):
        write_report(synthetic_db, tmp_path, examples_per_level=-1)
    with pytest.raises(InputError, match="list of words"):
        write_report(synthetic_db, tmp_path, words="left")


def test_cli_report(synthetic_db, tmp_path, capsys):
    out = tmp_path / "cli-report"
    code = main(["report", "--db", str(synthetic_db), "--out", str(out), "--word", "left"])
    assert code == 0
    assert str(out / "README.md") in capsys.readouterr().out
    assert (out / "README.md").is_file()
    assert main(["report", "--db", str(tmp_path / "missing.duckdb"), "--out", str(out)]) == 2


def test_report_steps_are_gather_compute_render():
    """The report reads only through warehouse.queries: no SQL in its modules."""
    import factorscope.report as report

    folder = Path(report.__file__).parent
    sources = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.py")}
    assert {"gather.py", "compute.py", "figures.py", "markdown.py"} <= set(sources)
    for name, text in sources.items():
        assert not re.search(r"\bSELECT\b|\.execute\(|\.sql\(", text), name
        if name != "gather.py":
            assert not re.search(r"\bqueries\.\w+\(", text), f"{name} reads the warehouse"


def test_compute_on_plain_data():
    from factorscope.report import compute

    picks = compute.pick_examples([9, 8, 7, 6, 5, 4], 2, seed=0, level="low")
    assert len(picks) == 2 and set(picks) <= {9, 8, 7}
    assert picks == compute.pick_examples([9, 8, 7, 6, 5, 4], 2, seed=0, level="low")
    assert compute.pick_examples([], 3, seed=0, level="low") == []

    rows, skipped = compute.polysemy_rows(
        ["a", "b"], {"a": ([1, 1], [1, 2]), "b": ([], [])}, layers=(0, 3)
    )
    assert [r.word for r in rows] == ["a"] and skipped == ["b"]
    assert rows[0].reading == "split"

    first = [{"word": "x", "fired": 4, "distinct_top": 1, "top_count": 4}]
    last = [{"word": "x", "fired": 4, "distinct_top": 3, "top_count": 2}]
    base = compute.baseline(first, last)
    assert base is not None
    assert (base["n_words"], base["median_distinct_first"], base["median_distinct_last"]) == (
        1,
        1.0,
        3.0,
    )
    assert (base["median_share_first"], base["median_share_last"]) == (1.0, 0.5)
    assert base["share_growing"] == 1.0
    assert compute.baseline(first, []) is None
    text = compute.interpretation(rows, 0, 3, base)
    assert "For every word" in text and "Fewer than 10 occurrences of a" in text
    with pytest.raises(InputError, match="one string"):
        compute.clean_words("left")
    assert compute.clean_words([" Left", "left", "BANK"]) == ["left", "bank"]


def test_sense_rows_and_reading():
    from factorscope.report.compute import sense_reading, sense_rows

    def row(layer, representation, accuracy, chance=0.4, off=None):
        return {
            "layer": layer,
            "representation": representation,
            "n_lemmas": 3,
            "accuracy": accuracy,
            "accuracy_lo": accuracy - 0.1,
            "accuracy_hi": accuracy + 0.1,
            "chance": chance,
            "off_word_share": off,
        }

    summary = [
        row(0, "codes", 0.45, off=0.1),
        row(0, "states", 0.5),
        row(1, "codes", 0.9, off=0.7),
        row(1, "states", 0.95),
    ]
    rows = sense_rows(summary)
    assert [r.layer for r in rows] == [0, 1]
    assert rows[1].kept == pytest.approx(0.9 / 0.95)
    text = sense_reading(rows)
    assert "best at layer 1 (1-NN accuracy 0.90" in text and "at layer 0 they reach 0.45" in text
    assert f"{0.45 / 0.5:.0%} of the hidden states'" in text
    assert "70% of the occurrences" in text and "(at layer 0: 10%)" in text
    assert sense_reading([]) == ""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_report_carries_the_sense_probe_once_probed(tiny_pipeline_db, tmp_path):
    from factorscope.cli import main

    db = copy_db(tiny_pipeline_db, tmp_path)
    before = write_report(db, tmp_path / "before")
    assert before.senses is None and before.polysemy
    text = (tmp_path / "before" / "README.md").read_text()
    assert "factorscope probe --corpus wordnet" in text and "### Baseline" in text

    if not Path("/usr/share/wordnet/data.verb").is_file():  # pragma: no cover
        pytest.skip("wordnet-base is not installed")
    assert main(["probe", "--db", str(db), "--corpus", "wordnet", "--lemmas", "left,play"]) == 0
    out = tmp_path / "after"
    summary = write_report(db, out)
    text = _check_figures(out, summary)
    assert summary.senses is not None and summary.senses[0].n_lemmas == 2
    assert (out / "figures" / "senses.png") in summary.figures
    # the probe's table replaces the four-word table and its baseline
    assert "`factorscope probe` measures this on 2 words from wordnet" in text
    assert "### Baseline" not in text and "distinct top factors" not in text
    view = dict(
        ((layer, rep), acc)
        for layer, rep, acc in _sql(
            db, "SELECT layer, representation, accuracy FROM sense_probe_summary"
        )
    )
    for r in summary.senses:
        assert r.codes == pytest.approx(view[(r.layer, "codes")])
        assert r.states == pytest.approx(view[(r.layer, "states")])
        assert f"| {r.layer} | {r.codes:.3f} (" in text
    assert "sense probe of 2 words" in summary.line()


def _colours(png: Path) -> set[str]:
    """The opaque colours of a PNG, as #rrggbb."""
    import matplotlib.image

    pixels = (matplotlib.image.imread(png)[..., :3] * 255).round().astype(int).reshape(-1, 3)
    return {"#{:02x}{:02x}{:02x}".format(*p) for p in {tuple(p) for p in pixels.tolist()}}


def test_figures_are_readable_and_levels_wear_the_apps_colours(tmp_path):
    from factorscope import palette
    from factorscope.dash_app import components as ui
    from factorscope.report import figures

    css = (Path(ui.__file__).parent / "assets" / "bootstrap.min.css").read_text(encoding="utf-8")
    for level in LEVELS:
        theme = palette.LEVEL_THEME[level]
        # the app's badge, the app's plots and the report draw one colour per level
        assert ui.level_badge(level).color == theme
        assert ui.level_color(level) == palette.LEVEL_COLORS[level]
        assert f"--bs-{theme}:{palette.LEVEL_COLORS[level]}" in css  # the vendored Bootstrap's
    assert figures.LEVEL_COLORS is palette.LEVEL_COLORS

    levels = tmp_path / "levels.png"
    figures.plot_levels(levels, {"low": 3, "mid": 5, "high": 2})
    assert _png_size(levels)[0] >= 800
    assert set(palette.LEVEL_COLORS.values()) <= _colours(levels)
    curve = tmp_path / "curve.png"
    figures.plot_importance(curve, 4, "high", [0, 1, 2, 3], [0.1, 0.2, 0.6, 0.3])
    assert _png_size(curve)[0] >= 800
    assert palette.LEVEL_COLORS["high"] in _colours(curve)


@pytest.mark.timeout(300)
def test_report_weighs_the_evidence_against_the_controls(tmp_path: Path) -> None:
    """Issue 20: the report states, per layer, the dictionary's mean held-out detection
    beside its control's, the difference with its interval and verdict, and says how
    many layers the learned dictionary beats its control at; with no explanations it
    names the command instead."""
    from factorscope.report import write_report
    from factorscope.warehouse.synthetic import add_synthetic_evidence, build_synthetic_db

    plain = build_synthetic_db(tmp_path / "plain.duckdb", n_sentences=300, n_factors=48)
    text = write_report(plain, tmp_path / "plain-report").readme.read_text("utf-8")
    assert "Not measured on this run: run `factorscope explain`." in text

    db = build_synthetic_db(tmp_path / "ev.duckdb", n_sentences=300, n_factors=48)
    (control,) = add_synthetic_evidence(db, n_controls=1)
    out = tmp_path / "report"
    text = write_report(db, out).readme.read_text("utf-8")
    section = text.split("## Evidence")[1].split("\n## ")[0]
    verdicts = ("beats the controls", "cannot tell", "does not beat")
    rows = [r for r in section.splitlines() if r.startswith("| ") and any(v in r for v in verdicts)]
    assert len(rows) == 7, section  # one per layer
    assert "The learned dictionary beats its matched-L0 control on mean detection at" in section
    assert f"{control} (control)" in section and "FVU" in section
    assert (out / "figures" / "evidence.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_report_says_which_levels_matter(tiny_pipeline_db: Path, tmp_path: Path) -> None:
    """Issue 21: the report shows the ablation effects by IS level beside the random
    direction's, once `factorscope effects` ran; before, it names the command."""
    from factorscope.stages.effects import EffectsConfig, run_effects

    db = copy_db(tiny_pipeline_db, tmp_path)
    before = write_report(db, tmp_path / "before", examples_per_level=0).readme.read_text()
    assert "Not measured on this run: run `factorscope effects`." in before
    run_effects(db, EffectsConfig(n_contexts=4))
    text = write_report(db, tmp_path / "after", examples_per_level=0).readme.read_text()
    section = text.split("## Which levels matter")[1].split("\n## ")[0]
    rows = [
        r for r in section.splitlines() if r.split("|")[1:2] in ([" low "], [" mid "], [" high "])
    ]
    assert rows, section
    assert all(r.count("[") == 3 for r in rows), rows  # quartiles twice and an interval
    assert "embedding_shift" in section and "%" in rows[0], section
