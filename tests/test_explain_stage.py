"""`factorscope explain` on a real run: planted factors found, a control at chance, kill-safe.

The run is real (a tiny BERT over 300 random sentences, real SPAMS, real DuckDB, the
real spaCy tagger). Two factors of the learned dictionary are replaced by planted ones:
factor 0 fires on exactly the word "river", factor 1 on exactly the tagger's nouns. The
stage must find "the word “river”" and "nouns" with held-out detection near 1, while a
Gaussian control (random atoms, lambda matched to the parent's L0, really encoded)
scores near chance. A kill lands mid-stage (some layers committed in ``<db>.wip``, not
all, nothing published) before the resume is compared with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factorscope.stages.encode import EncodeConfig, run_encode
from factorscope.stages.explain import ExplainConfig, run_explain
from factorscope.stages.ingest import IngestConfig, run_ingest
from factorscope.stages.learn import ControlConfig, LearnConfig, run_learn, run_learn_control
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import wip_path
from tests.conftest import copy_db, write_random_corpus
from tests.contract import assert_tables_match

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLI = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
N_FACTORS = 24


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A real run with a learned dictionary (1) and its Gaussian control (2), both encoded."""
    from factorscope.ingest.corpus import CorpusConfig

    folder = tmp_path_factory.mktemp("explain")
    corpus = write_random_corpus(folder / "corpus.txt", n_sentences=300, seed=3)
    db = folder / "run.duckdb"
    run_ingest(
        db,
        IngestConfig(
            corpus=CorpusConfig(source=str(corpus), split="lines", max_sentences=None),
            model=str(tiny_model_dir),
            chunk_size=64,
            sample_size=None,
        ),
    )
    learned = run_learn(db, LearnConfig(n_factors=N_FACTORS, lambda1=0.05, seed=0))
    run_encode(db, EncodeConfig(dictionary_id=learned.dictionary_id))
    control = run_learn_control(db, ControlConfig(kind="gaussian", parent_id=1, seed=0))
    run_encode(db, EncodeConfig(dictionary_id=control.dictionary_id))
    return db


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _plant(db: Path) -> None:
    """Factor 0 := the word "river", factor 1 := nouns, at every layer of dictionary 1."""
    con = connect(db)
    try:
        con.execute("DELETE FROM codes WHERE dictionary_id = 1 AND factor IN (0, 1)")
        con.execute(
            """
            INSERT INTO codes
            SELECT 1, l.layer, 0, t.token_id, 1.0 + (hash(t.token_id, l.layer) % 1000) / 1000.0
            FROM tokens t, range(3) l(layer) WHERE t.word = 'river'
            UNION ALL
            SELECT 1, l.layer, 1, g.token_id, 1.0 + (hash(g.token_id, l.layer) % 997) / 997.0
            FROM token_tags g, range(3) l(layer) WHERE g.pos = 'NOUN'
            """
        )
    finally:
        con.close()


def test_planted_factors_are_explained_and_the_control_scores_at_chance(
    run_db: Path, tmp_path: Path
) -> None:
    db = copy_db(run_db, tmp_path)
    first = run_explain(db, ExplainConfig())
    assert first.tagged > 0 and set(first.explained) == {1, 2}
    _plant(db)
    again = run_explain(db, ExplainConfig(force=True))
    assert again.tagged == 0  # tags are kept

    rows = _rows(
        db,
        "SELECT e.layer, e.factor, e.text, s.detection, s.detection_low FROM explanations e "
        "JOIN explanation_scores s USING (dictionary_id, layer, factor) "
        "WHERE e.dictionary_id = 1 AND e.factor IN (0, 1) ORDER BY e.layer, e.factor",
    )
    assert len(rows) == 6
    for _layer, factor, text, detection, low in rows:
        assert text == ("the word “river”" if factor == 0 else "nouns"), rows
        assert detection > 0.97 and low > 0.9, rows

    control = np.array(
        [
            r[0]
            for r in _rows(
                db,
                "SELECT detection FROM explanation_scores WHERE dictionary_id = 2 "
                "AND detection IS NOT NULL",
            )
        ]
    )
    assert len(control) >= N_FACTORS  # most of the control's factor-layers were scored
    assert abs(control.mean() - 0.5) < 0.1, control
    # the dictionary and its control are one kind each, and the control's parent is 1
    kinds = _rows(db, "SELECT dictionary_id, kind, parent_id FROM dictionaries ORDER BY 1")
    assert kinds == [(1, "learned", None), (2, "control", 1)]


def test_explaining_a_control_or_a_missing_dictionary_is_one_line(
    run_db: Path, tmp_path: Path
) -> None:
    db = copy_db(run_db, tmp_path)
    before = db.read_bytes()
    for args, words in (
        (["--dictionary", "2"], "is a control"),
        (["--dictionary", "9"], "does not exist"),
        (["--dictionay", "1"], "No such option"),
    ):
        done = subprocess.run(
            [*CLI, "explain", "--db", str(db), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert db.read_bytes() == before


def _explain_tables(db: Path):
    import polars as pl

    con = connect(db, read_only=True)
    try:
        return {
            name: pl.from_arrow(con.sql(f"SELECT * FROM {name} ORDER BY ALL").to_arrow_table())
            for name in ("explanations", "explanation_scores")
        }
    finally:
        con.close()


def test_a_killed_explain_resumes_to_the_same_tables(run_db: Path, tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    reference = copy_db(run_db, tmp_path / "reference")
    run_explain(reference, ExplainConfig())
    db = copy_db(run_db, tmp_path)
    env = {**os.environ, "FACTORSCOPE_PROGRESS": "0", "FACTORSCOPE_CRASH_AT": "explain.layer:4"}
    done = subprocess.run(
        [*CLI, "explain", "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-1500:]
    # mid-stage: 4 of the 6 (dictionary, layer) pairs are committed in the staging copy,
    # and the published file has none
    staged = _rows(wip_path(db), "SELECT count(*) FROM explain_layers")[0][0]
    assert staged == 4
    assert _rows(db, "SELECT count(*) FROM explain_layers")[0][0] == 0

    resumed = run_explain(db, ExplainConfig())
    assert resumed.layers_done == 2 and resumed.layers_reused == 4
    assert not wip_path(db).exists()
    want, got = _explain_tables(reference), _explain_tables(db)
    for name in want:
        assert_tables_match(want[name], got[name], name=name)
