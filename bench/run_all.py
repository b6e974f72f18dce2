"""`make bench`: run every benchmark, collect their JSON, print one summary table.

Each benchmark is its own script (runnable alone); this runner only sequences them
and writes ``bench/results/summary.md`` with the figures and target ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = [
    ("sparse", "bench_sparse.py"),
    ("pipeline", "bench_pipeline.py"),
    ("warehouse", "bench_warehouse.py"),
    ("app_load", "bench_app_load.py"),
    ("console_load", "bench_console_load.py"),
    ("analyze_render", "bench_analyze_render.py"),
    ("scale", "bench_scale.py"),
    ("segmentation", "bench_segmentation.py"),
    ("gpu", "bench_gpu.py"),
    ("large", "bench_large.py"),
    ("explain", "bench_explain.py"),
]

OPT_IN = {"large", "explain"}
"""Benchmarks run only when named (``--only large``, ``make bench-large``): the large run
takes about 40 minutes, and ``explain`` needs ``make demo``'s database (``make
bench-explain``). The summary still shows their last recorded result."""


def targets_table(result: Path) -> list[str]:
    """A markdown table of a result's ``targets`` beside its ``headline`` figures, if any.

    A target named ``load_route_p95_ms`` is compared with the headline's worst route
    (``load_worst_route_p95_ms``); others with the headline figure of the same name.
    """
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError):
        return []
    targets, headline = data.get("targets"), data.get("headline")
    if not isinstance(targets, dict) or not isinstance(headline, dict):
        return []
    met = data.get("meets_targets", {})
    rows = ["| figure | measured | target | met |", "|---|---|---|---|"]
    for name, target in targets.items():
        figure = headline.get(name, headline.get(name.replace("_route_", "_worst_route_")))
        verdict = {True: "yes", False: "**no**"}.get(met.get(name), "?")
        rows.append(f"| {name} | {figure} | {target} | {verdict} |")
    return [*rows, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="*", help="Run only these benchmarks.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failures = []
    for name, script in BENCHMARKS:
        if (args.only and name not in args.only) or (name in OPT_IN and not args.only):
            continue
        if not (HERE / script).exists():
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / script), "--out", str(args.out / f"{name}.json")]
        )
        print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)
        if proc.returncode != 0:
            failures.append(name)
    # The summary shows the latest result of every benchmark, run now or earlier.
    lines = ["# Benchmark summary", "", f"Written on {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    for name, _script in BENCHMARKS:
        out = args.out / f"{name}.json"
        if name in failures:
            lines.append(f"## {name}: FAILED in this run\n")
        elif out.exists():
            lines += [f"## {name}", "", *targets_table(out), "```json", out.read_text()[:4000]]
            lines += ["```", ""]
    (args.out / "summary.md").write_text("\n".join(lines))
    print(f"results in {args.out}")
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
