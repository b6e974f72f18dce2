"""Tests for factorscope.sparse: real SPAMS, real torch, small arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from factorscope.errors import InputError, NotFittedError
from factorscope.sparse import (
    DEFAULT_LAMBDA1,
    DEFAULT_N_FACTORS,
    DictionaryLearner,
    LayerScaler,
    SparseEncoder,
    fista_nonneg,
    fraction_of_variance_unexplained,
    from_array,
    lasso_objective,
)

D_FEAT, M_ATOMS, N_LAYERS = 48, 96, 3


@pytest.fixture(scope="module")
def data():
    """Sparse non-negative mixtures of a hidden dictionary, per-layer offsets and scales."""
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((M_ATOMS, D_FEAT))
    phi /= np.linalg.norm(phi, axis=1, keepdims=True)
    n = 1800
    codes = rng.exponential(1.0, (n, M_ATOMS)) * (rng.random((n, M_ATOMS)) < 0.06)
    X = codes @ phi + 0.05 * rng.standard_normal((n, D_FEAT))
    layers = rng.integers(0, N_LAYERS, n)
    offsets = rng.standard_normal((N_LAYERS, D_FEAT))
    scales = np.array([0.3, 4.0, 20.0])
    X = (X + offsets[layers]) * scales[layers, None]
    return X.astype(np.float32), layers


@pytest.fixture(scope="module")
def learner(data):
    X, layers = data
    return DictionaryLearner(64, lambda1=0.05, n_iter=40, seed=3).fit(X, layers=layers)


def test_defaults_are_the_module_constants():
    p = DictionaryLearner().get_params()
    assert p["n_factors"] == DEFAULT_N_FACTORS
    assert p["lambda1"] == DEFAULT_LAMBDA1


def test_fit_sets_attributes(learner):
    assert learner.components_.shape == (64, D_FEAT)
    assert learner.components_.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(learner.components_, axis=1), 1.0, atol=1e-5)
    assert learner.fit_seconds_ > 0
    assert learner.n_iter_ == 40
    assert isinstance(learner.preprocessor_, LayerScaler)


def test_codes_are_nonnegative_sparse_csr(learner, data):
    X, layers = data
    A = learner.transform(X[:300], layers=layers[:300])
    assert sp.isspmatrix_csr(A)
    assert A.shape == (300, 64)
    assert A.dtype == np.float32
    assert A.nnz > 0
    assert A.data.min() >= 0.0
    assert A.nnz < 0.5 * A.shape[0] * A.shape[1]


@pytest.mark.parametrize("backend", ["spams", "torch"])
def test_kkt_conditions_of_nonnegative_lasso(learner, data, backend):
    X, layers = data
    lam = 0.05
    enc = SparseEncoder(learner, lambda1=lam, backend=backend, dtype="float64", tol=1e-9)
    Xp = enc.preprocess(X[:200], layers=layers[:200]).astype(np.float64)
    A = enc.transform(X[:200], layers=layers[:200]).toarray().astype(np.float64)
    Phi = learner.components_.astype(np.float64)
    corr = (Xp - A @ Phi) @ Phi.T  # phi_j^T r
    active = A > 0
    assert active.any() and (~active).any()
    # float32 codes (the output dtype) bound how exactly the equalities can hold
    np.testing.assert_allclose(corr[active], lam, atol=2e-3)
    assert corr[~active].max() <= lam + 2e-3


def test_same_seed_same_dictionary_different_seed_different(data):
    X, layers = data
    kw = dict(lambda1=0.05, n_iter=20, batch_size=128)
    a = DictionaryLearner(48, seed=7, **kw).fit(X, layers=layers).components_
    b = DictionaryLearner(48, seed=7, **kw).fit(X, layers=layers).components_
    c = DictionaryLearner(48, seed=8, **kw).fit(X, layers=layers).components_
    assert np.array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-3)


def test_progress_reports_every_segment_and_changes_nothing(data):
    """Learning runs in segments (for progress bars) that see every vector, twice."""
    X, layers = data
    kw = dict(lambda1=0.05, n_iter=None, batch_size=32, seed=5)
    calls = []
    with_bar = DictionaryLearner(24, **kw).fit(
        X, layers=layers, progress=lambda d, t: calls.append((d, t))
    )
    without = DictionaryLearner(24, **kw).fit(X, layers=layers)
    n_iter = int(np.ceil(2 * X.shape[0] / 32))  # two passes
    assert with_bar.n_iter_ == n_iter and len(calls) > 2
    assert [d for d, _ in calls] == sorted({d for d, _ in calls}) and calls[-1] == (n_iter, n_iter)
    assert np.array_equal(with_bar.components_, without.components_)
    # segmented learning still finds a good dictionary: it codes the data well
    enc = with_bar.encoder()
    codes = enc.transform(X, layers=layers)
    fvu = fraction_of_variance_unexplained(
        enc.preprocess(X, layers=layers), enc.squared_residuals(X, codes, layers=layers)
    )
    assert fvu < 0.5


def test_torch_backend_objective_matches_spams(learner, data):
    X, layers = data
    lam = 0.05
    spams_enc = SparseEncoder(learner, lambda1=lam)
    torch_enc = SparseEncoder(learner, lambda1=lam, backend="torch")
    Xp = spams_enc.preprocess(X[:400], layers=layers[:400])
    o_spams = lasso_objective(
        Xp, learner.components_, spams_enc.transform(X[:400], layers=layers[:400]), lam
    )
    o_torch = lasso_objective(
        Xp, learner.components_, torch_enc.transform(X[:400], layers=layers[:400]), lam
    )
    assert abs(o_torch.sum() - o_spams.sum()) / o_spams.sum() < 1e-4
    assert np.max(np.abs(o_torch - o_spams) / o_spams) < 1e-3


def test_reference_fista_approaches_spams(learner, data):
    X, layers = data
    enc = SparseEncoder(learner, lambda1=0.05)
    Xp = enc.preprocess(X[:200], layers=layers[:200])
    A = fista_nonneg(Xp, learner.components_, 0.05, n_iter=500, dtype="float64")
    assert A.min() >= 0
    o_ref = lasso_objective(Xp, learner.components_, A, 0.05).sum()
    o_spams = lasso_objective(
        Xp, learner.components_, enc.transform(X[:200], layers=layers[:200]), 0.05
    )
    assert abs(o_ref - o_spams.sum()) / o_spams.sum() < 1e-3


def test_preprocessing_equalises_layers_and_round_trips(data):
    X, layers = data
    sc = LayerScaler().fit(X, layers=layers)
    Xp = sc.transform(X, layers=layers)
    for k in range(N_LAYERS):
        rows = Xp[layers == k]
        assert np.linalg.norm(rows.mean(0)) < 1e-3
        assert np.linalg.norm(rows, axis=1).mean() == pytest.approx(1.0, rel=1e-4)
    state = json.loads(json.dumps(sc.to_dict()))
    sc2 = LayerScaler.from_dict(state)
    assert np.array_equal(sc2.transform(X, layers=layers), Xp)
    np.testing.assert_allclose(sc2.inverse_transform(Xp, layers=layers), X, rtol=1e-4, atol=1e-3)
    with pytest.raises(InputError, match="layer 9"):
        sc.transform(X[:2], layers=[0, 9])
    with pytest.raises(InputError, match="layers is required"):
        sc.transform(X[:2])


def test_learner_state_round_trip_codes_identical(learner, data):
    X, layers = data
    state = json.loads(json.dumps(learner.to_dict()))
    back = DictionaryLearner.from_dict(state, learner.components_.tolist())
    assert back.get_params() == learner.get_params()
    a = learner.transform(X[:100], layers=layers[:100])
    b = back.transform(X[:100], layers=layers[:100])
    assert (a != b).nnz == 0


def test_fvu_and_residuals(learner, data):
    X, layers = data
    enc = learner.encoder()
    A = enc.transform(X[:500], layers=layers[:500])
    r = enc.squared_residuals(X[:500], A, layers=layers[:500])
    assert r.shape == (500,) and (r >= 0).all()
    fvu = fraction_of_variance_unexplained(enc.preprocess(X[:500], layers=layers[:500]), r)
    assert 0.0 < fvu < 0.5
    zero = sp.csr_matrix(A.shape, dtype=np.float32)
    assert enc.squared_residuals(X[:500], zero, layers=layers[:500]).sum() > r.sum()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((3, D_FEAT), np.nan, dtype=np.float32), "NaN"),
        (np.full((3, D_FEAT), np.inf, dtype=np.float32), "Inf"),
        (np.zeros((3, D_FEAT + 1), dtype=np.float32), "features"),
        (np.zeros(D_FEAT, dtype=np.float32), "2-D"),
    ],
)
def test_input_validation(learner, bad, match):
    with pytest.raises(InputError, match=match):
        learner.encoder().transform(bad, layers=np.zeros(len(bad), dtype=int))


def test_empty_input_gives_empty_codes(learner):
    A = learner.transform(np.zeros((0, D_FEAT), dtype=np.float32), layers=np.zeros(0, dtype=int))
    assert A.shape == (0, 64)


def test_bad_params_name_the_parameter(data):
    X, layers = data
    with pytest.raises(InputError, match="lambda1"):
        DictionaryLearner(8, lambda1=-1.0).fit(X, layers=layers)
    with pytest.raises(InputError, match="preprocessing"):
        DictionaryLearner(8, preprocessing="whiten").fit(X, layers=layers)
    with pytest.raises(InputError, match="n_factors"):
        DictionaryLearner(5000).fit(X, layers=layers)
    with pytest.raises(InputError, match="backend"):
        SparseEncoder(np.eye(4, dtype=np.float32), backend="cuda").transform(np.eye(4))


def test_get_set_params():
    dl = DictionaryLearner(10, lambda1=0.2)
    assert dl.get_params()["lambda1"] == 0.2
    assert dl.set_params(lambda1=0.3, seed=4) is dl
    assert dl.get_params()["lambda1"] == 0.3 and dl.seed == 4
    with pytest.raises(InputError, match="no parameter"):
        dl.set_params(alpha=1.0)
    enc = SparseEncoder(np.eye(4, dtype=np.float32), lambda1=0.1)
    assert enc.set_params(backend="torch").get_params()["backend"] == "torch"


def test_not_fitted_errors(data):
    X, layers = data
    with pytest.raises(NotFittedError):
        DictionaryLearner(8).transform(X, layers=layers)
    with pytest.raises(NotFittedError):
        LayerScaler().transform(X, layers=layers)
    with pytest.raises(NotFittedError):
        SparseEncoder(DictionaryLearner(8)).transform(X, layers=layers)


def test_encoder_fit_is_a_noop_returning_self(learner):
    enc = SparseEncoder(learner)
    assert enc.fit() is enc
    assert enc.n_factors_ == 64


def test_from_array_layouts():
    rng = np.random.default_rng(1)
    phi = rng.standard_normal((D_FEAT, 80)) * 3.0  # d x m
    rows = from_array(phi, n_features=D_FEAT)
    assert rows.shape == (80, D_FEAT)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(from_array(phi.T, n_features=D_FEAT), rows)
    np.testing.assert_array_equal(from_array(phi, layout="columns"), rows)
    sq = rng.standard_normal((D_FEAT, D_FEAT))
    np.testing.assert_allclose(
        from_array(sq, n_features=D_FEAT), (sq / np.linalg.norm(sq, axis=0)).T, rtol=1e-5
    )
    with pytest.raises(InputError, match="n_features"):
        from_array(phi)
    with pytest.raises(InputError, match="hidden size"):
        from_array(phi, n_features=50)
    bad = phi.copy()
    bad[:, 3] = 0
    with pytest.raises(InputError, match="all-zero"):
        from_array(bad, n_features=D_FEAT)
    dl = DictionaryLearner.from_array(phi, n_features=D_FEAT, lambda1=0.1)
    A = dl.transform(rng.standard_normal((5, D_FEAT)))
    assert A.shape == (5, 80) and A.data.min() >= 0


@pytest.mark.timeout(60)
def test_spams_workers_solve_blocks_side_by_side_to_the_same_codes(learner, data):
    """n_jobs > 1 splits rows into blocks solved by parallel single-threaded SPAMS calls;
    each row's codes do not depend on its block (tolerance: docs/CONTRACTS.md's RTOL)."""
    X, layers = data
    one = SparseEncoder(learner, n_jobs=1).transform(X, layers=layers)
    two = SparseEncoder(learner, n_jobs=2, block_size=500).transform(X, layers=layers)
    assert one.shape == two.shape and one.shape[0] == X.shape[0]
    assert abs(one.nnz - two.nnz) <= 0.001 * one.nnz
    diff = np.abs((one - two).toarray())
    assert diff.max() <= 1e-4 * max(1.0, float(np.abs(one.data).max()))
