"""Scale-out: sharded encode to Parquet, the exact merge, attached Parquet, Ray Data."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from factorscope.cli import main
from factorscope.errors import InputError, SqlRefusedError
from factorscope.stages.merge import run_merge
from factorscope.stages.shard_encode import run_shard_encode
from factorscope.stages.sharding import ShardSpec, shard_of
from factorscope.warehouse import queries
from factorscope.warehouse.connection import connect
from factorscope.warehouse.safe_sql import run_safe_query
from factorscope.warehouse.summaries import refresh_summaries

from .conftest import copy_db
from .contract import assert_databases_match, assert_dictionaries_close, assert_tables_match

# Tables a merge of shards must reproduce. A shard runs the model and the encoder on
# other batches than a single run does, so its floats differ in the last bits: compared
# under the run contract (tests/contract.py), never with ``==``.
COMPARED = (
    "summary_top_contexts",
    "summary_importance",
    "summary_levels",
    "summary_histogram",
    "summary_neighbors",
    "summary_word_factors",
    "auto_labels",
    "sentences",
    "tokens",
)
CODES_KEY = ("layer", "factor", "token_id")


def _rows(db: Path, table: str) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def _count(db: Path, table: str) -> int:
    con = connect(db, read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    finally:
        con.close()


def _assert_same(single: Path, merged: Path, tables=COMPARED) -> None:
    assert_databases_match(single, merged, tables)


def _encode_shards(db: Path, root: Path, n: int, **kw) -> list[Path]:
    dirs = []
    for i in range(n):
        out = root / f"shard-{i}"
        summary = run_shard_encode(db, out, shard=ShardSpec(i, n), **kw)
        assert not summary.already_complete
        dirs.append(out)
    return dirs


@pytest.fixture(scope="module")
def four_shards(tiny_pipeline_db: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _encode_shards(tiny_pipeline_db, tmp_path_factory.mktemp("shards"), 4)


def test_shard_assignment_is_stable_and_covers_every_sentence():
    ids = [f"{i:016x}" for i in range(2000)]
    assert [shard_of(s, 4) for s in ids[:6]] == [shard_of(s, 4) for s in ids[:6]]
    assert shard_of("0123456789abcdef", 7) == 4  # fixed forever: BLAKE2b, not hash()
    counts = [sum(shard_of(s, 4) == k for s in ids) for k in range(4)]
    assert sum(counts) == 2000 and min(counts) > 400
    assert ShardSpec.parse(" 2/5 ") == ShardSpec(2, 5)
    for bad in ("5/5", "1", "a/b", "0/0"):
        with pytest.raises(InputError):
            ShardSpec.parse(bad)


@pytest.mark.runcompare
def test_four_shards_merged_equal_a_single_run(tiny_pipeline_db, four_shards, tmp_path):
    merged = tmp_path / "merged.duckdb"
    summary = run_merge(merged, four_shards)
    assert summary.n_shards == 4
    _assert_same(tiny_pipeline_db, merged, (*COMPARED, "codes", "layer_quality"))
    # The shards really split the corpus.
    sizes = [len(_rows_parquet(d / "sentences.parquet")) for d in four_shards]
    assert sum(sizes) == _count(tiny_pipeline_db, "sentences") and max(sizes) < sum(sizes)


def _rows_parquet(path: Path) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.runcompare
def test_merge_is_exact_when_the_partial_lists_are_truncated(tiny_pipeline_db, tmp_path):
    """With k and K far below the counts per shard, the merge must still be right."""
    single = copy_db(tiny_pipeline_db, tmp_path)
    con = connect(single)
    refresh_summaries(con, top_k=3, importance_k=5)
    con.close()
    dirs = _encode_shards(tiny_pipeline_db, tmp_path, 4, partial_k=3, importance_k=5)
    merged = tmp_path / "merged.duckdb"
    run_merge(merged, dirs, top_k=3)
    _assert_same(single, merged)


def test_merge_refuses_an_incomplete_or_mixed_set(four_shards, tmp_path):
    with pytest.raises(InputError, match="missing \\[3\\]"):
        run_merge(tmp_path / "m.duckdb", four_shards[:3])
    with pytest.raises(InputError, match="repeated"):
        run_merge(tmp_path / "m.duckdb", [*four_shards[:3], four_shards[0]])
    with pytest.raises(InputError, match="partial top-k"):
        run_merge(tmp_path / "m.duckdb", four_shards, top_k=500)
    half = tmp_path / "half"
    shutil.copytree(four_shards[1], half)
    (half / "shard.json").unlink()
    with pytest.raises(InputError, match="incomplete"):
        run_merge(tmp_path / "m.duckdb", [four_shards[0], half, *four_shards[2:]])


def test_a_finished_shard_is_not_redone_and_a_folder_is_not_mixed(tiny_pipeline_db, four_shards):
    again = run_shard_encode(tiny_pipeline_db, four_shards[0], shard=ShardSpec(0, 4))
    assert again.already_complete
    with pytest.raises(InputError, match="another shard"):
        run_shard_encode(tiny_pipeline_db, four_shards[0], shard=ShardSpec(1, 4))


@pytest.mark.runcompare
def test_attached_parquet_answers_the_same_views_and_sql(tiny_pipeline_db, four_shards, tmp_path):
    attached = tmp_path / "attached.duckdb"
    assert run_merge(attached, four_shards, attach=True).attached
    _assert_same(tiny_pipeline_db, attached, (*COMPARED, "codes"))

    # The app's reader: views and the codes (beyond the stored top 200) work.
    factor, layer = _rows(tiny_pipeline_db, "summary_levels")[0][:2]
    got = {}
    for db in (tiny_pipeline_db, attached):
        reader = queries.WarehouseReader(db)
        with reader.connect() as con:
            got[db] = [
                pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
                for sql, params in (
                    ("SELECT layer, importance FROM factor_importance WHERE factor = ?", [factor]),
                    (
                        "SELECT layer, factor, token_id, alpha FROM codes "
                        "WHERE factor = ? AND layer = ?",
                        [factor, layer],
                    ),
                )
            ]
        reader.close()
    (imp, codes), (imp_attached, codes_attached) = got[tiny_pipeline_db], got[attached]
    assert codes.height > 0
    assert_tables_match(imp, imp_attached, name="factor_importance", key=("layer",))
    assert_tables_match(codes, codes_attached, name="codes", key=CODES_KEY, sparse=True)

    # The SQL console reads the attached codes, and still no other file.
    sql = "SELECT layer, sum(alpha) AS total FROM codes GROUP BY layer ORDER BY layer"
    frame, _ = run_safe_query(attached, sql)
    expected, _ = run_safe_query(tiny_pipeline_db, sql)
    assert_tables_match(expected, frame, name="codes per layer", key=("layer",))
    with pytest.raises(SqlRefusedError):
        run_safe_query(attached, f"SELECT * FROM read_csv('{tiny_pipeline_db.parent}/x.csv')")
    with pytest.raises(SqlRefusedError):
        codes = four_shards[0] / "codes"
        run_safe_query(attached, f"SELECT * FROM read_text('{codes}/../../../../etc/hostname')")


@pytest.mark.runcompare
def test_cli_shard_encode_and_merge(tiny_pipeline_db, tmp_path, capsys):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for i, d in enumerate(dirs):
        assert (
            main(["encode", "--db", str(tiny_pipeline_db), "--shard", f"{i}/2", "--out", str(d)])
            == 0
        )
    merged = tmp_path / "cli.duckdb"
    assert main(["merge", "--db", str(merged), *map(str, dirs)]) == 0
    assert "merge: 2 shards" in capsys.readouterr().out
    _assert_same(
        tiny_pipeline_db, merged, ("summary_top_contexts", "summary_importance", "summary_levels")
    )
    assert main(["encode", "--db", str(tiny_pipeline_db), "--shard", "0/2"]) == 2  # no --out


@pytest.mark.runcompare
def test_ray_data_engine_matches_the_local_run(tiny_pipeline_db, tmp_path):
    """Ray Data on a local 2-CPU instance; a missing ray is a failure, not a skip."""
    import ray

    from factorscope.stages.ray_engine import run_ray_encode

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        out = tmp_path / "ray-shard"
        summary = run_ray_encode(tiny_pipeline_db, out, workers=2, batch_sentences=3)
    finally:
        ray.shutdown()
    assert summary.engine == "ray" and summary.n_sentences == _count(tiny_pipeline_db, "sentences")
    assert {p.name for p in (out / "codes").iterdir()} == {"layer=0", "layer=1", "layer=2"}
    merged = tmp_path / "ray.duckdb"
    run_merge(merged, [out])
    _assert_same(tiny_pipeline_db, merged, (*COMPARED, "codes"))


# ----------------------------------------------------------------------------- sharded ingest

INGEST_TABLES = ("sentences", "tokens", "hidden_states")


def _tiny_ingest(model: Path, corpus: Path, **overrides):
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.stages.ingest import IngestConfig

    base = {
        "corpus": CorpusConfig(source=str(corpus), split="lines", max_sentences=None),
        "model": str(model),
        "chunk_size": 4,
        "sample_size": None,
    }
    return IngestConfig(**{**base, **overrides})


def _ingest_shards(config, root: Path, n: int) -> list[Path]:
    from factorscope.stages.ingest import run_ingest

    dbs = []
    for i in range(n):
        db = root / f"ingest-{i}.duckdb"
        summary = run_ingest(db, config, shard=ShardSpec(i, n))
        assert summary.shard == ShardSpec(i, n) and not summary.already_complete
        dbs.append(db)
    return dbs


def _run_row(db: Path) -> tuple:
    return _rows_sql(
        db,
        "SELECT model, corpus, config, config_hash, n_layers, hidden_size, n_sentences, "
        "n_tokens, n_chunks, sample_size, status FROM runs",
    )


def _rows_sql(db: Path, sql: str) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.runcompare
def test_sharded_ingest_is_the_unsharded_sample_and_resumes(
    tiny_model_dir, sentence_corpus, tmp_path, monkeypatch
):
    """2 shard ingests joined = one ingest: rows, bottom-k sample, chunks, run; resumable."""
    from factorscope.errors import WarehouseError
    from factorscope.stages import ingest as pipeline
    from factorscope.stages.encode import run_encode
    from factorscope.stages.learn import LearnConfig, run_learn
    from factorscope.stages.merge_ingest import run_merge_ingest
    from factorscope.warehouse import store

    # A relative corpus path makes the sentence ids, and so the shard assignment, the same
    # on every run (ids hash the source name); one sentence per chunk gives shard 0 (5 of
    # the 12 sentences) several chunks to be killed between.
    shutil.copyfile(sentence_corpus, tmp_path / "sentences.txt")
    monkeypatch.chdir(tmp_path)
    config = _tiny_ingest(
        tiny_model_dir, Path("sentences.txt"), sample_size=60, batch_size=3, chunk_size=1
    )
    single = tmp_path / "single.duckdb"
    pipeline.run_ingest(single, config)

    # Shard 0 is killed after its first chunk, then resumed by the same call.
    calls = {"n": 0}
    write = store.write_ingest_chunk

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        write(*args, **kwargs)

    monkeypatch.setattr(store, "write_ingest_chunk", dying_write)
    shard0 = tmp_path / "ingest-0.duckdb"
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_ingest(shard0, config, shard=ShardSpec(0, 2))
    monkeypatch.setattr(store, "write_ingest_chunk", write)
    with pytest.raises(WarehouseError, match="holds shard 0/2 of this run, not shard 1/2"):
        pipeline.run_ingest(shard0, config, shard=ShardSpec(1, 2))
    with pytest.raises(WarehouseError, match="not the whole run"):
        pipeline.run_ingest(shard0, config)
    resumed = pipeline.run_ingest(shard0, config, shard=ShardSpec(0, 2))
    assert resumed.chunks_done_now == _rows_sql(shard0, "SELECT n_chunks FROM runs")[0][0] - 1
    shard1 = tmp_path / "ingest-1.duckdb"
    pipeline.run_ingest(shard1, config, shard=ShardSpec(1, 2))
    assert pipeline.run_ingest(shard1, config, shard=ShardSpec(1, 2)).already_complete

    sizes = [_rows_sql(db, "SELECT count(*) FROM sentences")[0][0] for db in (shard0, shard1)]
    assert min(sizes) > 0 and sum(sizes) == _count(single, "sentences")
    samples = [_rows_sql(db, "SELECT sample_size FROM runs")[0][0] for db in (shard0, shard1)]
    assert sum(samples) == 60

    # A shard is not learned on or encoded by itself.
    with pytest.raises(InputError, match="merge-ingest"):
        run_learn(shard0, LearnConfig(n_factors=8))
    with pytest.raises(InputError, match="--shard 0/2"):
        run_encode(shard0)

    merged = tmp_path / "run.duckdb"
    summary = run_merge_ingest(merged, [shard1, shard0])
    assert (summary.n_shards, summary.sample_size) == (2, 60)
    # Each shard ran the model on its own batches: hidden states within tolerance.
    assert_databases_match(single, merged, INGEST_TABLES)
    chunks = "SELECT chunk, n_sentences, n_tokens, n_sampled FROM ingest_chunks ORDER BY chunk"
    assert _rows_sql(merged, chunks) == _rows_sql(single, chunks)
    assert _run_row(merged) == _run_row(single)
    # what the corpus reader did not store is the run's, not lost in the merge
    drops = "SELECT reason, sentences, words FROM ingest_drops ORDER BY reason"
    assert _rows_sql(merged, drops) == _rows_sql(single, drops)
    segments = "SELECT n_segments, n_resplit, n_resplit_into FROM runs"
    assert _rows_sql(merged, segments) == _rows_sql(single, segments)

    with pytest.raises(InputError, match="missing \\[1\\]"):
        run_merge_ingest(tmp_path / "m.duckdb", [shard0])
    with pytest.raises(InputError, match="not a shard ingest"):
        run_merge_ingest(tmp_path / "m.duckdb", [shard0, single])


@pytest.mark.runcompare
def test_sharded_ingest_learn_encode_merge_equal_a_single_run(
    tiny_pipeline_db, tiny_model_dir, sentence_corpus, tmp_path, capsys
):
    """4 shard ingests -> merge-ingest -> learn -> 4 shard encodes -> merge == one local run."""
    from factorscope.stages.encode import run_encode
    from factorscope.stages.learn import LearnConfig, run_learn

    from .conftest import TINY_FACTORS

    # The settings of tiny_pipeline_db's ingest, cut into 4 shards.
    config = _tiny_ingest(tiny_model_dir, sentence_corpus)
    shard_dbs = _ingest_shards(config, tmp_path, 4)
    run_db = tmp_path / "run.duckdb"
    assert main(["merge-ingest", "--db", str(run_db), *map(str, shard_dbs)]) == 0
    assert "merge-ingest: 4 shards" in capsys.readouterr().out
    assert_databases_match(tiny_pipeline_db, run_db, INGEST_TABLES)
    run_learn(run_db, LearnConfig(n_factors=TINY_FACTORS, lambda1=0.05, seed=0))
    # Learned from states that may differ in the last bits: a close dictionary, not the
    # same one (docs/CONTRACTS.md); codes are compared below against a single local encode
    # with this very dictionary.
    assert_dictionaries_close(tiny_pipeline_db, run_db)
    (tmp_path / "single").mkdir()
    single = copy_db(run_db, tmp_path / "single")
    run_encode(single)

    dirs = []
    for i, db in enumerate(shard_dbs):
        out = tmp_path / f"enc-{i}"
        if i == 0:  # the CLI: --shard defaults to the shard the database holds
            argv = ["encode", "--db", str(db), "--out", str(out), "--dictionary-db", str(run_db)]
            assert main(argv) == 0
        else:
            run_shard_encode(db, out, shard=ShardSpec(i, 4), dictionary_db=run_db)
        dirs.append(out)
    with pytest.raises(InputError, match="--dictionary-db"):
        run_shard_encode(shard_dbs[1], tmp_path / "x", shard=ShardSpec(1, 4))
    with pytest.raises(InputError, match="not shard 2/4"):
        run_shard_encode(shard_dbs[1], tmp_path / "x", shard=ShardSpec(2, 4), dictionary_db=run_db)
    with pytest.raises(InputError, match="itself a shard"):
        run_shard_encode(shard_dbs[1], tmp_path / "x", dictionary_db=shard_dbs[0])

    merged = tmp_path / "merged.duckdb"
    run_merge(merged, dirs)
    _assert_same(single, merged, (*COMPARED, "codes"))
    assert _run_row(merged) == _run_row(tiny_pipeline_db)
    assert main(["ingest", "--db", str(tmp_path / "bad.duckdb"), "--shard", "4/4"]) == 2


@pytest.mark.slow
def test_a_dictionary_keeps_its_id_kind_and_lambda_through_shards_and_merge(
    tiny_pipeline_db, tmp_path
):
    """Issue 24: dictionary 3 of the run database (a control of dictionary 2, lambda of its
    own) is dictionary 3, a control of 2, with the same lambda, in the merged warehouse;
    it used to become dictionary 1, learned."""
    from factorscope.stages.encode import EncodeConfig
    from factorscope.stages.learn import ControlConfig, LearnConfig, run_learn, run_learn_control

    db = copy_db(tiny_pipeline_db, tmp_path)
    second = run_learn(db, LearnConfig(n_factors=16, lambda1=0.04, seed=5))
    control = run_learn_control(db, ControlConfig(kind="gaussian", parent_id=second.dictionary_id))
    assert (second.dictionary_id, control.dictionary_id) == (2, 3)
    dirs = _encode_shards(
        db, tmp_path / "shards", 2, config=EncodeConfig(dictionary_id=control.dictionary_id)
    )
    merged = tmp_path / "merged.duckdb"
    run_merge(merged, dirs)
    sql = "SELECT dictionary_id, kind, parent_id, lambda1, n_factors FROM dictionaries"
    con = connect(db, read_only=True)
    try:
        want = con.execute(sql + " WHERE dictionary_id = 3").fetchall()
    finally:
        con.close()
    assert _rows(merged, "(" + sql + ")") == want
    assert {r[0] for r in _rows(merged, "(SELECT DISTINCT dictionary_id FROM codes)")} == {3}
