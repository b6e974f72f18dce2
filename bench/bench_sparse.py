"""Throughput of the sparse coding step on real hidden states of the default model.

Run: ``python bench/bench_sparse.py --out bench/results/sparse.json``

A few hundred sentences of ``/usr/share/games/fortunes/fortunes`` go through the
packaged all-MiniLM-L6-v2 (offline); every layer's token vectors ([CLS], [SEP]
and padding dropped) are stacked. One dictionary is learned, then the same
vectors are coded by

(a) ``SparseEncoder.transform`` -- the pipeline path (validation, per-layer
    preprocessing, blocking, CSR output);
(b) a bare ``spams.lasso`` call on the already preprocessed Fortran array;
(c) the reference: non-negative FISTA, 500 iterations, step 1/L, in torch;
(d) ``sklearn.decomposition.sparse_encode(algorithm="lasso_cd", positive=True)``;
(e) ``SparseEncoder(backend="torch")`` (FISTA with restart, duality-gap stop).

scikit-learn's ``lasso_cd`` fits ``Lasso(alpha=regularization / n_features)``,
whose objective is ``1/(2 n_features) ||x - D^T a||^2 + alpha ||a||_1``: that is
our objective divided by ``n_features``, so ``alpha=lambda1`` poses the same
problem (checked below through the objective). Slow methods run on a subsample;
all figures are per-signal throughputs and objectives are compared on the rows
every method coded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _hidden

from factorscope.sparse import (
    DictionaryLearner,
    SparseEncoder,
    fista_nonneg,
    lasso_objective,
)

log = logging.getLogger("bench_sparse")


def _timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/sparse.json"))
    ap.add_argument("--sentences", type=int, default=400)
    ap.add_argument("--n-factors", type=int, default=1000)
    ap.add_argument("--fit-vectors", type=int, default=10000)
    ap.add_argument("--encode-vectors", type=int, default=20000)
    ap.add_argument("--slow-vectors", type=int, default=600, help="subsample for (c)-(e)")
    ap.add_argument("--n-jobs", type=int, default=-1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import spams
    import torch
    from sklearn.decomposition import sparse_encode

    t0 = time.perf_counter()
    sents = _hidden.fortune_sentences()
    rng = np.random.default_rng(0)
    sents = [sents[i] for i in rng.choice(len(sents), min(args.sentences, len(sents)), False)]
    X, layers = _hidden.hidden_states(sents)
    log.info(
        "%d vectors (7 layers) from %d sentences in %.1fs",
        len(X),
        len(sents),
        time.perf_counter() - t0,
    )

    fit_idx = rng.choice(len(X), min(args.fit_vectors, len(X)), replace=False)
    dl = DictionaryLearner(args.n_factors, n_jobs=args.n_jobs, n_iter=None, seed=0)
    dl.fit(X[fit_idx], layers=layers[fit_idx])
    lam = dl.lambda1
    log.info("trainDL m=%d on %d vectors: %.1fs", args.n_factors, len(fit_idx), dl.fit_seconds_)

    enc_idx = np.sort(rng.choice(len(X), min(args.encode_vectors, len(X)), replace=False))
    Xe, Le = X[enc_idx], layers[enc_idx]
    enc = SparseEncoder(dl, lambda1=lam, n_jobs=args.n_jobs)
    comp = dl.components_
    enc.transform(Xe[:256], layers=Le[:256])  # warm-up

    # (a) pipeline, (b) bare spams.lasso: best of 3 each, interleaved
    Xp = enc.preprocess(Xe, layers=Le)
    Xf = np.asfortranarray(Xp.T)
    Df = np.asfortranarray(comp.T)
    ta, tb = [], []
    for _ in range(3):
        A, t = _timed(enc.transform, Xe, layers=Le)
        ta.append(t)
        B, t = _timed(spams.lasso, Xf, D=Df, lambda1=lam, mode=2, pos=True, numThreads=args.n_jobs)
        tb.append(t)
    n = len(Xe)
    rate_a, rate_b = n / min(ta), n / min(tb)
    l0 = float(np.diff(A.indptr).mean())

    # slow methods on a subsample
    s = np.sort(rng.choice(n, min(args.slow_vectors, n), replace=False))
    Xs = Xp[s]
    obj_spams = lasso_objective(Xs, comp, A[s], lam)
    C, tc = _timed(fista_nonneg, Xs, comp, lam, 500, dtype="float32")
    rate_c = len(s) / tc
    obj_c = lasso_objective(Xs, comp, C, lam)
    Dsk, td = _timed(
        sparse_encode,
        Xs.astype(np.float64),
        comp.astype(np.float64),
        algorithm="lasso_cd",
        alpha=lam,
        positive=True,
        n_jobs=1,
        max_iter=2000,
    )
    rate_d = len(s) / td
    obj_d = lasso_objective(Xs, comp, Dsk, lam)
    tenc = SparseEncoder(dl, lambda1=lam, backend="torch", tol=1e-6)
    E, te = _timed(tenc.transform, Xe[s], layers=Le[s])
    rate_e = len(s) / te
    obj_e = lasso_objective(Xs, comp, E, lam)

    def rel(o):
        return float(abs(o.sum() - obj_spams.sum()) / obj_spams.sum())

    res = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "n_vectors_total": len(X),
        "n_features": int(X.shape[1]),
        "n_factors": int(args.n_factors),
        "lambda1": lam,
        "preprocessing": dl.preprocessing,
        "fit_vectors": len(fit_idx),
        "fit_seconds": dl.fit_seconds_,
        "fit_signals_per_s": dl.n_iter_ * dl.batch_size / dl.fit_seconds_,
        "encode_vectors": int(n),
        "slow_vectors": len(s),
        "mean_l0": l0,
        "signals_per_s": {
            "a_pipeline_spams": rate_a,
            "b_bare_spams_lasso": rate_b,
            "c_reference_fista_500": rate_c,
            "d_sklearn_lasso_cd": rate_d,
            "e_pipeline_torch_fista": rate_e,
        },
        "ratios": {
            "a_over_b": rate_a / rate_b,
            "a_over_c": rate_a / rate_c,
            "a_over_d": rate_a / rate_d,
        },
        "targets": {"a_over_b": 0.9, "a_over_c": 50.0},
        "objective_rel_diff_vs_spams": {
            "b_bare_spams_lasso": float(
                abs(lasso_objective(Xs, comp, B.T.tocsr()[s], lam).sum() - obj_spams.sum())
                / obj_spams.sum()
            ),
            "c_reference_fista_500": rel(obj_c),
            "d_sklearn_lasso_cd": rel(obj_d),
            "e_pipeline_torch_fista": rel(obj_e),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))

    print(
        f"d={res['n_features']} m={res['n_factors']} lambda1={lam} "
        f"preprocessing={dl.preprocessing} mean L0={l0:.1f}"
    )
    print(f"{'method':28s} {'signals/s':>12s} {'a / this':>9s} {'obj rel diff':>13s}")
    for key, rate in res["signals_per_s"].items():
        od = res["objective_rel_diff_vs_spams"].get(key, 0.0)
        print(f"{key:28s} {rate:12.1f} {rate_a / rate:9.2f} {od:13.2e}")
    print(f"trainDL: {res['fit_signals_per_s']:.0f} signals/s ({res['fit_seconds']:.1f}s)")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
