"""`factorscope compare A B`: which factors two dictionaries of one run share.

Atoms are matched one-to-one by cosine (Hungarian), each factor gets its best match
the other way, and the stability numbers summarise the matching. Co-activation needs
codes of both dictionaries on the same tokens: the run's stored hidden-state sample
(every layer, the vectors ``learn`` fitted on) is coded with both, so a comparison
works whether or not either dictionary was encoded. The smaller dictionary's atoms are
decomposed on the larger one's (splits and merges). When both dictionaries have
summaries in the warehouse, each matched pair also gets its factors' IS peak layers
and levels. Everything is written by :mod:`factorscope.warehouse.comparisons` on a
staging copy and published like any stage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from factorscope.errors import InputError
from factorscope.progress import stderr_console
from factorscope.sparse.compare import (
    STABLE_COSINES,
    SplitRule,
    best_matches,
    coactivation,
    cosine_matrix,
    decompose_atoms,
    match_one_to_one,
    stability,
)
from factorscope.stages.coder import coder_for
from factorscope.stages.learn import read_sample
from factorscope.warehouse import comparisons, store, summaries
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, newest_copy, staged_database

log = logging.getLogger(__name__)

COACTIVE_SHARE = 0.5
"""Jaccard threshold of the co-activation stability share (``coact_share_50``)."""


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one comparison; stored with it (``comparisons.settings``)."""

    max_vectors: int | None = 20_000
    seed: int = 0
    split_lambda: float = SplitRule.lambda1
    split_min_share: float = SplitRule.min_share
    split_max_residual: float = SplitRule.max_residual
    split_min_gain: float = SplitRule.min_gain

    def __post_init__(self) -> None:
        if self.max_vectors is not None and self.max_vectors < 1:
            raise InputError("max_vectors must be at least 1")
        self.split_rule()  # checks the split settings, naming the bad one

    def split_rule(self) -> SplitRule:
        return SplitRule(
            self.split_lambda, self.split_min_share, self.split_max_residual, self.split_min_gain
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CompareSummary:
    comparison_id: int
    row: dict

    def lines(self) -> list[str]:
        r = self.row
        a, b = r["dictionary_a"], r["dictionary_b"]
        out = [
            f"compare: dictionary {a} ({r['n_factors_a']:,} factors) with {b} "
            f"({r['n_factors_b']:,}): comparison {self.comparison_id}, "
            f"{r['n_matched']:,} pairs matched one-to-one",
            f"  by atom cosine: mean {r['mean_cosine']:.3f}, "
            f"{r['share_cosine_90']:.1%} >= 0.9, {r['share_cosine_70']:.1%} >= 0.7; "
            f"their co-activation (Jaccard) mean {r['mean_coactivation']:.3f}",
            f"  by co-activation over {r['n_vectors']:,} token x layer vectors: mean "
            f"{r['coact_mean']:.3f}, {r['coact_share_50']:.1%} >= {COACTIVE_SHARE}; "
            f"{r['same_match_share']:.1%} of pairs the same as by cosine",
            f"  {r['n_splits']:,} {'splits' if r['split_side'] == 'a' else 'merges'} "
            f"(atoms of {a if r['split_side'] == 'a' else b} that are sums of the other's)",
        ]
        if r.get("peak_agreement") is not None:
            out.append(
                f"  matched pairs with the same IS peak layer: {r['peak_agreement']:.1%}, "
                f"the same level: {r['level_agreement']:.1%}"
            )
        else:
            out.append("  peak layers and levels: encode both dictionaries to compare them")
        return out


def _load(
    db_path: Path, a: int, b: int
) -> tuple[dict, store.DictionaryRecord, store.DictionaryRecord]:
    """The run and both dictionaries, with the user's mistakes as one-line errors."""
    if a == b:
        raise InputError(f"compare needs two different dictionaries, got {a} twice")
    if not db_path.exists():
        raise InputError(f"no database at {db_path} (run `factorscope ingest` first)")
    con = connect(newest_copy(db_path), read_only=True)
    try:
        run = store.require_run(con)
        known = [d["dictionary_id"] for d in store.list_dictionaries(con)]
        for given in (a, b):
            if given not in known:
                have = ", ".join(map(str, known)) if known else "none (run `factorscope learn`)"
                raise InputError(f"no dictionary {given} in {db_path}; its dictionaries: {have}")
        return run, store.load_dictionary(con, a), store.load_dictionary(con, b)
    finally:
        con.close()


def _sample(db_path: Path, config: CompareConfig) -> tuple[np.ndarray, np.ndarray]:
    """The stored hidden-state sample (all layers), cut to ``max_vectors`` by sampling key."""
    return read_sample(db_path, config.max_vectors, config.seed)


def _codes(record: store.DictionaryRecord, X: np.ndarray, layers: np.ndarray) -> sp.csr_matrix:
    return coder_for(record).transform(X, layers=layers)


def _matches_table(match, method: str, cos: np.ndarray, jac: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "method": pa.array([method] * len(match)),
            "factor_a": pa.array(match.factor_a, pa.int32()),
            "factor_b": pa.array(match.factor_b, pa.int32()),
            "cosine": pa.array(cos[match.factor_a, match.factor_b]),
            "coactivation": pa.array(jac[match.factor_a, match.factor_b]),
        }
    )


def _best_table(cos: np.ndarray) -> pa.Table:
    parts = []
    for side, axis in (("a", 1), ("b", 0)):
        best, score = best_matches(cos, axis=axis)
        parts.append(
            pa.table(
                {
                    "side": pa.array([side] * best.size),
                    "factor": pa.array(np.arange(best.size), pa.int32()),
                    "best": pa.array(best, pa.int32()),
                    "cosine": pa.array(score),
                }
            )
        )
    return pa.concat_tables(parts)


def _splits_table(splits: list, kind: str) -> pa.Table:
    parts = [
        [{"factor": int(f), "weight": float(w)} for f, w in zip(s.parts, s.weights, strict=True)]
        for s in splits
    ]
    return pa.table(
        {
            "kind": pa.array([kind] * len(splits), pa.string()),
            "factor": pa.array([s.factor for s in splits], pa.int32()),
            "parts": pa.array(parts, pa.list_(comparisons.SPLIT_PART)),
            "residual": pa.array([s.residual for s in splits], pa.float64()),
        }
    )


def run_compare(
    db_path: str | Path, a: int, b: int, config: CompareConfig | None = None
) -> CompareSummary:
    """Compare dictionaries ``a`` and ``b`` of the run in ``db_path`` and store the result."""
    config = config or CompareConfig()
    db_path = Path(db_path)
    _run, rec_a, rec_b = _load(db_path, a, b)
    check_db_path_writable(db_path)
    started = time.perf_counter()
    with stderr_console.status("matching atoms"):
        cos = cosine_matrix(rec_a.components, rec_b.components)
        by_cosine = match_one_to_one(cos)
    with stderr_console.status("coding the stored sample with both dictionaries"):
        X, layers = _sample(db_path, config)
        jac = coactivation(_codes(rec_a, X, layers), _codes(rec_b, X, layers))
        by_coactivation = match_one_to_one(jac)
    with stderr_console.status("decomposing the smaller dictionary's atoms"):
        side = "a" if rec_a.n_factors <= rec_b.n_factors else "b"
        small, large = (rec_a, rec_b) if side == "a" else (rec_b, rec_a)
        splits = decompose_atoms(small.components, large.components, config.split_rule())
    cos_stats, co_stats = stability(by_cosine.score), stability(by_coactivation.score)
    pairs = set(zip(by_cosine.factor_a.tolist(), by_cosine.factor_b.tolist(), strict=True))
    shared = pairs & set(
        zip(by_coactivation.factor_a.tolist(), by_coactivation.factor_b.tolist(), strict=True)
    )
    row = {
        "dictionary_a": a,
        "dictionary_b": b,
        "n_factors_a": rec_a.n_factors,
        "n_factors_b": rec_b.n_factors,
        "n_matched": len(by_cosine),
        "mean_cosine": cos_stats["mean"],
        "share_cosine_90": cos_stats[f"share_{STABLE_COSINES[0]:g}"],
        "share_cosine_70": cos_stats[f"share_{STABLE_COSINES[1]:g}"],
        "mean_coactivation": float(jac[by_cosine.factor_a, by_cosine.factor_b].mean()),
        "coact_mean": co_stats["mean"],
        "coact_share_50": float((by_coactivation.score >= COACTIVE_SHARE).mean()),
        "same_match_share": len(shared) / max(len(pairs), 1),
        "n_vectors": int(X.shape[0]),
        "split_side": side,
        "n_splits": len(splits),
        "settings": config.to_dict(),
        "seconds": 0.0,
    }
    matches = pa.concat_tables(
        [
            _matches_table(by_cosine, "cosine", cos, jac),
            _matches_table(by_coactivation, "coactivation", cos, jac),
        ]
    )
    kind = "split" if side == "a" else "merge"
    with staged_database(db_path) as con:
        # An encode killed in this staging copy must not be published half done.
        summaries.settle_unfinished_encode(con)
        row["seconds"] = round(time.perf_counter() - started, 3)
        comparison_id = comparisons.write_comparison(
            con, row, matches=matches, best=_best_table(cos), splits=_splits_table(splits, kind)
        )
        peaks = _peak_layers(con, a, b)
        if peaks is not None:
            row["peak_agreement"], row["level_agreement"] = comparisons.set_peak_layers(
                con, comparison_id, *peaks
            )
    log.info("compared %s with %s in %.1f s", a, b, row["seconds"])
    return CompareSummary(comparison_id, row)


def _peak_layers(con, a: int, b: int) -> tuple[pa.Table, pa.Table] | None:
    """Both dictionaries' (factor, peak_layer, level), when both have summaries here."""
    peaks = [comparisons.dictionary_levels(con, d) for d in (a, b)]
    if any(p is None for p in peaks):
        return None
    return peaks[0], peaks[1]
