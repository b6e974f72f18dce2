"""Control dictionaries (`learn --control gaussian|sample-atoms`): random atoms of a
parent's size and preprocessing, lambda bisected until the mean L0 matches the parent's.

Real SPAMS and real DuckDB on the tiny pipeline database (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from factorscope.sparse import (
    CONTROL_KINDS,
    L0_TOLERANCE,
    DictionaryLearner,
    bisect_lambda,
    make_control,
)
from factorscope.stages.encode import EncodeConfig, run_encode
from factorscope.stages.learn import (
    ControlConfig,
    LearnConfig,
    load_learner,
    read_sample,
    run_learn,
    run_learn_control,
)
from factorscope.warehouse import store
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import wip_path
from tests.conftest import TINY_FACTORS, copy_db
from tests.test_cli_errors import assert_one_line_error, run_cli

SEED = 3


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _record(db: Path, dictionary_id: int) -> store.DictionaryRecord:
    con = connect(db, read_only=True)
    try:
        return store.load_dictionary(con, dictionary_id)
    finally:
        con.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def controls_db(tiny_pipeline_db, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny pipeline (dictionary 1, encoded) plus a gaussian control (2) and a
    sample-atoms control (3), both of the default parent."""
    db = copy_db(tiny_pipeline_db, tmp_path_factory.mktemp("controls"))
    summaries = {
        kind: run_learn_control(db, ControlConfig(kind=kind, seed=SEED)) for kind in CONTROL_KINDS
    }
    return db, summaries


@pytest.mark.timeout(120)
def test_a_control_is_stored_as_a_control_of_its_parent(controls_db):
    db, summaries = controls_db
    ids = {kind: s.dictionary_id for kind, s in summaries.items()}
    assert ids == {"gaussian": 2, "sample-atoms": 3}
    rows = _rows(db, "SELECT dictionary_id, kind, parent_id, source FROM dictionaries ORDER BY 1")
    assert rows == [
        (1, "learned", None, "trainDL"),
        (2, "control", 1, "control:gaussian"),
        (3, "control", 1, "control:sample-atoms"),
    ]
    parent = _record(db, 1)
    for kind, dictionary_id in ids.items():
        record = _record(db, dictionary_id)
        assert record.components.shape == parent.components.shape == (TINY_FACTORS, 32)
        np.testing.assert_allclose(np.linalg.norm(record.components, axis=1), 1.0, atol=1e-5)
        assert not np.allclose(record.components, parent.components)
        assert record.preprocessing == parent.preprocessing  # the parent's, exactly
        learner = load_learner(record)  # rebuilt as any dictionary is
        assert learner.lambda1 == pytest.approx(record.lambda1)
        assert learner.preprocessing == load_learner(parent).preprocessing
        config = record.params["learn_config"]
        assert config["control"] == kind and config["parent_id"] == 1 and config["seed"] == SEED
        assert config["tolerance"] == L0_TOLERANCE
        assert config["n_bisection_vectors"] > 0
        assert {"target_l0", "achieved_l0", "lambda1", "converged"} <= set(config)
        line = summaries[kind].line()
        assert f"control dictionary {dictionary_id} ({kind}, parent 1)" in line
        assert "tolerance 2%" in line and f"--dictionary {dictionary_id}" in line
        assert "\n" not in line


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", sorted(CONTROL_KINDS))
def test_the_controls_mean_l0_matches_the_parents_on_the_stored_sample(controls_db, kind):
    """Recomputed here from the stored sample (the search's rows: the first
    n_bisection_vectors of the seed's permutation), not read from what learn recorded."""
    db, summaries = controls_db
    record = _record(db, summaries[kind].dictionary_id)
    config = record.params["learn_config"]
    X, layers = read_sample(db, None, 0)
    rows = np.random.default_rng(SEED).permutation(X.shape[0])[: config["n_bisection_vectors"]]
    if kind == "sample-atoms":
        assert X.shape[0] - rows.size >= TINY_FACTORS  # atoms came from the other rows
    X, layers = X[rows], layers[rows]

    def l0(rec: store.DictionaryRecord) -> float:
        codes = load_learner(rec).encoder().transform(X, layers=layers)
        return float(np.diff(codes.indptr).mean())

    parent_l0, control_l0 = l0(_record(db, 1)), l0(record)
    assert parent_l0 > 1
    assert abs(control_l0 - parent_l0) <= L0_TOLERANCE * parent_l0, (control_l0, parent_l0)
    assert config["target_l0"] == pytest.approx(parent_l0)
    assert config["achieved_l0"] == pytest.approx(control_l0)
    assert config["converged"] is True


@pytest.mark.timeout(120)
def test_the_same_control_again_is_reused_and_writes_nothing(controls_db):
    db, summaries = controls_db
    before = _sha(db)
    again = run_learn_control(db, ControlConfig(kind="gaussian", parent_id=1, seed=SEED))
    assert again.reused and again.dictionary_id == summaries["gaussian"].dictionary_id
    assert "already exists; nothing to do" in again.line()
    assert _sha(db) == before and not wip_path(db).exists()


@pytest.mark.timeout(300)
def test_a_control_encodes_like_any_dictionary_and_never_becomes_the_default(
    tiny_pipeline_db, tmp_path
):
    db = copy_db(tiny_pipeline_db, tmp_path)
    control = run_learn_control(db, ControlConfig(kind="gaussian", seed=1))
    assert control.dictionary_id == 2 and not control.reused
    summary = run_encode(db, EncodeConfig(dictionary_id=2))
    assert summary.dictionary_id == 2 and summary.n_codes > 0

    def encoded_l0(dictionary_id: int) -> float:
        return _rows(
            db,
            "SELECT sum(sum_l0) / sum(n_vectors) FROM encode_chunk_stats WHERE dictionary_id = ?",
            [dictionary_id],
        )[0][0]

    # The sample is every vector here, so encode's mean L0 is the one the search matched.
    parent_l0, control_l0 = encoded_l0(1), encoded_l0(2)
    assert abs(control_l0 - parent_l0) <= L0_TOLERANCE * parent_l0, (control_l0, parent_l0)
    assert _rows(db, "SELECT status FROM dictionaries WHERE dictionary_id = 2") == [("encoded",)]
    # Encoded last, but the views and a plain `encode` stay on the parent.
    assert _rows(db, "SELECT dictionary_id FROM active_dictionary") == [(1,)]
    con = connect(db, read_only=True)
    try:
        assert store.latest_dictionary_id(con) == 1
        assert store.latest_dictionary_id(con, status=("encoded",)) == 1
    finally:
        con.close()
    assert run_encode(db).dictionary_id == 1
    # A dictionary learned after the control is the default one, and a parent by default.
    learned = run_learn(db, LearnConfig(n_factors=24, lambda1=0.05, seed=1))
    assert learned.dictionary_id == 3
    second = run_learn_control(db, ControlConfig(kind="sample-atoms", seed=1))
    assert second.control is not None and second.control.parent_id == 3
    assert _rows(db, "SELECT kind, parent_id FROM dictionaries WHERE dictionary_id = 4") == [
        ("control", 3)
    ]


@pytest.mark.timeout(120)
def test_the_npy_import_is_stored_as_imported(tiny_pipeline_db, tmp_path):
    db = copy_db(tiny_pipeline_db, tmp_path)
    phi = np.random.default_rng(0).standard_normal((32, 16))
    np.save(tmp_path / "phi.npy", phi)
    summary = run_learn(db, LearnConfig(lambda1=0.05), from_npy=tmp_path / "phi.npy")
    assert _rows(
        db,
        "SELECT kind, parent_id FROM dictionaries WHERE dictionary_id = ?",
        [summary.dictionary_id],
    ) == [("imported", None)]
    # An imported dictionary (raw hidden states, no preprocessing) may have a control.
    control = run_learn_control(db, ControlConfig(kind="gaussian", parent_id=summary.dictionary_id))
    record = _record(db, control.dictionary_id)
    assert record.preprocessing == {} and record.n_factors == 16


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--control", "bogus"], ["--control", "gaussian", "sample-atoms"]),
        (["--control", "gaussian", "--parent", "9"], ["--parent 9", "no dictionary 9"]),
        (["--control", "gaussian", "--parent", "2"], ["dictionary 2 is itself a control"]),
        (["--control", "gaussian", "--parent", "0"], ["--parent"]),
        (["--control", "gaussian", "--from-npy", "phi.npy"], ["--from-npy"]),
        (["--parent", "1"], ["--control"]),
        (["--control", "sample-atoms", "-m", "12"], ["--n-factors"]),
        (["--control", "gaussian", "--lambda", "0.1"], ["--lambda"]),
    ],
)
def test_bad_control_options_are_one_line_and_write_nothing(
    controls_db, tmp_path, capsys, monkeypatch, argv, words
):
    db = copy_db(controls_db[0], tmp_path)
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "phi.npy", np.eye(32, 8))
    before = sorted(p.name for p in tmp_path.iterdir())
    digest = _sha(db)
    code, out, err = run_cli(capsys, "learn", "--db", db, *argv)
    assert_one_line_error(code, err, *words)
    assert out == ""
    assert _sha(db) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .wip, no lock


@pytest.mark.timeout(120)
def test_the_cli_makes_a_control_and_reuses_it(controls_db, tmp_path, capsys):
    db = copy_db(controls_db[0], tmp_path)
    code, out, _ = run_cli(capsys, "learn", "--db", db, "--control", "gaussian", "--seed", "5")
    assert code == 0
    assert out.startswith("learn: control dictionary 4 (gaussian, parent 1), 48 factors, lambda ")
    code, out, _ = run_cli(
        capsys, "learn", "--db", db, "--control", "gaussian", "--parent", "1", "--seed", "5"
    )
    assert code == 0 and "already exists; nothing to do" in out
    assert _rows(db, "SELECT count(*) FROM dictionaries WHERE kind = 'control'") == [(3,)]


# ----------------------------------------------------------------------------- sparse level


@pytest.mark.timeout(60)
def test_bisection_finds_a_lambda_within_the_tolerance():
    calls: list[float] = []

    def l0(lam: float) -> float:  # falls with lambda, like a lasso's mean L0
        calls.append(lam)
        return 40.0 / (1.0 + 30.0 * lam)

    search = bisect_lambda(l0, 17.3, start=0.07)
    assert search.converged and abs(search.mean_l0 - 17.3) <= 0.02 * 17.3
    assert search.tolerance == pytest.approx(0.02 * 17.3)
    assert search.steps == len(calls) <= 20
    assert search.mean_l0 == pytest.approx(l0(search.lambda1))


@pytest.mark.timeout(60)
def test_bisection_that_cannot_reach_the_target_returns_the_closest_and_says_so():
    search = bisect_lambda(lambda lam: min(10.0, 1.0 / lam), 50.0, start=0.07, max_steps=12)
    assert not search.converged and search.steps == 12
    assert search.mean_l0 == 10.0  # the closest it saw, reported
    # A step function: the target sits in a jump no lambda lands in.
    search = bisect_lambda(lambda lam: 30.0 if lam < 0.1 else 10.0, 20.0, start=0.07)
    assert not search.converged and search.steps == 20
    assert search.mean_l0 in (10.0, 30.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(CONTROL_KINDS))
def test_make_control_is_seeded_and_keeps_the_parents_preprocessing(kind):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 16)).astype(np.float32) + 2.0
    layers = np.repeat([0, 1, 2], 200)
    parent = DictionaryLearner(24, lambda1=0.1, seed=0, n_jobs=1).fit(X, layers=layers)
    one = make_control(parent, kind, X, layers=layers, seed=1, n_bisection_vectors=300)
    two = make_control(parent, kind, X, layers=layers, seed=1, n_bisection_vectors=300)
    other = make_control(parent, kind, X, layers=layers, seed=2, n_bisection_vectors=300)
    np.testing.assert_array_equal(one.learner.components_, two.learner.components_)
    assert one.search == two.search
    assert not np.array_equal(one.learner.components_, other.learner.components_)
    assert one.n_bisection_vectors == 300 and one.search.converged
    assert one.learner.preprocessor_ is parent.preprocessor_
    assert one.learner.lambda1 == one.search.lambda1
    state = json.loads(json.dumps(one.learner.to_dict()))
    assert state["preprocessor"] == parent.to_dict()["preprocessor"]
    rebuilt = DictionaryLearner.from_dict(state, one.learner.components_)
    np.testing.assert_array_equal(
        rebuilt.transform(X[:50], layers=layers[:50]).toarray(),
        one.learner.transform(X[:50], layers=layers[:50]).toarray(),
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_control_killed_before_its_publish_is_published_by_the_same_command(
    tiny_pipeline_db, tmp_path
):
    from tests.test_crash import kill_at
    from tests.test_crash import run_cli as run_subprocess

    db = copy_db(tiny_pipeline_db, tmp_path)
    digest = _sha(db)
    args = ["learn", "--db", str(db), "--control", "sample-atoms", "--seed", "4"]
    kill_at(args, "learn.fitted")  # killed before anything is stored: nothing is
    assert _sha(db) == digest
    kill_at(args, "learn.saved")  # stored in the staging copy, not published
    assert _sha(db) == digest and wip_path(db).exists()
    out = run_subprocess(args)
    assert "control dictionary 2 (sample-atoms, parent 1), made by an interrupted run" in out
    assert _rows(db, "SELECT kind, parent_id FROM dictionaries WHERE dictionary_id = 2") == [
        ("control", 1)
    ]
    assert "already exists; nothing to do" in run_subprocess(args)
    assert _rows(db, "SELECT count(*) FROM dictionaries") == [(2,)]
