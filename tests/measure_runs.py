"""Measure how far two runs of the same pipeline drift apart (not a test; see docs/CONTRACTS.md).

    .venv/bin/python -m tests.measure_runs --out /tmp/measure [--minilm 200]

Runs ingest -> (one shared dictionary) -> encode under several settings that must not
change the results beyond floating-point noise (torch/BLAS threads, chunk size, forward
batch size), in subprocesses so that thread variables apply before torch is imported, and
prints, per table, what differs and by how much. The figures chose RTOL / ATOL in
tests/contract.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

CLI = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _run(args: list[str], env: dict[str, str] | None = None) -> None:
    full = {**os.environ, "FACTORSCOPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1", **(env or {})}
    subprocess.run([*CLI, *args], check=True, env=full, stdout=subprocess.DEVNULL)


def _tiny_model(out: Path) -> Path:
    from tests.conftest import write_tiny_bert

    return write_tiny_bert(out)


def _copy_dictionary(src: Path, dst: Path) -> None:
    from factorscope.warehouse.connection import connect

    con = connect(dst)
    try:
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        con.execute(
            "INSERT INTO dictionaries SELECT * REPLACE ('learned' AS status) FROM src.dictionaries"
        )
        con.execute("INSERT INTO dictionary_atoms SELECT * FROM src.dictionary_atoms")
        con.execute("DETACH src")
    finally:
        con.close()


def _frame(db: Path, table: str) -> pl.DataFrame:
    from tests.contract import read_table

    return read_table(db, table)


def _float_diff(a: pl.DataFrame, b: pl.DataFrame, key: list[str], col: str) -> dict:
    j = a.select([*key, col]).join(b.select([*key, col]), on=key, how="full", suffix="_b")
    both = j.filter(pl.col(col).is_not_null() & pl.col(f"{col}_b").is_not_null())
    if isinstance(both[col].dtype, pl.List):
        x = both[col].explode().cast(pl.Float64).to_numpy()
        y = both[f"{col}_b"].explode().cast(pl.Float64).to_numpy()
    else:
        x = both[col].cast(pl.Float64).to_numpy()
        y = both[f"{col}_b"].cast(pl.Float64).to_numpy()
    diff = np.abs(x - y)
    rel = diff / np.maximum(np.abs(x), 1e-30)
    only = j.filter(pl.col(col).is_null() | pl.col(f"{col}_b").is_null())
    only_vals = (
        []
        if len(only) == 0 or isinstance(only[col].dtype, pl.List)
        else only[col].fill_null(only[f"{col}_b"]).to_list()
    )
    nz = np.abs(x) > 1e-3
    return {
        "rows": [len(a), len(b)],
        "identical": int((diff == 0).sum()),
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_rel_where_abs_gt_1e-3": float(rel[nz].max()) if nz.any() else 0.0,
        "p999_rel": float(np.quantile(rel[nz], 0.999)) if nz.any() else 0.0,
        "one_sided": len(only),
        "one_sided_max_value": float(np.max(np.abs(only_vals))) if only_vals else None,
        "scale": float(np.abs(x).max()) if x.size else 0.0,
    }


def compare(ref: Path, other: Path) -> dict:
    out: dict = {}
    f = {t: (_frame(ref, t), _frame(other, t)) for t in ("hidden_states", "codes")}
    out["hidden_states.vector"] = _float_diff(*f["hidden_states"], ["layer", "token_id"], "vector")
    out["codes.alpha"] = _float_diff(*f["codes"], ["layer", "factor", "token_id"], "alpha")
    imp = [_frame(db, "summary_importance") for db in (ref, other)]
    out["summary_importance.importance"] = _float_diff(*imp, ["factor", "layer"], "importance")
    j = imp[0].join(imp[1], on=["factor", "layer"], how="full", suffix="_b")
    out["summary_importance.n_active_differs"] = int(
        j.filter(pl.col("n_active") != pl.col("n_active_b")).height
    )
    top = [_frame(db, "summary_top_contexts") for db in (ref, other)]
    out["summary_top_contexts.alpha"] = _float_diff(*top, ["factor", "layer", "rank"], "alpha")
    jt = top[0].join(top[1], on=["factor", "layer", "rank"], how="full", suffix="_b")
    out["summary_top_contexts.token_id_differs"] = int(
        jt.filter(pl.col("token_id") != pl.col("token_id_b")).height
    )
    for table in ("summary_histogram", "summary_levels", "summary_neighbors", "auto_labels"):
        a, b = (_frame(db, table) for db in (ref, other))
        out[f"{table}.rows_only_in_one"] = int(
            a.join(b, on=a.columns, how="anti").height + b.join(a, on=a.columns, how="anti").height
        )
    lq = [_frame(db, "layer_quality") for db in (ref, other)]
    for col in ("fvu", "mean_l0", "dead_factors"):
        out[f"layer_quality.{col}"] = _float_diff(*lq, ["layer"], col)["max_abs"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minilm", type=int, default=0, help="also MiniLM on N fortunes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "tiny"
    if not model.exists():
        _tiny_model(model)
    from tests.conftest import SENTENCES, write_random_corpus

    corpus = args.out / "sentences.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", "utf-8")
    random_corpus = write_random_corpus(args.out / "random.txt", n_sentences=300, seed=3)

    setups = [("tiny-12", str(model), str(corpus), 4, 48, "0.05", ["--max-sentences", "all"])]
    setups.append(
        ("tiny-300", str(model), str(random_corpus), 16, 48, "0.05", ["--max-sentences", "all"])
    )
    if args.minilm:
        setups.append(
            (
                "minilm",
                "default",
                "fortunes",
                64,
                256,
                "0.23",
                ["--max-sentences", str(args.minilm)],
            )
        )
    variants = {
        "ref": ([], {}, []),
        "1-thread": (["--threads", "1"], ONE_THREAD, ["--threads", "1"]),
        "chunk+1": (["__chunk+1"], {}, []),
        "batch-3": (["--batch-size", "3"], {}, ["--batch-size", "3"]),
        "batch-1": (["--batch-size", "1"], {}, ["--batch-size", "1"]),
    }
    results = {}
    for name, model_arg, corpus_arg, chunk, n_factors, lam, extra in setups:
        root = args.out / name
        root.mkdir(exist_ok=True)
        dbs = {}
        for variant, (ingest_args, env, encode_args) in variants.items():
            for sample in ("all", "60"):
                db = root / f"{variant}-{sample}.duckdb"
                dbs[variant, sample] = db
                if db.exists():
                    continue
                c = chunk + 1 if "__chunk+1" in ingest_args else chunk
                iargs = [a for a in ingest_args if a != "__chunk+1"]
                margs = [] if model_arg == "default" else ["--model", model_arg]
                _run(
                    [
                        "ingest",
                        "--db",
                        str(db),
                        *margs,
                        "--corpus",
                        corpus_arg,
                        *(["--split", "lines"] if corpus_arg != "fortunes" else []),
                        *extra,
                        "--chunk-size",
                        str(c),
                        "--sample-size",
                        sample,
                        *iargs,
                    ],
                    env,
                )
                if (variant, sample) == ("ref", "all"):
                    _run(
                        [
                            "learn",
                            "--db",
                            str(db),
                            "-m",
                            str(n_factors),
                            "--lambda",
                            lam,
                            "--seed",
                            "0",
                        ]
                    )
                else:
                    _copy_dictionary(dbs["ref", "all"], db)
                _run(["encode", "--db", str(db), *encode_args], env)
        for (variant, sample), db in dbs.items():
            if variant == "ref":
                continue
            key = f"{name} {variant} sample={sample}"
            results[key] = compare(dbs["ref", sample], db)
            print(key, json.dumps(results[key]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
