"""Kill tests of the scale-out stages: ``merge-ingest``, ``merge`` and the Ray engine.

As in tests/test_crash.py (whose helpers these reuse): the real command runs in a
subprocess that SIGKILLs itself at a named, seeded step (``FACTORSCOPE_CRASH_AT``,
:mod:`factorscope.crashpoints`); each test checks that the kill landed mid-work (some
but not all shards or chunks done, the published file as it was), runs the same
command again, and compares the result with an uninterrupted run under the
comparison contract (tests/contract.py). docs/CONTRACTS.md, "Crash safety", lists
the promise each test proves.

The Ray runs start a local Ray instance on 2 CPUs in the killed process; its raylet,
workers and agents outlive a SIGKILLed driver by a few seconds, so every Ray command
runs in a session of its own, and what is left of that session is killed (by pid)
before the test looks at the folder or runs the command again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factorscope.stages.learn import LearnConfig, run_learn
from factorscope.stages.merge import run_merge
from factorscope.warehouse import queries as q
from factorscope.warehouse.parquet import ShardLayout, attached_roots, roots_sidecar
from factorscope.warehouse.publish import wip_path

from .conftest import write_random_corpus
from .test_crash import (
    CHUNK_SIZE,
    ENCODE_TABLES,
    INGEST_TABLES,
    N_CHUNKS,
    N_SENTENCES,
    SEEDS,
    _env,
    assert_same_stage,
    kill_at,
    run_cli,
    scalar,
    shard_args,
)
from .test_scale import _ingest_shards, _tiny_ingest

N_INGEST_SHARDS = 3
MERGED_TABLES = (*INGEST_TABLES[:2], *ENCODE_TABLES)  # a merged warehouse has no hidden states

# ``python -c`` running the CLI with every ``ray.init`` limited to 2 CPUs (as
# tests/test_scale.py's Ray test), started only when the engine needs Ray.
RAY_CLI = [
    sys.executable,
    "-c",
    "import functools, sys; import ray\n"
    "ray.init = functools.partial(ray.init, num_cpus=2, include_dashboard=False)\n"
    "from factorscope.cli import main; sys.exit(main())",
]
# The driver is killed after it has seen chunk 1..3 of 10 reported. The actor runs ahead of
# the driver's loop by the chunks queued at it (TASKS_PER_ACTOR = 2) and the reports not
# read yet: killed after 1, 4 and 7 reports it had written 3, 7 and 8 chunks (2-core
# machine, under load), so 1..3 always leaves chunks to do.
RAY_POINT = f"ray.chunk:{random.Random(SEEDS[0]).randint(1, 3)}"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(sys.platform != "linux", reason="reads Ray's processes from /proc"),
]


# ----------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: those a command started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            pids.append(int(entry.name))
    return pids


def end_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL, by pid, what is left of the processes a command started in session ``sid``."""
    deadline = time.monotonic() + timeout
    while pids := _session_pids(sid):
        assert time.monotonic() < deadline, f"processes of session {sid} survive: {pids}"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def run_ray_cli(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess:
    """Run a command in a session of its own (Ray's processes with it), then end the session."""
    proc = subprocess.Popen(
        [*RAY_CLI, *args],
        env=_env(crash_at),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        end_session(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stats_files(layout: ShardLayout) -> dict[Path, tuple[int, int]]:
    """The chunks done (their stats files), each with its inode and mtime."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in layout.stats.glob("part-*.parquet")}


@pytest.fixture(scope="module")
def scale_reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """Shard ingests, their uninterrupted merge-ingest, a dictionary learned on it, an
    uninterrupted local shard encode of the whole run and its merge."""
    root = tmp_path_factory.mktemp("scale-reference")
    corpus = write_random_corpus(root / "corpus.txt", n_sentences=N_SENTENCES, seed=5)
    config = _tiny_ingest(
        tiny_model_dir, corpus, chunk_size=CHUNK_SIZE, sample_size=1500, batch_size=8
    )
    shards = _ingest_shards(config, root, N_INGEST_SHARDS)
    ingested = root / "run.duckdb"
    run_cli(["merge-ingest", "--db", str(ingested), *map(str, shards)])
    learned = shutil.copyfile(ingested, root / "learned.duckdb")
    run_learn(learned, LearnConfig(n_factors=16, lambda1=0.05, seed=0))
    local = root / "local-shard"
    run_cli(shard_args(learned, "0/1", local))
    assert len(list(ShardLayout(local).stats.glob("part-*.parquet"))) == N_CHUNKS
    merged = root / "merged.duckdb"
    run_merge(merged, [local])
    return {
        "shards": shards,
        "ingested": ingested,
        "learned": learned,
        "local_shard": local,
        "merged": merged,
    }


# ----------------------------------------------------------------------------- merge-ingest


def _merge_ingest_args(db: Path, reference: dict) -> list[str]:
    return ["merge-ingest", "--db", str(db), *map(str, reference["shards"])]


@pytest.mark.parametrize("n", range(1, N_INGEST_SHARDS))
def test_merge_ingest_killed_between_shards_is_rebuilt_whole(
    tmp_path: Path, scale_reference: dict, n: int
) -> None:
    db = tmp_path / "run.duckdb"
    args = _merge_ingest_args(db, scale_reference)
    kill_at(args, f"merge_ingest.shard:{n}")
    # Landed mid-way: the staging copy holds exactly the first n shards; nothing published.
    assert not db.exists()
    wip = wip_path(db)
    per_shard = [scalar(s, "SELECT count(*) FROM sentences") for s in scale_reference["shards"]]
    assert scalar(wip, "SELECT count(*) FROM sentences") == sum(per_shard[:n]) < N_SENTENCES
    assert scalar(wip, "SELECT status FROM runs") == "ingesting"

    run_cli(args)
    assert db.exists() and not wip.exists()
    assert_same_stage(scale_reference["ingested"], db, INGEST_TABLES)


@pytest.mark.parametrize("point", ["publish.carried:1", "publish.replace:1"])
def test_merge_ingest_killed_in_its_publish_leaves_the_old_file_then_replaces_it(
    tmp_path: Path, scale_reference: dict, point: str
) -> None:
    db = tmp_path / "run.duckdb"
    shutil.copyfile(scale_reference["shards"][0], db)  # an older file at --db
    before = sha256(db)
    args = _merge_ingest_args(db, scale_reference)
    kill_at(args, point)
    # Landed after every shard, inside the publish: the old file is byte for byte as it was.
    assert sha256(db) == before
    assert scalar(wip_path(db), "SELECT count(*) FROM sentences") == N_SENTENCES
    assert scalar(wip_path(db), "SELECT status FROM runs") == "ingested"

    run_cli(args)
    assert not wip_path(db).exists()
    assert_same_stage(scale_reference["ingested"], db, INGEST_TABLES)


# ----------------------------------------------------------------------------- merge


@pytest.mark.parametrize(
    ("point", "attach"),
    [("merge.built:1", True), ("publish.carried:1", True), ("publish.replace:1", False)],
)
def test_merge_over_an_attached_file_killed_leaves_that_file_readable(
    tmp_path: Path, scale_reference: dict, point: str, attach: bool
) -> None:
    """The old failure: the sidecar was narrowed to the new folders before the publish,
    so a kill inside it left the old attached file unable to read its own codes."""
    old, new = tmp_path / "old-shard", tmp_path / "new-shard"
    shutil.copytree(scale_reference["local_shard"], old)
    shutil.copytree(scale_reference["local_shard"], new)
    db = tmp_path / "wiki.duckdb"
    run_merge(db, [old], attach=True)
    q.set_label(db, 1, "kept: same run")
    served = "SELECT count(*) FROM codes"
    before = scalar(db, served)
    args = ["merge", "--db", str(db), *(["--attach"] if attach else []), str(new)]
    kill_at(args, point)
    assert wip_path(db).exists()
    assert scalar(wip_path(db), "SELECT count(*) FROM summary_meta") > 0
    assert scalar(db, served) == before  # the old file, still reading its own folder

    run_cli(args)
    assert not wip_path(db).exists()
    assert attached_roots(db) == ([f"{ShardLayout(new.resolve()).codes}/"] if attach else [])
    assert roots_sidecar(db).exists() == attach
    shutil.rmtree(old)  # the published file reads nothing of the old folder any more
    expected = tmp_path / "expected.duckdb"
    run_merge(expected, [new], attach=attach)
    assert_same_stage(expected, db, MERGED_TABLES)
    assert scalar(db, "SELECT label FROM user_labels WHERE factor = 1") == "kept: same run"


# ----------------------------------------------------------------------------- Ray engine


def _kill_ray(args: list[str], point: str) -> None:
    killed = run_ray_cli(args, point)
    assert killed.returncode == -signal.SIGKILL, (
        f"expected a SIGKILL at {point}, got exit {killed.returncode}: {killed.stderr[-1500:]}"
    )


def test_ray_encode_killed_twice_resumes_its_missing_chunks_to_the_local_engines_shard(
    tmp_path: Path, scale_reference: dict
) -> None:
    """Killed among its chunks, then again writing its final files: each re-run codes only
    the chunks without files (the old engine cleared the folder and redid them all)."""
    out = tmp_path / "ray-shard"
    args = [*shard_args(scale_reference["learned"], "0/1", out), "--engine", "ray"]
    layout = ShardLayout(out)
    _kill_ray(args, RAY_POINT)
    # Landed mid-way: some but not all chunks written, no manifest.
    assert layout.read_manifest() is None
    first = stats_files(layout)
    assert int(RAY_POINT.split(":")[1]) <= len(first) < N_CHUNKS

    # Re-run, killed after its chunks: the first run's chunks were kept, not coded again.
    _kill_ray(args, "shard.finish:1")
    assert layout.read_manifest() is None and layout.partial("importance").is_file()
    second = stats_files(layout)
    assert len(second) == N_CHUNKS and {p: second[p] for p in first} == first

    resumed = run_ray_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "nothing to do" not in resumed.stdout
    assert layout.read_manifest() is not None
    assert stats_files(layout) == second  # every chunk was done: only the final files
    assert "nothing to do" in run_ray_cli(args).stdout

    merged = tmp_path / "ray.duckdb"
    run_merge(merged, [out])
    assert_same_stage(scale_reference["merged"], merged, MERGED_TABLES)
