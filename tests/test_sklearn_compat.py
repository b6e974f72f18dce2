"""The sparse estimators are scikit-learn estimators: check_estimator, clone, Pipeline, search.

Every check scikit-learn's ``check_estimator`` runs must pass, except those listed in
an ``EXPECTED_FAILURES`` table with the reason it cannot apply; a listed check that
starts to pass fails the test (the table must stay true). Small data, few updates:
the whole file runs in a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import check_estimator

from factorscope.errors import InputError, NotFittedError
from factorscope.sparse import (
    DictionaryLearner,
    LayerScaler,
    SparseEncoder,
    fraction_of_variance_unexplained,
)

# SparseEncoder codes against a fixed dictionary, so X must have the dictionary's
# width; these checks feed X of another width (given here). They are expected to fail
# with a 3-feature dictionary and are run again below with a dictionary as wide as
# the data they use (as scikit-learn's own suite does for SparseCoder).
ENCODER_CHECK_WIDTHS = {
    "check_estimators_overwrite_params": 2,
    "check_estimators_fit_returns_self": 2,
    "check_readonly_memmap_input": 2,
    "check_n_features_in_after_fitting": 4,
    "check_positive_only_tag_during_fit": 4,  # iris
    "check_estimators_dtypes": 5,
    "check_dtype_object": 10,
    "check_transformers_unfitted_stateless": 5,
    "check_fit2d_1sample": 10,
    "check_fit2d_1feature": 1,
    "check_fit_idempotent": 2,
    "check_fit_check_is_fitted": 2,
    "check_n_features_in": 2,
}

EXPECTED_FAILURES = {
    "DictionaryLearner": {},
    "LayerScaler": {},
    "SparseEncoder": {
        **{
            name: (
                f"feeds X with {width} feature(s) but the encoder's fixed dictionary has 3: "
                "run with a dictionary of that width in test_encoder_checks_at_data_width"
            )
            for name, width in ENCODER_CHECK_WIDTHS.items()
        },
        "check_transformer_n_iter": (
            "max_iter caps the torch FISTA iterations inside transform; fit learns "
            "nothing (a stateless encoder), so there is no n_iter_ to report"
        ),
    },
}


def _encoder(width: int = 3) -> SparseEncoder:
    atoms = np.random.default_rng(width).standard_normal((6, width))
    return SparseEncoder(atoms, n_jobs=1)


def _encoder_of_a_learner() -> SparseEncoder:
    X = np.random.default_rng(1).standard_normal((40, 3))
    return SparseEncoder(DictionaryLearner(5, n_iter=3, batch_size=8).fit(X), n_jobs=1)


ESTIMATORS = {
    "scaler": LayerScaler(),
    "scaler-identity": LayerScaler(center=False, scale=False),
    "learner": DictionaryLearner(n_factors=5, n_iter=3, batch_size=8),
    "learner-raw": DictionaryLearner(n_factors=5, n_iter=3, batch_size=8, preprocessing="none"),
    "encoder-array": _encoder(),
    "encoder-learner": _encoder_of_a_learner(),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("estimator", list(ESTIMATORS.values()), ids=list(ESTIMATORS))
def test_check_estimator(estimator):
    expected = EXPECTED_FAILURES[type(estimator).__name__]
    results = check_estimator(
        estimator, expected_failed_checks=expected, on_fail=None, on_skip=None
    )
    by_status: dict[str, list[str]] = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["check_name"])
    failed = [f"{r['check_name']}: {r['exception']!r}" for r in results if r["status"] == "failed"]
    assert not failed, "\n".join(failed)
    # an expected failure that passes is a stale entry: remove it from the table
    assert sorted(set(by_status.get("xfail", []))) == sorted(expected)
    # skipped only where scikit-learn itself skips (array API without SCIPY_ARRAY_API)
    assert set(by_status.get("skipped", [])) <= {"check_array_api_input"}
    assert len(by_status["passed"]) >= 30


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("check_name", "width"), sorted(ENCODER_CHECK_WIDTHS.items()))
def test_encoder_checks_at_data_width(check_name, width):
    """The checks listed as expected failures pass once the dictionary fits the data."""
    check = getattr(estimator_checks, check_name)
    check("SparseEncoder", _encoder(width))


def test_sklearn_version_supports_the_mechanisms():
    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    assert (major, minor) >= (1, 6)  # __sklearn_tags__, validate_data, expected_failed_checks


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    atoms = rng.standard_normal((12, 8))
    codes = rng.exponential(1.0, (240, 12)) * (rng.random((240, 12)) < 0.2)
    X = codes @ atoms + 0.05 * rng.standard_normal((240, 8))
    layers = rng.integers(0, 3, 240)
    X = X * np.array([0.5, 2.0, 8.0])[layers, None]
    return X.astype(np.float32), layers


def test_layers_are_keyword_only_and_plain_fit_transform_work(data):
    X, layers = data
    dl = DictionaryLearner(6, n_iter=5, batch_size=16)
    with pytest.raises(TypeError):
        dl.fit(X, None, layers)  # the second positional argument is y
    A = dl.fit(X).transform(X)  # no layers: one layer
    assert sp.isspmatrix_csr(A) and A.shape == (len(X), 6) and A.dtype == np.float32
    with pytest.raises(TypeError):
        dl.transform(X, layers)
    by_layer = clone(dl).fit(X, layers=layers)
    assert by_layer.preprocessor_.layers_.tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="layers is required"):
        by_layer.transform(X)
    B = by_layer.fit_transform(X, layers=layers)
    assert (by_layer.transform(X, layers=layers) != B).nnz == 0


def test_errors_are_both_project_and_sklearn_types(data):
    X, _ = data
    with pytest.raises(NotFittedError) as info:
        DictionaryLearner(4).transform(X)
    assert isinstance(info.value, SklearnNotFittedError)
    with pytest.raises(InputError, match="lambda1") as info:
        DictionaryLearner(4, lambda1=0.0).fit(X)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputError, match="n_factors"):
        DictionaryLearner(True).fit(X)
    with pytest.raises(InputError, match="expecting 8 features") as info:
        DictionaryLearner(4, n_iter=2).fit(X).transform(X[:, :5])
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputError, match="no parameter") as info:
        SparseEncoder(np.eye(8)).set_params(alpha=1.0)
    assert isinstance(info.value, ValueError)


def test_clone_keeps_params_and_drops_fitted_state(data):
    X, layers = data
    dl = DictionaryLearner(6, lambda1=0.2, n_iter=5, seed=4).fit(X, layers=layers)
    twin = clone(dl)
    assert twin.get_params() == dl.get_params()
    assert not hasattr(twin, "components_")
    assert np.array_equal(twin.fit(X, layers=layers).components_, dl.components_)
    sc = clone(LayerScaler(center=False))
    assert sc.get_params() == {"center": False, "scale": True}


def test_clone_of_an_encoder_shares_the_fitted_dictionary(data):
    X, layers = data
    dl = DictionaryLearner(6, n_iter=5).fit(X, layers=layers)
    enc = SparseEncoder(dl, lambda1=0.1, n_jobs=1)
    twin = clone(enc)
    assert twin.dictionary is dl and twin.get_params() == enc.get_params()
    assert "dictionary__lambda1" not in enc.get_params(deep=True)  # data, not a parameter
    assert (twin.transform(X, layers=layers) != enc.transform(X, layers=layers)).nnz == 0
    assert enc.get_feature_names_out().tolist()[:2] == ["sparseencoder0", "sparseencoder1"]


def test_pipeline_and_feature_names(data):
    X, _ = data
    pipe = make_pipeline(
        FunctionTransformer(lambda Z: Z * 2.0),
        DictionaryLearner(6, n_iter=5, batch_size=16),
    )
    A = pipe.fit_transform(X)
    assert sp.isspmatrix_csr(A) and A.shape == (len(X), 6)
    assert (pipe.transform(X) != A).nnz == 0
    assert pipe[-1].get_feature_names_out().tolist()[-1] == "dictionarylearner5"
    assert LayerScaler().fit(X).get_feature_names_out().tolist()[:1] == ["x0"]


def test_pipeline_routes_layers_as_metadata(data):
    X, layers = data
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline(
            [
                (
                    "dl",
                    DictionaryLearner(6, n_iter=5, batch_size=16)
                    .set_fit_request(layers=True, progress=False)
                    .set_transform_request(layers=True),
                )
            ]
        )
        A = pipe.fit(X, layers=layers).transform(X, layers=layers)
    direct = DictionaryLearner(6, n_iter=5, batch_size=16).fit(X, layers=layers)
    assert (direct.transform(X, layers=layers) != A).nnz == 0


@pytest.mark.timeout(60)
def test_grid_search_over_lambda1(data):
    X, _ = data

    def neg_fvu(estimator, X_val, y=None):
        enc = estimator.encoder(n_jobs=1)
        codes = enc.transform(X_val)
        return -fraction_of_variance_unexplained(
            enc.preprocess(X_val), enc.squared_residuals(X_val, codes)
        )

    search = GridSearchCV(
        DictionaryLearner(6, n_iter=5, batch_size=16),
        {"lambda1": [0.02, 0.5]},
        scoring=neg_fvu,
        cv=2,
    ).fit(X)
    assert len(search.cv_results_["params"]) == 2
    assert search.best_params_ == {"lambda1": 0.02}  # less shrinkage, less residual
    assert search.best_estimator_.components_.shape == (6, X.shape[1])


@pytest.mark.timeout(60)
def test_grid_search_over_the_encoders_lambda1_keeps_the_fitted_dictionary(data):
    X, _ = data
    dl = DictionaryLearner(6, n_iter=5, batch_size=16).fit(X)

    def mean_l0(encoder, X_val, y=None):
        return -float(np.diff(encoder.transform(X_val).indptr).mean())

    search = GridSearchCV(
        SparseEncoder(dl, n_jobs=1), {"lambda1": [0.05, 0.5]}, scoring=mean_l0, cv=2
    ).fit(X)
    assert search.best_params_ == {"lambda1": 0.5}  # more shrinkage, fewer active factors
    assert search.best_estimator_.dictionary is dl


def test_encoder_takes_a_fitted_sklearn_dictionary(data):
    from sklearn.decomposition import MiniBatchDictionaryLearning

    X, _ = data
    mbdl = MiniBatchDictionaryLearning(5, max_iter=3, random_state=0).fit(X)
    codes = SparseEncoder(mbdl, lambda1=0.1, n_jobs=1).transform(X)
    assert codes.shape == (len(X), 5) and codes.data.min() >= 0
    with pytest.raises(NotFittedError):
        SparseEncoder(MiniBatchDictionaryLearning(5)).transform(X)
