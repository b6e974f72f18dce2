"""Read latency of the warehouse queries the app makes, at 3M and 30M code rows.

    python bench/bench_warehouse.py --out bench/results/warehouse.json [--real-db PATH]
    python bench/bench_warehouse.py --dictionaries-only   # extra encoded dictionaries only

Synthetic databases (warehouse.synthetic) are built once into bench/.cache and reused.
Each query runs on a fresh cursor from WarehouseReader.connect() (what the app does),
for random factors / layers / words; p50 and p95 in milliseconds.
Targets: top-200 p95 <= 50 ms and IS p95 <= 20 ms at 30M rows; 10x rows <= 2x latency.

Extra encoded dictionaries (``bench_dictionaries``): a copy of the 3M database gets 1, then
2 more dictionaries of the same size (the first's codes under a permutation of its
factors, written, sorted and summarised by the warehouse's own encode functions); after
each, the file size and the factor page's read (``queries.factor_page``, what the app
reads per view) of the active (newest) and of the first dictionary.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import shutil
import statistics
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from factorscope.warehouse import queries as q
from factorscope.warehouse import store, summaries
from factorscope.warehouse.connection import connect_raw
from factorscope.warehouse.publish import staged_database
from factorscope.warehouse.synthetic import WORDS, build_synthetic_db

CACHE = Path(__file__).resolve().parent / ".cache"
SIZES = {"3M": 3_100, "30M": 31_000}  # sentences: ~970 code rows each
N_FACTORS = 1000
HIDDEN = 64


def _database(label: str, n_sentences: int) -> Path:
    path = CACHE / f"synthetic_{label}_{N_FACTORS}f.duckdb"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build_synthetic_db(
            path, n_sentences=n_sentences, n_factors=N_FACTORS, hidden_size=HIDDEN, chunk_size=2000
        )
        logging.info("built %s in %.1f s", path.name, time.perf_counter() - started)
    return path


def _time(reader: q.WarehouseReader, fn, args_list) -> dict:
    times = []
    for args in args_list:
        started = time.perf_counter()
        with reader.connect() as con:
            fn(con, *args)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "n": len(times),
    }


def bench_one(path: Path, *, repeats: int, seed: int = 0) -> dict:
    reader = q.WarehouseReader(path)
    with reader.connect() as con:
        n_codes = con.execute("SELECT count(*) FROM codes").fetchall()[0][0]
        n_factors = q.dictionary_size(con)
        layer_list = q.layers(con)
        words = [
            r[0]
            for r in con.execute(
                "SELECT word FROM word_factors GROUP BY word ORDER BY count(*) DESC LIMIT 200"
            ).fetchall()
        ] or list(WORDS)
    rng = random.Random(seed)
    pairs = [(rng.randrange(n_factors), rng.choice(layer_list)) for _ in range(repeats)]
    factors = [(f,) for f, _ in pairs]
    # Warm-up: the first read opens the file.
    with reader.connect() as con:
        q.level_counts(con)
    results = {
        "top_contexts_200": _time(reader, lambda c, f, layer: q.top_contexts(c, f, layer), pairs),
        "importance_curve": _time(reader, q.importance_curve, factors),
        "level_counts": _time(reader, lambda c: q.level_counts(c), [()] * repeats),
        "factor_level": _time(reader, q.factor_level, factors),
        "word_factors": _time(
            reader, lambda c, w: q.word_factors(c, w), [(rng.choice(words),) for _ in pairs]
        ),
        "factor_histogram": _time(reader, q.factor_histogram, pairs),
    }
    started = time.perf_counter()
    for _ in range(10):
        connect_raw(path, read_only=True).close()
    reader.close()
    return {
        "path": str(path),
        "code_rows": int(n_codes),
        "n_factors": n_factors,
        "open_ms": round((time.perf_counter() - started) * 100, 2),
        "queries": results,
    }


def _add_dictionary(path: Path, source: int = 1) -> int:
    """Encode one more dictionary of ``source``'s size: its codes under a permutation of
    the factors (the same rows and sizes a real second encode writes); returns its id."""
    reader = q.WarehouseReader(path)
    with reader.connect() as con:
        record = store.load_dictionary(con, source)
        codes = con.sql(
            "SELECT layer, factor, token_id, alpha FROM codes WHERE dictionary_id = ?",
            params=[source],
        ).to_arrow_table()
        stats = (
            con.sql(
                "SELECT layer, sum(n_vectors) AS n_vectors, sum(sq_residual) AS sq_residual, "
                "sum(sq_norm) AS sq_norm, list_reduce(list(sum_x), lambda a, b: list_transform("
                "list_zip(a, b), lambda p: p[1] + p[2])) AS sum_x, sum(sum_l0) AS sum_l0, "
                "sum(n_zero_codes) AS n_zero_codes FROM encode_chunk_stats "
                "WHERE dictionary_id = ? GROUP BY layer ORDER BY layer",
                params=[source],
            )
            .to_arrow_table()
            .to_pydict()
        )
    reader.close()
    perm = np.random.default_rng(record.n_factors).permutation(record.n_factors)
    factor = perm[codes.column("factor").to_numpy()].astype(np.int32)
    codes = codes.set_column(1, "factor", pa.array(factor))
    with staged_database(path) as con:
        new = store.save_dictionary(
            con,
            components=record.components[np.argsort(perm)],
            lambda1=record.lambda1,
            preprocessing=record.preprocessing,
            params=record.params,
            seed=None,
            fit_seconds=None,
            source="bench:permuted",
        )
        store.begin_encoding(con, new)
        store.write_encode_chunk(
            con, dictionary_id=new, chunk=0, codes=codes, stats=store.stats_table(stats), seconds=0
        )
        store.finish_encoding(con, new)
        summaries.refresh_summaries(con, dictionary_id=new)
    return new


def _page_latency(path: Path, dictionary_id: int | None, factors: list[tuple[int, int]]) -> dict:
    reader = q.WarehouseReader(path)
    with reader.connect(dictionary_id) as con:  # warm-up: open the file
        q.level_counts(con)
    times = []
    for factor, layer in factors:
        started = time.perf_counter()
        with reader.connect(dictionary_id) as con:
            q.factor_page(con, factor, layer)
        times.append((time.perf_counter() - started) * 1000)
    reader.close()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "n": len(times),
    }


def bench_dictionaries(source: Path, *, extra: int = 3, repeats: int = 40) -> dict:
    """File size and factor-page latency with 1..1+extra encoded dictionaries."""
    path = CACHE / "dictionaries.duckdb"
    shutil.copyfile(source, path)
    rng = random.Random(0)
    reader = q.WarehouseReader(path)
    with reader.connect() as con:
        layer_list = q.layers(con)
        n_factors = q.dictionary_size(con)
    reader.close()
    factors = [(rng.randrange(n_factors), rng.choice(layer_list)) for _ in range(repeats)]
    rows = []
    for n in range(1 + extra):
        started = time.perf_counter()
        newest = _add_dictionary(path) if n else 1
        rows.append(
            {
                "encoded_dictionaries": n + 1,
                "file_bytes": path.stat().st_size,
                "add_seconds": round(time.perf_counter() - started, 1) if n else 0.0,
                "factor_page_active": _page_latency(path, None, factors),
                "factor_page_first": _page_latency(path, 1, factors),
                "active_dictionary": newest,
            }
        )
        logging.info("%d dictionaries: %s", n + 1, rows[-1])
    sizes = [r["file_bytes"] for r in rows]
    return {
        "source": str(source),
        "rows": rows,
        "bytes_per_extra_dictionary": round((sizes[-1] - sizes[0]) / max(extra, 1)),
        "first_file_bytes": sizes[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/warehouse.json"))
    parser.add_argument("--real-db", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument(
        "--dictionaries-only",
        action="store_true",
        help="Only the extra-dictionaries measurement, on a 1M-row database "
        "(to bench/results/warehouse_dictionaries.json).",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dictionaries_out = args.out.with_name("warehouse_dictionaries.json")
    if args.dictionaries_only:
        result = bench_dictionaries(_database("1M", 1_000))
        dictionaries_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return

    report: dict = {
        "machine": platform.processor() or platform.machine(),
        "duckdb": duckdb.__version__,
        "sizes": {},
    }
    for label, n_sentences in SIZES.items():
        report["sizes"][label] = bench_one(_database(label, n_sentences), repeats=args.repeats)
    if args.real_db:
        report["sizes"]["real"] = bench_one(args.real_db, repeats=args.repeats)

    small, big = report["sizes"]["3M"]["queries"], report["sizes"]["30M"]["queries"]
    report["ratio_30M_over_3M_p95"] = {
        name: round(big[name]["p95_ms"] / max(small[name]["p95_ms"], 1e-9), 2) for name in small
    }
    targets = {
        "top_contexts_200_p95_le_50ms": big["top_contexts_200"]["p95_ms"] <= 50,
        "importance_curve_p95_le_20ms": big["importance_curve"]["p95_ms"] <= 20,
        "ten_x_rows_le_2x_latency": all(r <= 2 for r in report["ratio_30M_over_3M_p95"].values()),
    }
    report["ratio_30M_over_3M_p50"] = {
        name: round(big[name]["p50_ms"] / max(small[name]["p50_ms"], 1e-9), 2) for name in small
    }
    report["targets_met"] = targets

    names = list(small)
    header = f"{'query':<20}" + "".join(f"{s + ' p50/p95 ms':>22}" for s in report["sizes"])
    print(header + f"{'30M/3M p95':>12}")
    for name in names:
        cells = "".join(
            f"{report['sizes'][s]['queries'][name]['p50_ms']:>11.2f} /"
            f"{report['sizes'][s]['queries'][name]['p95_ms']:>8.2f}"
            for s in report["sizes"]
        )
        print(f"{name:<20}{cells}{report['ratio_30M_over_3M_p95'][name]:>12.2f}")
    print("targets:", targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    result = bench_dictionaries(Path(report["sizes"]["3M"]["path"]))
    dictionaries_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
