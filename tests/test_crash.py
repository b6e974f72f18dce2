"""Kill tests that prove the kill landed: every stage, SIGKILLed at named, seeded steps.

Each test runs the real command in a subprocess with ``FACTORSCOPE_CRASH_AT`` set
(:mod:`factorscope.crashpoints`), so the process SIGKILLs itself at the N-th pass of
a named step. It then checks that the kill landed where asked (exit by SIGKILL; some
but not all chunks committed in ``<db>.wip``, or the staging copy in the state of
that step, and the published file untouched), re-runs the same command, and checks
that the result equals an uninterrupted run under the comparison contract
(tests/contract.py), summary tables included. docs/CONTRACTS.md, "Crash safety",
lists the promise each test proves.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from factorscope.warehouse import queries as q
from factorscope.warehouse.connection import connect
from factorscope.warehouse.parquet import ShardLayout
from factorscope.warehouse.publish import codes_staging_path, wal_path, wip_path
from factorscope.warehouse.summaries import summary_tables

from .conftest import copy_db, write_random_corpus
from .contract import assert_databases_match, assert_tables_match

N_SENTENCES = 160
CHUNK_SIZE = 16  # 10 ingest / encode chunks
N_CHUNKS = 10
SEEDS = (11, 12)

CLI = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]

INGEST_TABLES = ("sentences", "tokens", "hidden_states")
LEARN_TABLES = ("dictionary_atoms",)
ENCODE_TABLES = (
    "codes",
    "encode_chunk_stats",
    "layer_quality",
    *(t for t in summary_tables() if t != "summary_meta"),
)
# Tables with run-time columns (seconds, timestamps): compared without them.
VOLATILE = {
    "runs": "run_id, model, corpus, config, config_hash, n_layers, hidden_size, n_sentences, "
    "n_tokens, n_chunks, sample_size, status",
    "ingest_chunks": "chunk, n_sentences, n_tokens, n_sampled",
    "dictionaries": "dictionary_id, n_factors, hidden_size, lambda1, preprocessing, seed, "
    "source, status",
    "encode_chunks": "dictionary_id, chunk, n_codes",
    "summary_meta": "key, value",
}
VOLATILE_FILTER = {"summary_meta": "key <> 'seconds'"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# ----------------------------------------------------------------------------- helpers


def _env(crash_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "FACTORSCOPE_PROGRESS": "0"}
    env.pop("FACTORSCOPE_CRASH_AT", None)
    if crash_at:
        env["FACTORSCOPE_CRASH_AT"] = crash_at
    return env


def run_cli(args: list[str]) -> str:
    """Run a factorscope command to the end; returns its stdout."""
    done = subprocess.run(
        [*CLI, *args], env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def kill_at(args: list[str], point: str) -> None:
    """Run a command that must die by SIGKILL at ``point`` (``name:N``)."""
    done = subprocess.run(
        [*CLI, *args], env=_env(point), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == -signal.SIGKILL, (
        f"expected a SIGKILL at {point}, got exit {done.returncode}: {done.stderr[-1500:]}"
    )


def scalar(db: Path, sql: str):
    con = connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


def frame(db: Path, sql: str) -> pl.DataFrame:
    con = connect(db, read_only=True)
    try:
        return pl.from_arrow(con.sql(sql).to_arrow_table())
    finally:
        con.close()


def assert_same_stage(expected: Path, actual: Path, tables: tuple[str, ...]) -> None:
    """The comparison contract over ``tables`` plus the bookkeeping tables' stable columns."""
    assert_databases_match(expected, actual, tables)
    for table, columns in VOLATILE.items():
        where = VOLATILE_FILTER.get(table, "true")
        # Test literals only: table, columns and filter come from the dicts above.
        sql = f"SELECT {columns} FROM {table} WHERE {where} ORDER BY ALL"
        assert_tables_match(frame(expected, sql), frame(actual, sql), name=table)


def seeded_chunk(seed: int, n_chunks: int = N_CHUNKS) -> int:
    """A kill point strictly inside the chunk loop: after chunk 1..n-1 committed."""
    return random.Random(seed).randint(1, n_chunks - 1)


SHARD_POINT = f"shard.chunk:{seeded_chunk(SEEDS[0], 4)}"  # a shard here has 4+ chunks


def ingest_args(db: Path, model: Path, corpus: Path) -> list[str]:
    return [
        "ingest",
        "--db",
        str(db),
        "--model",
        str(model),
        "--corpus",
        str(corpus),
        "--split",
        "lines",
        "--max-sentences",
        "all",
        "--chunk-size",
        str(CHUNK_SIZE),
        "--sample-size",
        "1500",
        "--batch-size",
        "8",
        "--threads",
        "1",
    ]


def learn_args(db: Path, seed: int = 0) -> list[str]:
    return ["learn", "--db", str(db), "-m", "16", "--lambda", "0.05", "--seed", str(seed)]


def encode_args(db: Path) -> list[str]:
    return ["encode", "--db", str(db), "--threads", "1"]


def shard_args(db: Path, shard: str, out: Path) -> list[str]:
    return [*encode_args(db), "--shard", shard, "--out", str(out)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """Uninterrupted runs of every stage: the databases after ingest, learn, encode, merge."""
    root = tmp_path_factory.mktemp("reference")
    corpus = write_random_corpus(root / "corpus.txt", n_sentences=N_SENTENCES, seed=5)
    db = root / "run.duckdb"
    run_cli(ingest_args(db, tiny_model_dir, corpus))
    assert scalar(db, "SELECT n_chunks FROM runs") == N_CHUNKS
    ingested = shutil.copyfile(db, root / "ingested.duckdb")
    run_cli(learn_args(db))
    learned = shutil.copyfile(db, root / "learned.duckdb")
    run_cli(encode_args(db))
    shards = [root / "shard-0", root / "shard-1"]
    for i, out in enumerate(shards):
        run_cli(shard_args(db, f"{i}/2", out))
    merged = root / "merged.duckdb"
    run_cli(["merge", "--db", str(merged), *map(str, shards)])
    return {
        "model": tiny_model_dir,
        "corpus": corpus,
        "ingested": ingested,
        "learned": learned,
        "encoded": db,
        "shards": shards,
        "merged": merged,
    }


# ----------------------------------------------------------------------------- ingest


@pytest.mark.parametrize("seed", SEEDS)
def test_ingest_killed_in_the_chunk_loop_resumes_to_the_same_rows(
    tmp_path: Path, reference: dict, seed: int
) -> None:
    db = tmp_path / "run.duckdb"
    args = ingest_args(db, reference["model"], reference["corpus"])
    n = seeded_chunk(seed)
    kill_at(args, f"ingest.chunk:{n}")
    # Landed mid-stage: exactly n of the chunks committed, nothing published.
    assert not db.exists()
    assert scalar(wip_path(db), "SELECT count(*) FROM ingest_chunks") == n < N_CHUNKS
    assert scalar(wip_path(db), "SELECT status FROM runs") == "ingesting"

    assert "nothing to do" not in run_cli(args)
    assert not wip_path(db).exists()
    assert_same_stage(reference["ingested"], db, INGEST_TABLES)


@pytest.mark.parametrize("point", ["ingest.finished:1", "publish.replace:1"])
def test_ingest_killed_before_publishing_is_published_not_skipped(
    tmp_path: Path, reference: dict, point: str
) -> None:
    db = tmp_path / "run.duckdb"
    args = ingest_args(db, reference["model"], reference["corpus"])
    kill_at(args, point)
    # Landed after the last chunk, before the file was published.
    assert not db.exists()
    assert scalar(wip_path(db), "SELECT count(*) FROM ingest_chunks") == N_CHUNKS
    assert scalar(wip_path(db), "SELECT status FROM runs") == "ingested"

    out = run_cli(args)
    assert "ingested by an interrupted run, are published" in out  # no model run again
    assert db.exists() and not wip_path(db).exists()
    assert_same_stage(reference["ingested"], db, INGEST_TABLES)
    assert "nothing to do" in run_cli(args)


# ----------------------------------------------------------------------------- learn


@pytest.mark.parametrize("point", ["learn.fitted:1", "learn.saved:1", "publish.carried:1"])
def test_learn_killed_at_each_step_publishes_the_same_dictionary(
    tmp_path: Path, reference: dict, point: str
) -> None:
    db = copy_db(reference["ingested"], tmp_path)
    kill_at(learn_args(db), point)
    assert scalar(db, "SELECT count(*) FROM dictionaries") == 0  # published file untouched
    if point == "learn.fitted:1":
        assert not wip_path(db).exists()  # killed before staging anything
    else:
        assert scalar(wip_path(db), "SELECT count(*) FROM dictionaries") == 1

    out = run_cli(learn_args(db))
    assert "nothing to do" not in out and not wip_path(db).exists()
    # A dictionary already stored in the staging copy is published, not fitted again.
    assert ("fitted by an interrupted run" in out) == (point != "learn.fitted:1")
    assert_same_stage(reference["learned"], db, (*INGEST_TABLES, *LEARN_TABLES))
    assert "nothing to do" in run_cli(learn_args(db))


# ----------------------------------------------------------------------------- encode


def _published_has_no_codes(db: Path) -> None:
    assert scalar(db, "SELECT count(*) FROM codes") == 0
    assert scalar(db, "SELECT count(*) FROM summary_top_contexts") == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_encode_killed_in_the_chunk_loop_resumes_to_the_same_codes_and_summaries(
    tmp_path: Path, reference: dict, seed: int
) -> None:
    db = copy_db(reference["learned"], tmp_path)
    n = seeded_chunk(seed)
    kill_at(encode_args(db), f"encode.chunk:{n}")
    _published_has_no_codes(db)
    wip = wip_path(db)
    assert scalar(wip, "SELECT count(*) FROM encode_chunks") == n < N_CHUNKS
    assert scalar(wip, "SELECT status FROM dictionaries") == "encoding"
    staged = sorted(codes_staging_path(db).glob("dictionary=1/*.parquet"))
    assert len(staged) == n  # one codes file per committed chunk, none ahead of its row

    assert "nothing to do" not in run_cli(encode_args(db))
    assert not wip.exists()
    assert not codes_staging_path(db).exists()
    assert_same_stage(reference["encoded"], db, (*INGEST_TABLES, *ENCODE_TABLES))


def test_encode_redoes_a_committed_chunk_whose_staged_codes_are_gone(
    tmp_path: Path, reference: dict
) -> None:
    db = copy_db(reference["learned"], tmp_path)
    kill_at(encode_args(db), "encode.chunk:3")
    staged = sorted(codes_staging_path(db).glob("dictionary=1/*.parquet"))
    assert len(staged) == 3
    staged[1].unlink()
    run_cli(encode_args(db))
    assert scalar(db, "SELECT count(*) FROM encode_chunks") == N_CHUNKS
    assert_same_stage(reference["encoded"], db, (*INGEST_TABLES, *ENCODE_TABLES))


@pytest.mark.parametrize(
    "point", ["encode.finished:1", "encode.summaries:1", "publish.carried:1", "publish.replace:1"]
)
def test_encode_killed_after_its_chunks_is_finished_and_published(
    tmp_path: Path, reference: dict, point: str
) -> None:
    db = copy_db(reference["learned"], tmp_path)
    kill_at(encode_args(db), point)
    _published_has_no_codes(db)
    wip = wip_path(db)
    assert scalar(wip, "SELECT count(*) FROM encode_chunks") == N_CHUNKS
    assert scalar(wip, "SELECT status FROM dictionaries") == "encoded"
    summarized = scalar(wip, "SELECT count(*) FROM summary_meta") > 0
    # Inside the summary refresh (or just before it) no summary is committed yet;
    # inside the publish they all are.
    assert summarized == point.startswith("publish.")

    out = run_cli(encode_args(db))
    assert "nothing to do" not in out
    assert ("encoded by an interrupted run, is published" in out) == summarized
    assert not wip.exists()
    assert_same_stage(reference["encoded"], db, (*INGEST_TABLES, *ENCODE_TABLES))
    assert "nothing to do" in run_cli(encode_args(db))


def test_learn_after_an_encode_killed_in_the_summaries_publishes_them_complete(
    tmp_path: Path, reference: dict
) -> None:
    """The old failure: a later learn published codes with empty summaries."""
    db = copy_db(reference["learned"], tmp_path)
    kill_at(encode_args(db), "encode.summaries:1")
    run_cli(learn_args(db, seed=1))  # a second dictionary, staged in the same copy
    assert not wip_path(db).exists()
    assert scalar(db, "SELECT count(*) FROM dictionaries") == 2
    assert scalar(db, "SELECT status FROM dictionaries WHERE dictionary_id = 1") == "encoded"
    assert_databases_match(reference["encoded"], db, ENCODE_TABLES)


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_learn_after_an_encode_killed_in_its_chunks_publishes_no_partial_codes(
    tmp_path: Path, reference: dict, seed: int
) -> None:
    db = copy_db(reference["learned"], tmp_path)
    kill_at(encode_args(db), f"encode.chunk:{seeded_chunk(seed)}")
    run_cli(learn_args(db, seed=1))
    assert scalar(db, "SELECT count(*) FROM codes") == 0
    assert scalar(db, "SELECT count(*) FROM encode_chunks") == 0
    assert scalar(db, "SELECT count(*) FROM summary_meta") == 0
    assert scalar(db, "SELECT list(status ORDER BY dictionary_id) FROM dictionaries") == [
        "learned",
        "learned",
    ]


# ----------------------------------------------------------------------------- shard encode


@pytest.mark.parametrize("point", [SHARD_POINT, "shard.finish:1"])
def test_shard_encode_killed_resumes_to_a_shard_that_merges_the_same(
    tmp_path: Path, reference: dict, point: str
) -> None:
    out = tmp_path / "shard-0"
    args = shard_args(reference["encoded"], "0/2", out)
    kill_at(args, point)
    layout = ShardLayout(out)
    n_chunks = len(list(ShardLayout(reference["shards"][0]).stats.glob("part-*.parquet")))
    done = len(list(layout.stats.glob("part-*.parquet")))
    assert layout.read_manifest() is None  # not complete
    if point.startswith("shard.chunk"):
        assert done == int(point.split(":")[1]) < n_chunks
    else:
        assert done == n_chunks and layout.partial("importance").parent.is_dir()

    assert "nothing to do" not in run_cli(args)
    assert layout.read_manifest() is not None
    assert "nothing to do" in run_cli(args)
    merged = tmp_path / "merged.duckdb"
    run_cli(["merge", "--db", str(merged), str(out), str(reference["shards"][1])])
    assert_same_stage(reference["merged"], merged, (*INGEST_TABLES[:2], *ENCODE_TABLES))


# ----------------------------------------------------------------------------- merge


@pytest.mark.parametrize("point", ["merge.built:1", "publish.carried:1", "publish.replace:1"])
def test_merge_killed_is_rebuilt_whole_keeping_only_its_own_runs_labels(
    tmp_path: Path, reference: dict, point: str
) -> None:
    merged = copy_db(reference["merged"], tmp_path)
    q.set_label(merged, 1, "kept: same run")
    before = scalar(merged, "SELECT count(*) FROM codes")
    args = ["merge", "--db", str(merged), *map(str, reference["shards"])]
    kill_at(args, point)
    assert wip_path(merged).exists()
    assert scalar(merged, "SELECT count(*) FROM codes") == before  # old file still served
    assert scalar(wip_path(merged), "SELECT count(*) FROM summary_meta") > 0

    run_cli(args)
    assert not wip_path(merged).exists() and not wal_path(merged).exists()
    assert_same_stage(reference["merged"], merged, (*INGEST_TABLES[:2], *ENCODE_TABLES))
    assert scalar(merged, "SELECT label FROM user_labels WHERE factor = 1") == "kept: same run"


# ----------------------------------------------------------------------------- publish


def test_merge_over_another_runs_file_drops_its_labels(tmp_path: Path, reference: dict) -> None:
    from factorscope.stages.merge import run_merge
    from factorscope.warehouse.synthetic import build_synthetic_db

    other = tmp_path / "other.duckdb"
    build_synthetic_db(other, n_sentences=20, n_factors=16, hidden_size=8, seed=3)
    q.set_label(other, 2, "belongs to the synthetic run")
    run_merge(other, reference["shards"])
    assert scalar(other, "SELECT count(*) FROM user_labels") == 0


def test_a_stale_wal_of_the_replaced_file_is_set_aside(tmp_path: Path, reference: dict) -> None:
    """A label write killed before its checkpoint leaves <db>.wal: publishing keeps the
    label and never pairs the new file with that log."""
    db = copy_db(reference["learned"], tmp_path)
    code = (
        "import os, signal, sys; import duckdb\n"
        "from factorscope.warehouse.connection import WRITE_CONFIG\n"
        "con = duckdb.connect(sys.argv[1], config=dict(WRITE_CONFIG))\n"
        'con.execute("INSERT INTO user_labels (dictionary_id, factor, label) '
        "VALUES (1, 3, 'in the wal')\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(db)], env=_env(), check=False)
    assert done.returncode == -signal.SIGKILL and wal_path(db).exists()
    run_cli(encode_args(db))
    assert not wal_path(db).exists()
    assert scalar(db, "SELECT label FROM user_labels WHERE factor = 3") == "in the wal"
    assert_databases_match(reference["encoded"], db, ENCODE_TABLES)


def test_a_label_saved_while_a_stage_publishes_is_kept(
    tmp_path: Path, reference: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label saved between the publisher's carry and its replace waits for the
    replace, then lands in the new file (without the lock it went into the old one)."""
    import threading

    from factorscope.warehouse import publish

    db = copy_db(reference["learned"], tmp_path)
    savers: list[threading.Thread] = []
    carry = publish.carry_app_tables

    def carry_then_save_a_label(con, path, **kw):
        copied = carry(con, path, **kw)
        saver = threading.Thread(target=q.set_label, args=(db, 4, "saved during a publish"))
        saver.start()
        saver.join(0.5)
        assert saver.is_alive()  # held by the publish lock until the file is replaced
        savers.append(saver)
        return copied

    monkeypatch.setattr(publish, "carry_app_tables", carry_then_save_a_label)
    with publish.staged_database(db) as con:
        con.execute("DELETE FROM user_labels")  # what the staging copy holds is replaced
    savers[0].join(30)
    assert not savers[0].is_alive()
    assert scalar(db, "SELECT label FROM user_labels WHERE factor = 4") == "saved during a publish"
