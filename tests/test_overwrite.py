"""`--overwrite` is a publish: the old database stays whole until the new run is complete.

Issue 23 found `ingest --overwrite` deleting the user's encoded database *before* it
checked anything: a binary corpus, a misspelt built-in corpus or a missing model gave a
correct one-line error, and the database was gone; a kill 2.5 s into a valid overwrite
left no database at all. Here every check must run before a file is touched, and a
kill at any seeded step of an overwrite leaves either the old database byte for byte
or the new run complete; running the command again finishes the new run, equal under
the contract (tests/contract.py) to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from factorscope.warehouse.publish import wip_path

from .conftest import write_random_corpus
from .test_crash import (
    CLI,
    INGEST_TABLES,
    N_CHUNKS,
    SEEDS,
    _env,
    assert_same_stage,
    encode_args,
    ingest_args,
    kill_at,
    learn_args,
    run_cli,
    scalar,
    seeded_chunk,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """An encoded "old" database, and the uninterrupted ingest of another corpus ("new")."""
    root = tmp_path_factory.mktemp("overwrite")
    old_corpus = write_random_corpus(root / "old.txt", n_sentences=60, seed=1)
    new_corpus = write_random_corpus(root / "new.txt", n_sentences=160, seed=2)
    old = root / "old.duckdb"
    run_cli(ingest_args(old, tiny_model_dir, old_corpus))
    run_cli(learn_args(old))
    run_cli(encode_args(old))
    new = root / "new.duckdb"
    run_cli(ingest_args(new, tiny_model_dir, new_corpus))
    assert scalar(new, "SELECT n_chunks FROM runs") == N_CHUNKS
    return {"model": tiny_model_dir, "old": old, "new": new, "new_corpus": new_corpus}


def _old_copy(runs: dict, tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "run.duckdb"
    shutil.copyfile(runs["old"], db)
    return db, digest(db)


def _overwrite_args(db: Path, runs: dict, corpus: str | Path | None = None) -> list[str]:
    args = ingest_args(db, runs["model"], Path(corpus or runs["new_corpus"]))
    return [*args, "--overwrite"]


def _run(args: list[str]):
    import subprocess

    return subprocess.run(
        [*CLI, *args], env=_env(), capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize(
    "bad",
    ["binary", "misspelt", "missing_model", "missing_corpus"],
)
def test_a_refused_overwrite_leaves_the_database_as_it_was(
    tmp_path: Path, runs: dict, bad: str
) -> None:
    db, before = _old_copy(runs, tmp_path)
    args = _overwrite_args(db, runs)
    if bad == "binary":
        binary = tmp_path / "corpus.bin"
        binary.write_bytes(bytes(range(256)) * 64)
        args = _overwrite_args(db, runs, binary)
    elif bad == "misspelt":
        args = _overwrite_args(db, runs, "fortunez")
    elif bad == "missing_corpus":
        args = _overwrite_args(db, runs, tmp_path / "nowhere.txt")
    else:
        args[args.index("--model") + 1] = str(tmp_path / "no-such-model")
    done = _run(args)
    assert done.returncode == 2, done.stderr[-1500:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert db.exists(), "the refused overwrite deleted the database"
    assert digest(db) == before
    assert not wip_path(db).exists()


def test_a_refused_pipeline_overwrite_leaves_the_database_as_it_was(
    tmp_path: Path, runs: dict
) -> None:
    db, before = _old_copy(runs, tmp_path)
    done = _run(["pipeline", "--db", str(db), "--corpus", "fortunez", "--overwrite"])
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    assert db.exists() and digest(db) == before


@pytest.mark.parametrize("seed", SEEDS)
def test_an_overwrite_killed_in_its_chunks_keeps_the_old_database(
    tmp_path: Path, runs: dict, seed: int
) -> None:
    db, before = _old_copy(runs, tmp_path)
    chunk = seeded_chunk(seed)
    kill_at(_overwrite_args(db, runs), f"ingest.chunk:{chunk}")
    # The kill landed mid-work: some, not all, of the new run's chunks are staged ...
    staged = scalar(wip_path(db), "SELECT count(*) FROM ingest_chunks")
    assert 0 < staged < N_CHUNKS
    assert staged == chunk
    # ... and the old database is still there, byte for byte, encoded.
    assert digest(db) == before
    assert scalar(db, "SELECT count(*) FROM codes") > 0
    run_cli(_overwrite_args(db, runs))
    assert_same_stage(runs["new"], db, INGEST_TABLES)
    assert scalar(db, "SELECT count(*) FROM dictionaries") == 0
    assert not wip_path(db).exists()


@pytest.mark.parametrize("point", ["ingest.finished", "publish.carried", "publish.replace"])
def test_an_overwrite_killed_while_publishing_keeps_the_old_database(
    tmp_path: Path, runs: dict, point: str
) -> None:
    db, before = _old_copy(runs, tmp_path)
    kill_at(_overwrite_args(db, runs), point)
    assert scalar(wip_path(db), "SELECT count(*) FROM ingest_chunks") == N_CHUNKS
    assert digest(db) == before
    # Resuming with the same command completes the new run (nothing of the old one kept).
    run_cli(_overwrite_args(db, runs))
    assert_same_stage(runs["new"], db, INGEST_TABLES)
    assert scalar(db, "SELECT count(*) FROM codes") == 0
    assert scalar(db, "SELECT count(*) FROM user_labels") == 0


def test_an_interrupted_overwrite_resumes_without_the_flag(tmp_path: Path, runs: dict) -> None:
    """The staged new run is resumed by the same command without --overwrite too."""
    db, before = _old_copy(runs, tmp_path)
    kill_at(_overwrite_args(db, runs), f"ingest.chunk:{seeded_chunk(SEEDS[0])}")
    assert digest(db) == before
    out = run_cli(_overwrite_args(db, runs)[:-1])
    assert "nothing to do" not in out
    assert_same_stage(runs["new"], db, INGEST_TABLES)


def test_an_overwrite_does_not_carry_the_old_runs_labels(tmp_path: Path, runs: dict) -> None:
    from factorscope.warehouse import queries as q

    db, _ = _old_copy(runs, tmp_path)
    q.set_label(db, 0, "old label")
    run_cli(_overwrite_args(db, runs))
    assert scalar(db, "SELECT count(*) FROM user_labels") == 0
    assert scalar(db, "SELECT count(*) FROM sentences") == scalar(
        runs["new"], "SELECT count(*) FROM sentences"
    )
