"""learn and encode on real databases: coverage, agreement with live analysis, resume."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from factorscope.analyzer import LiveAnalyzer
from factorscope.cli import main
from factorscope.ingest.corpus import CorpusConfig
from factorscope.stages.encode import run_encode
from factorscope.stages.ingest import IngestConfig, run_ingest
from factorscope.stages.learn import LearnConfig, run_learn
from factorscope.stages.pipeline_config import load_pipeline_config
from factorscope.warehouse.connection import connect

from .conftest import TINY_FACTORS, copy_db
from .contract import assert_databases_match


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_every_token_at_every_layer_is_encoded(tiny_pipeline_db: Path) -> None:
    (n_tokens,) = rows(tiny_pipeline_db, "SELECT n_tokens FROM runs")[0]
    (n_layers,) = rows(tiny_pipeline_db, "SELECT n_layers FROM runs")[0]
    per_layer = rows(
        tiny_pipeline_db,
        "SELECT layer, sum(n_vectors) FROM encode_chunk_stats GROUP BY layer ORDER BY layer",
    )
    assert per_layer == [(layer, n_tokens) for layer in range(n_layers)]
    bad = rows(
        tiny_pipeline_db,
        "SELECT count(*) FROM codes LEFT JOIN tokens USING (token_id) "
        "WHERE tokens.token_id IS NULL OR alpha <= 0 OR factor < 0 OR factor >= ?",
        [TINY_FACTORS],
    )
    assert bad == [(0,)]
    dupes = rows(
        tiny_pipeline_db,
        "SELECT count(*) FROM (SELECT layer, factor, token_id FROM codes GROUP BY ALL "
        "HAVING count(*) > 1)",
    )
    assert dupes == [(0,)]
    quality = rows(tiny_pipeline_db, "SELECT layer, fvu, mean_l0 FROM layer_quality ORDER BY 1")
    assert [q[0] for q in quality] == list(range(n_layers))
    assert all(0.0 <= fvu <= 1.0 and l0 > 0 for _, fvu, l0 in quality)
    # the codes table is laid out for per-(factor, layer) reads
    assert rows(tiny_pipeline_db, "SELECT status FROM dictionaries") == [("encoded",)]


@pytest.mark.runcompare
def test_stored_codes_equal_live_analysis(tiny_pipeline_db: Path) -> None:
    """The app's live analyzer reproduces exactly what encode stored for a corpus sentence,
    with the solver the encode recorded (issue 24: it used to be recorded nowhere)."""
    analyzer = LiveAnalyzer.from_db(tiny_pipeline_db)
    ((recorded,),) = rows(tiny_pipeline_db, "SELECT encode_solver FROM dictionaries")
    solver = json.loads(recorded)
    assert solver == {"backend": "spams", "version": metadata.version("spams-bin")}
    assert analyzer.encoder.backend == solver["backend"]
    ((text,),) = rows(tiny_pipeline_db, "SELECT text FROM sentences WHERE sentence_idx = 1")
    decomposition = analyzer.decompose(text, top=TINY_FACTORS)
    for token in decomposition:
        token_id = 1 * 1024 + token["position"]
        for entry in token["layers"]:
            stored = rows(
                tiny_pipeline_db,
                "SELECT factor, alpha FROM codes WHERE token_id = ? AND layer = ? ORDER BY factor",
                [token_id, entry["layer"]],
            )
            live = sorted(entry["factors"])
            assert [f for f, _ in live] == [f for f, _ in stored]
            np.testing.assert_allclose([a for _, a in live], [a for _, a in stored], rtol=1e-4)
    # and the LIME classifier reads the same numbers
    token = decomposition[0]
    layer, (factor, alpha) = 1, token["layers"][1]["factors"][0]
    word = analyzer.words(text)[token["word_index"]]
    got = analyzer.alpha_for([text], [(word.start, word.end, 0)], layer, factor)
    np.testing.assert_allclose(got, [alpha], rtol=1e-4)


def test_learn_is_seeded_and_not_repeated(
    tmp_path: Path, tiny_pipeline_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = copy_db(tiny_pipeline_db, tmp_path / "a") if (tmp_path / "a").mkdir() is None else None
    b = copy_db(tiny_pipeline_db, tmp_path / "b") if (tmp_path / "b").mkdir() is None else None
    for db in (a, b):
        assert main(["learn", "--db", str(db), "-m", "16", "--seed", "3"]) == 0
    atoms = "SELECT factor, vector FROM dictionary_atoms WHERE dictionary_id = 2 ORDER BY 1"
    assert rows(a, atoms) == rows(b, atoms)
    assert main(["learn", "--db", str(a), "-m", "16", "--seed", "4"]) == 0
    different = "SELECT vector FROM dictionary_atoms WHERE dictionary_id = 3 ORDER BY factor"
    assert rows(a, different) != [(v,) for _, v in rows(a, atoms)]
    capsys.readouterr()
    assert main(["learn", "--db", str(a), "-m", "16", "--seed", "4"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert rows(a, "SELECT count(*) FROM dictionaries") == [(3,)]


def test_import_dictionary_from_npy_both_layouts(
    tmp_path: Path, tiny_pipeline_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = copy_db(tiny_pipeline_db, tmp_path)
    rng = np.random.default_rng(0)
    phi = np.abs(rng.standard_normal((32, 20)))  # d x m, as the paper publishes it
    np.save(tmp_path / "phi.npy", phi)
    np.save(tmp_path / "phi_rows.npy", phi.T)
    np.save(tmp_path / "wrong.npy", rng.standard_normal((31, 20)))
    assert main(["learn", "--db", str(db), "--from-npy", str(tmp_path / "phi.npy")]) == 0
    assert main(["learn", "--db", str(db), "--from-npy", str(tmp_path / "phi_rows.npy")]) == 0
    first = rows(db, "SELECT vector FROM dictionary_atoms WHERE dictionary_id = 2 ORDER BY factor")
    second = rows(db, "SELECT vector FROM dictionary_atoms WHERE dictionary_id = 3 ORDER BY factor")
    np.testing.assert_allclose(np.array([r[0] for r in first]), np.array([r[0] for r in second]))
    expected = (phi / np.linalg.norm(phi, axis=0)).T
    np.testing.assert_allclose(np.array([r[0] for r in first]), expected, rtol=1e-5)
    capsys.readouterr()
    before = (db.read_bytes(), rows(db, "SELECT count(*) FROM dictionaries"))
    assert main(["learn", "--db", str(db), "--from-npy", str(tmp_path / "wrong.npy")]) == 2
    assert "hidden size" in capsys.readouterr().err
    assert (db.read_bytes(), rows(db, "SELECT count(*) FROM dictionaries")) == before
    # encoding with the imported (raw-space) dictionary works end to end
    assert main(["encode", "--db", str(db)]) == 0
    assert rows(db, "SELECT status FROM dictionaries WHERE dictionary_id = 3") == [("encoded",)]


def test_encode_without_dictionary_is_a_clear_error(
    tmp_path: Path, tiny_model_dir: Path, sentence_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "nodict.duckdb"
    run_ingest(
        db,
        IngestConfig(
            corpus=CorpusConfig(source=str(sentence_corpus), split="lines"),
            model=str(tiny_model_dir),
        ),
    )
    assert main(["encode", "--db", str(db)]) == 2
    assert "no dictionary" in capsys.readouterr().err


def test_pipeline_config_rejects_unknown_keys(tmp_path: Path) -> None:
    from factorscope.errors import InputError

    path = tmp_path / "c.toml"
    path.write_text("[learn]\nn_factor = 10\n", "utf-8")
    with pytest.raises(InputError, match=r"unknown key\(s\) in \[learn\]: n_factor"):
        load_pipeline_config(path)
    path.write_text('[corpus]\nmax_sentences = "all"\n[ingest]\nsample_size = 5\n', "utf-8")
    config = load_pipeline_config(path, corpus="shakespeare")
    assert config.ingest.corpus.max_sentences is None
    assert config.ingest.corpus.source == "shakespeare"
    assert config.ingest.sample_size == 5
    assert load_pipeline_config(Path("configs/paper.toml")).learn.n_factors == 2000


def test_learn_max_vectors_spans_every_layer(
    tmp_path: Path, tiny_pipeline_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capped learn must still see every layer, or encode could not scale them."""
    db = copy_db(tiny_pipeline_db, tmp_path)
    assert main(["learn", "--db", str(db), "-m", "8", "--max-vectors", "60"]) == 0
    assert main(["encode", "--db", str(db)]) == 0
    state = rows(db, "SELECT params FROM dictionaries WHERE dictionary_id = 2")[0][0]
    assert sorted(json.loads(state)["preprocessor"]["layers"]) == [0, 1, 2]


def test_pipeline_command_runs_all_stages_then_reuses_them(
    tmp_path: Path,
    tiny_model_dir: Path,
    sentence_corpus: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'[corpus]\nsource = "{sentence_corpus}"\nsplit = "lines"\nmax_sentences = "all"\n'
        f'[ingest]\nmodel = "{tiny_model_dir}"\nchunk_size = 5\nsample_size = "all"\n'
        "[learn]\nn_factors = 16\nseed = 1\n",
        "utf-8",
    )
    db = tmp_path / "p.duckdb"
    assert main(["pipeline", "--db", str(db), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ingest: 12 sentences" in out and "learn: dictionary 1, 16 factors" in out
    levels_line = next(line for line in out.splitlines() if line.startswith("levels: "))
    counted = sum(int(part.split()[0]) for part in levels_line.removeprefix("levels: ").split(", "))
    active = rows(db, "SELECT count(DISTINCT factor) FROM codes")[0][0]
    assert counted == active > 0
    assert main(["pipeline", "--db", str(db), "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("nothing to do") == 3


@pytest.mark.runcompare
def test_encode_reads_stored_states_when_ingest_kept_them_all(
    tmp_path: Path,
    tiny_model_dir: Path,
    sentence_corpus: Path,
    tiny_pipeline_db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With every vector stored, encode needs no model; with a sample only, it does."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    corpus = CorpusConfig(source=str(sentence_corpus), split="lines", max_sentences=None)
    kept_all, sampled = tmp_path / "all.duckdb", tmp_path / "sampled.duckdb"
    for db, sample_size in ((kept_all, None), (sampled, 50)):
        run_ingest(
            db,
            IngestConfig(corpus=corpus, model=str(model), chunk_size=4, sample_size=sample_size),
        )
        run_learn(db, LearnConfig(n_factors=TINY_FACTORS, lambda1=0.05, seed=0))
    shutil.rmtree(model)
    assert main(["encode", "--db", str(kept_all)]) == 0
    assert_databases_match(tiny_pipeline_db, kept_all, ("codes",))
    capsys.readouterr()
    assert main(["encode", "--db", str(sampled)]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_app_analyzer_follows_the_published_dictionary(tiny_pipeline_db: Path, tmp_path: Path):
    """Analyze and LIME use the dictionary whose codes the pages show, after a new encode too;
    and the app's reader being open first does not keep the analyzer out (one configuration)."""
    from factorscope.dash_app.config import AppConfig
    from factorscope.warehouse.queries import WarehouseReader, active_dictionary_id

    db = copy_db(tiny_pipeline_db, tmp_path)
    with WarehouseReader(db).connect() as con:  # a page read first, as in the served app
        first = active_dictionary_id(con)
    cfg = AppConfig(db_path=db)
    analyzer = cfg.analyzer()
    assert analyzer.dictionary_id == first
    assert cfg.analyzer() is analyzer  # kept while nothing changes
    run_learn(db, LearnConfig(n_factors=TINY_FACTORS // 2, lambda1=0.05, seed=1))
    run_encode(db)
    rebuilt = cfg.analyzer()
    assert rebuilt is not analyzer and rebuilt.dictionary_id == first + 1
    assert rebuilt.n_factors == TINY_FACTORS // 2


def test_encode_stages_codes_outside_the_file_and_leaves_no_free_blocks(
    tiny_pipeline_db: Path,
) -> None:
    """Codes are loaded once, sorted, from the chunks' Parquet files (issue 15): the file
    has no blocks freed by an unsorted copy, and the staging folder is gone."""
    from factorscope.warehouse.publish import codes_staging_path
    from factorscope.warehouse.status import storage

    assert not codes_staging_path(tiny_pipeline_db).exists()
    con = connect(tiny_pipeline_db, read_only=True)
    try:
        facts = storage(con, tiny_pipeline_db)
        block_size, free_blocks = con.execute(
            "SELECT block_size, free_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchall()[0]
        unsorted = con.execute(
            "SELECT count(*) FROM (SELECT layer, factor, alpha, lag(alpha) OVER w AS before, "
            "lag(layer) OVER w AS l0, lag(factor) OVER w AS f0 FROM codes "
            "WINDOW w AS (ORDER BY rowid)) "
            "WHERE l0 IS NOT NULL AND ((layer, factor) < (l0, f0) "
            "OR (layer = l0 AND factor = f0 AND alpha > before))"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert unsorted == 0  # stored in (layer, factor, alpha DESC) order
    codes_bytes = facts["table_bytes"]["codes"]
    assert codes_bytes > 0
    assert free_blocks * block_size < codes_bytes / 2, (free_blocks, codes_bytes)
