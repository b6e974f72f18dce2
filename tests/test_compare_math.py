"""factorscope.sparse.compare: matching, co-activation and splits on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from factorscope.errors import InputError
from factorscope.sparse.compare import (
    SplitRule,
    best_matches,
    coactivation,
    cosine_matrix,
    decompose_atoms,
    match_one_to_one,
    stability,
)
from tests.contract import ATOL, RTOL

D = 32


def _atoms(m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    atoms = np.abs(rng.standard_normal((m, D))) * (rng.random((m, D)) < 0.3) + 0.01
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


def test_a_permuted_copy_matches_back_with_cosine_one():
    atoms = _atoms(40, 0)
    perm = np.random.default_rng(1).permutation(40)
    copy = atoms[perm].astype(np.float32)  # stored atoms are float32: not bit-identical
    matching = match_one_to_one(cosine_matrix(atoms, copy))
    # factor i of A is row i of A; it sits at row j of B where perm[j] == i
    np.testing.assert_array_equal(matching.factor_a, np.arange(40))
    np.testing.assert_array_equal(perm[matching.factor_b], matching.factor_a)
    np.testing.assert_allclose(matching.score, 1.0, rtol=RTOL, atol=ATOL)
    summary = stability(matching.score)
    assert summary["share_0.9"] == 1.0 and summary["share_0.7"] == 1.0
    assert summary["mean"] == pytest.approx(1.0, abs=ATOL)
    best, score = best_matches(cosine_matrix(atoms, copy), axis=0)
    np.testing.assert_array_equal(best, perm)
    np.testing.assert_allclose(score, 1.0, atol=ATOL)


def test_matching_different_sizes_pairs_the_smaller_side_once():
    big = _atoms(30, 2)
    small = big[[7, 3, 21]] + 0.05 * _atoms(3, 3)
    matching = match_one_to_one(cosine_matrix(small, big))
    assert len(matching) == 3
    np.testing.assert_array_equal(matching.factor_b, [7, 3, 21])
    assert len(match_one_to_one(cosine_matrix(big, small))) == 3
    summary = stability(np.array([0.95, 0.8, 0.5, 0.1]))
    assert summary == {"mean": pytest.approx(0.5875), "share_0.9": 0.25, "share_0.7": 0.5}


def test_unrelated_dictionaries_are_not_stable():
    matching = match_one_to_one(cosine_matrix(_atoms(20, 4), -_atoms(20, 5)))
    assert stability(matching.score)["share_0.7"] == 0.0


def test_coactivation_is_the_jaccard_index_of_activity():
    codes_a = sp.csr_matrix(np.array([[1.0, 0], [0.5, 0], [0, 2.0], [0, 0]]))
    codes_b = sp.csr_matrix(np.array([[0, 3.0, 0], [0, 0.1, 0], [0, 1.0, 0], [0, 0, 0]]))
    jac = coactivation(codes_a, codes_b)
    np.testing.assert_allclose(jac, [[0, 2 / 3, 0], [0, 1 / 3, 0]])
    matching = match_one_to_one(jac)
    assert matching.factor_b[0] == 1
    with pytest.raises(InputError, match="same vectors"):
        coactivation(codes_a, codes_b[:3])


def test_sums_of_atoms_are_reported_as_splits_with_their_weights():
    large = _atoms(24, 6)
    recipes = {0: ([2, 9], [1.0, 1.0]), 1: ([4, 11, 17], [1.0, 0.6, 0.4]), 2: ([5], [1.0])}
    small = []
    for parts, weights in recipes.values():
        atom = np.asarray(weights) @ large[parts]
        small.append(atom / np.linalg.norm(atom))
    small = np.asarray(small)
    splits = {s.factor: s for s in decompose_atoms(small, large)}
    assert set(splits) == {0, 1}  # factor 2 is one atom of B: matched, not split
    for factor in (0, 1):
        parts, weights = recipes[factor]
        atom = np.asarray(weights) @ large[parts]
        expected = dict(zip(parts, np.asarray(weights) / np.linalg.norm(atom), strict=True))
        got = dict(zip(splits[factor].parts.tolist(), splits[factor].weights, strict=True))
        assert sorted(got) == sorted(expected), (factor, got)
        for part, weight in expected.items():
            assert got[part] == pytest.approx(weight, rel=1e-3, abs=1e-3)
        assert splits[factor].residual < 1e-3
        assert list(splits[factor].weights) == sorted(splits[factor].weights, reverse=True)


def test_a_weak_part_below_the_share_is_not_counted():
    large = _atoms(12, 7)
    atom = large[0] + 0.1 * large[1]
    split = decompose_atoms((atom / np.linalg.norm(atom))[None], large, SplitRule())
    assert split == []  # 0.1 / 1.0 is below min_share 0.3: one atom carries the weight


def test_bad_inputs_name_the_argument():
    with pytest.raises(InputError, match="features"):
        cosine_matrix(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InputError, match="min_share"):
        SplitRule(min_share=0)
    with pytest.raises(InputError, match="NaN"):
        cosine_matrix(np.full((2, 3), np.nan), np.ones((2, 3)))


def test_a_near_twin_with_a_small_second_part_is_a_match_not_a_split():
    large = _atoms(12, 8)
    atom = large[0] + 0.25 * large[1]  # cosine with b0 near 0.97: already matched
    atom /= np.linalg.norm(atom)
    # b1 carries 0.25 of b0's weight, but b0 alone leaves a residual of only 0.24
    assert decompose_atoms(atom[None], large, SplitRule(min_share=0.2, min_gain=0.3)) == []
    assert len(decompose_atoms(atom[None], large, SplitRule(min_share=0.2, min_gain=0.0))) == 1
