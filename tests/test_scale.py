"""Scale-out: sharded encode to Parquet, the exact merge, attached Parquet, Ray Data."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from factorscope.cli import main
from factorscope.errors import InputError, SqlRefusedError
from factorscope.scale.merge import run_merge
from factorscope.scale.shard_encode import run_shard_encode
from factorscope.scale.sharding import ShardSpec, shard_of
from factorscope.warehouse import queries
from factorscope.warehouse.safe_sql import run_safe_query
from factorscope.warehouse.summaries import refresh_summaries

from .conftest import copy_db

# Tables whose rows a merge must reproduce bit for bit.
EXACT = (
    "summary_top_contexts",
    "summary_importance",
    "summary_levels",
    "summary_histogram",
    "summary_neighbors",
    "auto_labels",
    "sentences",
    "tokens",
)


def _rows(db: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def _assert_same(single: Path, merged: Path, tables=EXACT) -> None:
    for table in tables:
        expected = _rows(single, table)
        assert expected, table
        assert _rows(merged, table) == expected, table


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


def test_four_shards_merged_equal_a_single_run(tiny_pipeline_db, four_shards, tmp_path):
    merged = tmp_path / "merged.duckdb"
    summary = run_merge(merged, four_shards)
    assert summary.n_shards == 4
    _assert_same(tiny_pipeline_db, merged, (*EXACT, "codes"))
    # Layer quality is a sum of per-chunk sums: equal up to the order of additions.
    for a, b in zip(
        _rows(tiny_pipeline_db, "layer_quality"), _rows(merged, "layer_quality"), strict=True
    ):
        assert a[:3] == b[:3] and a[4:] == b[4:]
        assert a[3] == pytest.approx(b[3], rel=1e-9)
    # The shards really split the corpus.
    sizes = [len(_rows_parquet(d / "sentences.parquet")) for d in four_shards]
    assert sum(sizes) == len(_rows(tiny_pipeline_db, "sentences")) and max(sizes) < sum(sizes)


def _rows_parquet(path: Path) -> list:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_merge_is_exact_when_the_partial_lists_are_truncated(tiny_pipeline_db, tmp_path):
    """With k and K far below the counts per shard, the merge must still be exact."""
    single = copy_db(tiny_pipeline_db, tmp_path)
    con = duckdb.connect(str(single))
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


def test_attached_parquet_answers_the_same_views_and_sql(tiny_pipeline_db, four_shards, tmp_path):
    attached = tmp_path / "attached.duckdb"
    assert run_merge(attached, four_shards, attach=True).attached
    _assert_same(tiny_pipeline_db, attached, (*EXACT, "codes"))

    # The app's reader: views and the codes (beyond the stored top 200) work.
    factor, layer = _rows(tiny_pipeline_db, "summary_levels")[0][:2]
    got = {}
    for db in (tiny_pipeline_db, attached):
        reader = queries.WarehouseReader(db)
        with reader.connect() as con:
            got[db] = (
                con.execute(
                    "SELECT layer, importance FROM factor_importance "
                    "WHERE factor = ? ORDER BY layer",
                    [factor],
                ).fetchall(),
                con.execute(
                    "SELECT count(*), sum(alpha) FROM codes WHERE factor = ? AND layer = ?",
                    [factor, layer],
                ).fetchall(),
            )
        reader.close()
    assert got[attached] == got[tiny_pipeline_db]

    # The SQL console reads the attached codes, and still no other file.
    sql = "SELECT layer, count(*) AS n FROM codes GROUP BY layer ORDER BY layer"
    frame, _ = run_safe_query(attached, sql)
    expected, _ = run_safe_query(tiny_pipeline_db, sql)
    assert frame.equals(expected)
    with pytest.raises(SqlRefusedError):
        run_safe_query(attached, f"SELECT * FROM read_csv('{tiny_pipeline_db.parent}/x.csv')")
    with pytest.raises(SqlRefusedError):
        codes = four_shards[0] / "codes"
        run_safe_query(attached, f"SELECT * FROM read_text('{codes}/../../../../etc/hostname')")


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


def test_ray_data_engine_matches_the_local_run(tiny_pipeline_db, tmp_path):
    """Ray Data on a local 2-CPU instance; a missing ray is a failure, not a skip."""
    import ray

    from factorscope.scale.ray_engine import run_ray_encode

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        out = tmp_path / "ray-shard"
        summary = run_ray_encode(tiny_pipeline_db, out, workers=2, batch_sentences=3)
    finally:
        ray.shutdown()
    assert summary.engine == "ray" and summary.n_sentences == len(
        _rows(tiny_pipeline_db, "sentences")
    )
    assert {p.name for p in (out / "codes").iterdir()} == {"layer=0", "layer=1", "layer=2"}
    merged = tmp_path / "ray.duckdb"
    run_merge(merged, [out])
    _assert_same(tiny_pipeline_db, merged, (*EXACT, "codes"))
