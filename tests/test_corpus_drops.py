"""No text is dropped without a count (issue 22): re-splitting and the drop report.

A plain-text file with one sentence a line and no blank lines is one paragraph to the
sentence splitter; unbalanced quotes (`` `show w' ``, a stray apostrophe) keep sentencex
from cutting it, and ``--max-words`` then dropped whole runs of lines silently.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from factorscope.ingest.corpus import (
    DROP_REASONS,
    CorpusConfig,
    CorpusReport,
    read_corpus_with_report,
)
from factorscope.stages.ingest import IngestConfig
from factorscope.warehouse.connection import connect

WORDS = [
    *("license", "program", "software", "copy", "modify", "distribute", "warranty"),
    *("source", "code", "terms", "conditions", "public", "notice", "work", "covered"),
    *("patent", "user", "product", "interface", "object", "form"),
]


def write_licence_like(path: Path, n_lines: int = 272, seed: int = 3) -> list[str]:
    """One sentence or heading a line, no blank line, unbalanced quotes here and there."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 18)))
        if i % 9 == 0:
            line = f"Type `show w' for the details of clause {i}"
        elif i % 13 == 0:
            line = f"SECTION {i} TERMS AND CONDITIONS"
        elif i % 7 == 0:
            line = f"The user's rights under '{body} number {i}"
        else:
            line = f"{body.capitalize()} number {i}."
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def kept_share(lines: list[str], texts: list[str]) -> float:
    """The share of lines whose text is stored (as a sentence or inside one)."""
    joined = "\n".join(texts)
    return sum(line in joined for line in lines) / len(lines)


def accounted(report: CorpusReport) -> int:
    return report.kept + sum(n for n, _ in report.dropped.values())


@pytest.mark.timeout(60)
def test_a_line_per_sentence_file_with_unbalanced_quotes_keeps_its_lines(tmp_path: Path):
    lines = write_licence_like(tmp_path / "licence.txt")
    config = CorpusConfig(source=str(tmp_path / "licence.txt"), max_sentences=None)
    # Without re-splitting (runs made before it) the failure is real: lines go missing.
    before, old = read_corpus_with_report(CorpusConfig(**{**config.to_dict(), "resplit": False}))
    assert kept_share(lines, [s.text for s in before]) < 0.8
    assert old.dropped["too long"][0] > 0  # ... but counted, never silently
    kept, report = read_corpus_with_report(config)
    assert kept_share(lines, [s.text for s in kept]) >= 0.95
    assert report.resplit > 0
    assert accounted(report) == report.segments


@pytest.mark.timeout(60)
def test_every_segment_is_kept_or_counted_under_a_reason(tmp_path: Path):
    corpus = tmp_path / "c.txt"
    long = " ".join(["word"] * 60)
    corpus.write_text(
        "\n".join(
            ["A short one.", "The cat sat on the mat.", "The cat sat on the mat."]
            + [f"Sentence number {i} is here." for i in range(20)]
            + [long + "."]
        ),
        encoding="utf-8",
    )
    config = CorpusConfig(source=str(corpus), split="lines", max_sentences=10)
    kept, report = read_corpus_with_report(config)
    assert len(kept) == report.kept == 10
    assert report.dropped["too short"] == [1, 3]
    assert report.dropped["duplicate"] == [1, 6]
    assert report.dropped["too long"] == [1, 60]
    assert report.dropped["not sampled"][0] == 11
    assert accounted(report) == report.segments == 24
    assert set(report.dropped) <= set(DROP_REASONS)
    line = report.line()
    for reason in ("too short 1", "duplicate 1", "too long 1", "not sampled 11"):
        assert reason in line


@pytest.mark.timeout(60)
def test_runs_made_before_resplit_keep_their_config_hash():
    old = IngestConfig().to_dict()
    del old["corpus"]["resplit"]  # what a run stored before the setting existed
    restored = IngestConfig.from_dict(old)
    assert restored.corpus.resplit is False
    assert restored.to_dict() == old
    assert IngestConfig().config_hash() != restored.config_hash()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_ingest_summary_and_the_database_report_every_drop(
    tmp_path: Path, tiny_model_dir: Path
):
    corpus = tmp_path / "licence.txt"
    write_licence_like(corpus)
    with corpus.open("a", encoding="utf-8") as handle:
        handle.write("\n\nToo short.\n\nThe cat sat on the mat.\n\nThe cat sat on the mat.\n")
    db = tmp_path / "run.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from factorscope.cli import main; sys.exit(main())",
            "ingest",
            "--db",
            str(db),
            "--corpus",
            str(corpus),
            "--model",
            str(tiny_model_dir),
            "--max-sentences",
            "200",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={"FACTORSCOPE_PROGRESS": "0", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    second = done.stdout.splitlines()[1]
    assert second.startswith("  corpus: kept 200 of ")
    for reason in ("too short 1", "duplicate 1", "not sampled"):
        assert reason in second, second
    con = connect(db, read_only=True)
    try:
        rows = dict(
            (reason, n)
            for reason, n in con.execute("SELECT reason, sentences FROM ingest_drops").fetchall()
        )
        segments, n_sentences = con.execute("SELECT n_segments, n_sentences FROM runs").fetchall()[
            0
        ]
    finally:
        con.close()
    assert rows["too short"] == 1 and rows["duplicate"] == 1
    assert n_sentences + sum(rows.values()) == segments
    status = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from factorscope.cli import main; sys.exit(main())",
            "status",
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "400"},
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert f"corpus: {segments:,} segments" in status.stdout
    assert "too short 1 (" in status.stdout and "duplicate 1 (" in status.stdout
