"""What factors do, on the demo run: `factorscope effects` whole, and one on-demand effect.

    python bench/bench_effects.py --db factorscope.duckdb --out bench/results/effects.json

Needs a finished run of configs/default.toml (``make demo``'s database; it is copied,
never written). On the copy it times ``factorscope effects`` as the CLI runs it (every
factor that fires, at its peak layer, ablated on its 16 top-context sentences beside a
random direction of the same norm), then, in one process with the model loaded once as
the app holds it, single on-demand effects of the factor page (another layer than the
stage measured: not cached). Issue 21's targets: the whole stage in at most 10 minutes
on 2 cores, an on-demand effect in at most 3 s. The machine's forward throughput
(MiniLM, tokens/s, batch 64) is measured before and after and recorded beside the times:
on a machine whose cores are shared with other work, every number scales with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_explain import _timed

TARGET_STAGE_S = 600
TARGET_ON_DEMAND_S = 3.0


def _throughput(db: Path) -> float:
    """MiniLM forward tokens/s on 512 of the run's sentences (the machine's speed now)."""
    from factorscope.ingest.model import load_model
    from factorscope.ingest.runner import hidden_states, tokenize
    from factorscope.warehouse.connection import connect

    con = connect(db, read_only=True)
    try:
        texts = [
            r[0]
            for r in con.execute(
                "SELECT text FROM sentences ORDER BY sentence_idx LIMIT 512"
            ).fetchall()
        ]
    finally:
        con.close()
    loaded = load_model(None)
    sentences = tokenize(loaded, texts)
    started = time.perf_counter()
    hidden_states(loaded, sentences, batch_size=64)
    return sum(s.n_positions for s in sentences) / (time.perf_counter() - started)


def _on_demand(db: Path, n: int = 8) -> dict:
    """Single effects of the factor page, at a layer next to each factor's peak."""
    from factorscope.stages.effects import EffectModel, effect_for_page
    from factorscope.warehouse.connection import connect

    started = time.perf_counter()
    model = EffectModel.from_db(db)
    load_s = time.perf_counter() - started
    con = connect(db, read_only=True)
    try:
        picks = con.execute(
            "SELECT factor, peak_layer FROM factor_levels ORDER BY hash(factor) LIMIT ?", [n]
        ).fetchall()
    finally:
        con.close()
    seconds = []
    for factor, peak in picks:
        layer = int(peak) - 1 if int(peak) > 0 else 1
        t0 = time.perf_counter()
        effect = effect_for_page(db, model, int(factor), layer)
        seconds.append(time.perf_counter() - t0)
        assert not effect["cached"]
    t0 = time.perf_counter()
    effect_for_page(db, model, int(picks[0][0]), int(picks[0][1]) - 1 if picks[0][1] else 1)
    cached_s = time.perf_counter() - t0
    return {
        "model_load_s": round(load_s, 2),
        "measured": len(seconds),
        "median_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "cached_read_s": round(cached_s, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("factorscope.duckdb"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/effects.json"))
    args = parser.parse_args()
    if not args.db.is_file():
        print(
            f"bench_effects: {args.db} not found: run `make demo` (or give --db)", file=sys.stderr
        )
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "run.duckdb"
        shutil.copyfile(args.db, db)
        tokens_per_s = _throughput(db)
        stage_s, stage_line = _timed(["effects", "--db", str(db)])
        on_demand = _on_demand(db)
        tokens_per_s_after = _throughput(db)
        from factorscope.warehouse import effects as ew
        from factorscope.warehouse.connection import connect

        con = connect(db, read_only=True)
        try:
            d = int(con.execute("SELECT dictionary_id FROM active_dictionary").fetchall()[0][0])
            run = con.execute("SELECT n_sentences, n_tokens, n_layers FROM runs").fetchall()[0]
            n_factors, measured = con.execute(
                "SELECT (SELECT n_factors FROM dictionaries WHERE dictionary_id = ?), "
                "(SELECT count(*) FROM factor_effects WHERE dictionary_id = ? "
                "AND source = 'stage')",
                [d, d],
            ).fetchall()[0]
            by_level = ew.effects_by_level(con, d).to_dicts()
        finally:
            con.close()
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "forward_tokens_per_s": {"before": round(tokens_per_s), "after": round(tokens_per_s_after)},
        "run": {
            "sentences": run[0],
            "tokens": run[1],
            "layers": run[2],
            "factors": n_factors,
            "measured": measured,
        },
        "seconds": {"effects": round(stage_s, 1), "on_demand_median": on_demand["median_s"]},
        "on_demand": on_demand,
        "line": stage_line,
        "by_level": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
            for row in by_level
        ],
        "targets": {"effects_seconds": TARGET_STAGE_S, "on_demand_seconds": TARGET_ON_DEMAND_S},
        "meets_targets": {
            "effects_seconds": stage_s <= TARGET_STAGE_S,
            "on_demand_seconds": on_demand["max_s"] <= TARGET_ON_DEMAND_S,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({**result["seconds"], "forward_tokens_per_s": result["forward_tokens_per_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
