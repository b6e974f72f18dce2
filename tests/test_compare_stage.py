"""`factorscope learn -m a,b --seed x,y` and `factorscope compare A B` through the real CLI."""

from __future__ import annotations

import numpy as np
import pytest

from factorscope.cli import main
from factorscope.warehouse import comparisons, store
from factorscope.warehouse.connection import connect
from tests.conftest import TINY_FACTORS, copy_db
from tests.contract import ATOL, RTOL
from tests.test_cli_errors import assert_one_line_error, run_cli, sha


@pytest.fixture(scope="module")
def compared_db(tiny_pipeline_db, tmp_path_factory):
    """The tiny pipeline's file plus sizes 24 and 48 at seeds 0 and 1, learned in one command."""
    db = copy_db(tiny_pipeline_db, tmp_path_factory.mktemp("compare"))
    code = main(["learn", "--db", str(db), "-m", f"24,{TINY_FACTORS}", "--seed", "0,1",
                 "--lambda", "0.05"])  # fmt: skip
    assert code == 0
    return db


def _dictionaries(db) -> list[dict]:
    con = connect(db, read_only=True)
    try:
        return store.list_dictionaries(con)
    finally:
        con.close()


def _by_settings(db) -> dict[tuple[int, int], int]:
    return {
        (d["params"]["learn_config"]["n_factors"], d["params"]["learn_config"]["seed"]): d[
            "dictionary_id"
        ]
        for d in _dictionaries(db)
        if "n_factors" in d["params"].get("learn_config", {})
    }


def test_learn_several_sizes_and_seeds_in_one_command(compared_db, capsys):
    ids = _by_settings(compared_db)
    # the fixture's (48, seed 0) is reused, the three others are new
    assert set(ids) == {(24, 0), (24, 1), (TINY_FACTORS, 0), (TINY_FACTORS, 1)}
    assert ids[(TINY_FACTORS, 0)] == 1 and len(set(ids.values())) == 4
    code, out, _ = run_cli(capsys, "learn", "--db", compared_db, "-m", "24", "--seed", "1",
                           "--lambda", "0.05")  # fmt: skip
    assert code == 0 and out.strip().splitlines() == [
        f"learn: dictionary {ids[(24, 1)]} with these settings exists; nothing to do"
    ]


def test_compare_a_permuted_import_finds_the_permutation(compared_db, tmp_path, capsys):
    db = copy_db(compared_db, tmp_path)
    con = connect(db, read_only=True)
    try:
        atoms = store.load_dictionary(con, 1).components
    finally:
        con.close()
    perm = np.random.default_rng(0).permutation(atoms.shape[0])
    np.save(tmp_path / "perm.npy", atoms[perm])
    code, out, err = run_cli(capsys, "learn", "--db", db, "--from-npy", tmp_path / "perm.npy",
                             "--lambda", "0.05")  # fmt: skip
    assert code == 0, err
    imported = max(d["dictionary_id"] for d in _dictionaries(db))
    code, out, err = run_cli(capsys, "compare", "1", str(imported), "--db", db)
    assert code == 0, err
    assert f"compare: dictionary 1 ({TINY_FACTORS} factors) with {imported}" in out
    assert "100.0% >= 0.9" in out
    con = connect(db, read_only=True)
    try:
        (row,) = comparisons.list_comparisons(con)
        matches = comparisons.comparison_matches(con, row["comparison_id"])
        best = con.execute(
            "SELECT factor, best, cosine FROM comparison_best WHERE side = 'b' ORDER BY factor"
        ).fetchnumpy()
    finally:
        con.close()
    assert row["mean_cosine"] == pytest.approx(1.0, abs=ATOL)
    assert row["share_cosine_90"] == 1.0 and row["n_matched"] == TINY_FACTORS
    # factor i of dictionary 1 sits at row j of the import where perm[j] == i
    np.testing.assert_array_equal(perm[matches["factor_b"].to_numpy()], matches["factor_a"])
    np.testing.assert_allclose(matches["cosine"].to_numpy(), 1.0, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(best["best"], perm)


def test_compare_two_sizes_lists_merges_and_is_idempotent(compared_db, tmp_path, capsys):
    db = copy_db(compared_db, tmp_path)
    ids = _by_settings(db)
    big, small = ids[(TINY_FACTORS, 0)], ids[(24, 0)]
    for _ in range(2):  # comparing again replaces the rows, same comparison id
        code, out, err = run_cli(capsys, "compare", str(big), str(small), "--db", db)
        assert code == 0, err
    con = connect(db, read_only=True)
    try:
        (row,) = comparisons.list_comparisons(con)
        cid = row["comparison_id"]
        n_rows = con.execute(
            "SELECT method, count(*) FROM comparison_matches WHERE comparison_id = ? "
            "GROUP BY method ORDER BY method",
            [cid],
        ).fetchall()
        splits = comparisons.comparison_splits(con, cid)
        n_best = con.execute("SELECT count(*) FROM comparison_best").fetchall()[0][0]
    finally:
        con.close()
    assert row["split_side"] == "b" and row["n_matched"] == 24
    assert n_rows == [("coactivation", 24), ("cosine", 24)]
    assert n_best == TINY_FACTORS + 24
    assert row["n_splits"] == splits.height
    assert set(splits["kind"]) <= {"merge"}
    for parts, residual in zip(splits["parts"], splits["residual"], strict=True):
        weights = [p["weight"] for p in parts]
        assert len(parts) >= 2 and weights == sorted(weights, reverse=True)
        assert min(weights) >= 0.3 * max(weights) and residual <= 0.5
    assert 0 <= row["coact_mean"] <= 1 and row["n_vectors"] > 0
    assert row["peak_agreement"] is None  # only one of them has codes
    assert "merges" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["compare", "1", "99"], ["no dictionary 99", "its dictionaries: 1"]),
        (["compare", "1", "1"], ["two different dictionaries"]),
        (["compare", "0", "1"], ["--dictionary", "from 1 to"]),
        (["compare", "1"], ["missing argument"]),
        (["learn", "-m", "24,abc"], ["--n-factors", "integer"]),
        (["learn", "-m", "24,24"], ["--n-factors", "twice"]),
        (["learn", "-m", "24,0"], ["--n-factors", "from 1 to"]),
        (["learn", "--seed", "0,-1"], ["--seed"]),
    ],
)
def test_bad_input_is_one_line(tiny_pipeline_db, tmp_path, capsys, argv, words):
    db = copy_db(tiny_pipeline_db, tmp_path)
    before = sha(db)
    code, _, err = run_cli(capsys, *argv, "--db", db)
    assert_one_line_error(code, err, *words)
    assert sha(db) == before and not (tmp_path / (db.name + ".wip")).exists()


def test_compare_without_a_database_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare", "1", "2", "--db", tmp_path / "none.duckdb")
    assert_one_line_error(code, err, "no database")
    assert list(tmp_path.iterdir()) == []


def _comparison_queries() -> list[str]:
    """The ```sql blocks of docs/SCHEMA.md's Comparisons section."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "SCHEMA.md").read_text("utf-8")
    section = text.split("## Comparisons", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_the_documented_comparison_queries_return_rows(compared_db, tmp_path, capsys):
    db = copy_db(compared_db, tmp_path)
    ids = _by_settings(db)
    for a, b in ((ids[(TINY_FACTORS, 0)], ids[(TINY_FACTORS, 1)]), (ids[(24, 0)], 1)):
        assert main(["compare", str(a), str(b), "--db", str(db)]) == 0
    queries = _comparison_queries()
    assert len(queries) == 3
    con = connect(db, read_only=True)
    try:
        results = [con.execute(sql).fetchall() for sql in queries]
        n_splits = con.execute("SELECT sum(n_splits) FROM comparisons").fetchall()[0][0]
    finally:
        con.close()
    assert [r[1:3] for r in results[0]] == [
        (ids[(TINY_FACTORS, 0)], ids[(TINY_FACTORS, 1)]),
        (ids[(24, 0)], 1),
    ]
    assert len(results[1]) == 10 and [r[2] for r in results[1]] == sorted(r[2] for r in results[1])
    assert n_splits > 0 and results[2] and {r[1] for r in results[2]} <= {"split", "merge"}
    code, out, err = run_cli(capsys, "sql", queries[2], "--db", db)
    assert code == 0 and "residual" in out, err
