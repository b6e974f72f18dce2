"""Analyze page in a real browser: click "Analyze" -> the decomposition table is visible.

Builds a small real database with the packaged MiniLM (``factorscope ingest`` on the
default corpus with ``--max-length 512``, so a 200-word text is not truncated; ``learn``;
``encode``), labels some factors, starts ``factorscope serve`` on a free port of
127.0.0.1, and drives headless Debian Chromium through playwright: for each text length
it opens ``/analyze``, types the text, clicks Analyze and waits (polling every animation
frame, in the page) for the first decomposition table to be visible with one row per
piece. Times are taken with the page's own clock:

* ``click_to_table_ms``: the click -> the table visible (what a person waits);
* ``server_ms``: the click -> the callback's response fully received;
* ``render_ms``: the response received -> the table visible (the browser's share).

Target: a text of up to 2000 characters shows within about a second.

    python bench/bench_analyze_render.py --out bench/results/analyze_render.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGET_S = 1.0
PARAGRAPH = (
    "She left the room and turned left at the station, where the old bank stood by the "
    "river. Nobody knew whether the play would open on Sunday, so the actors kept "
    "rehearsing their lines in the park until the light was gone. A cup of hot tea, a "
    "letter from home and a long walk were all he wanted after the meeting ran late "
    "again. The committee thinks about the meaning of every rule before it votes."
)
# Records when the button is clicked, in the page's clock.
ARM_CLICK = """() => {
  window.__fsClick = null; window.__fsShown = null;
  document.getElementById('analyze-run').addEventListener(
    'click', () => { window.__fsClick = performance.now(); }, {once: true, capture: true});
}"""
# True (and the time recorded) once the first table is laid out with at least n rows.
TABLE_SHOWN = """(n) => {
  const t = document.querySelector('#analyze-output table.fs-decomp');
  if (!t || t.offsetParent === null || t.getBoundingClientRect().height === 0) return false;
  if (t.querySelectorAll('tr').length < n) return false;
  window.__fsShown = performance.now();
  return true;
}"""
TIMINGS = """() => {
  const calls = performance.getEntriesByType('resource').filter(
    (e) => e.name.includes('_dash-update-component') && e.startTime >= window.__fsClick - 1);
  const last = calls[calls.length - 1];
  return {click: window.__fsClick, shown: window.__fsShown,
          response_end: last ? last.responseEnd : null,
          bytes: last ? last.encodedBodySize : null,
          anchors: document.querySelectorAll('#analyze-output a').length,
          elements: document.querySelectorAll('#analyze-output *').length};
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str) -> None:
    env = {**os.environ, "FACTORSCOPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
    subprocess.run([*cmd, *args], check=True, env=env, stdout=subprocess.DEVNULL)


def build_db(db: Path, *, n_sentences: int, n_factors: int) -> float:
    started = time.perf_counter()
    common = ["--db", str(db)]
    cli("ingest", *common, "--max-sentences", str(n_sentences), "--max-length", "512")
    cli("learn", *common, "-m", str(n_factors), "--max-vectors", "20000")
    cli("encode", *common)
    # Labels on some factors, so the page renders them as it would for a real user.
    from factorscope.dash_app import logic
    from factorscope.warehouse.queries import WarehouseReader

    for factor in range(0, n_factors, 3):
        logic.save_label(db, factor, f"label of {factor} <b>&</b>")
    WarehouseReader(db).close()  # hold no connection on the server's file
    return time.perf_counter() - started


def start_server(db: Path, port: int, log_path: Path) -> subprocess.Popen:
    import urllib.request

    log = log_path.open("w")
    cmd = [sys.executable, "-c", "import sys; from factorscope.cli import main; sys.exit(main())"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--db", str(db), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def text_of(n_words: int) -> str:
    words = PARAGRAPH.split()
    return " ".join(words[i % len(words)] for i in range(n_words))


def measure(page, base: str, text: str, *, timeout_s: float) -> dict:
    page.goto(f"{base}/analyze", wait_until="networkidle")
    page.locator("#analyze-text").fill(text)
    page.evaluate(ARM_CLICK)
    page.locator("#analyze-run").click()
    try:
        page.wait_for_function(TABLE_SHOWN, arg=2, polling="raf", timeout=timeout_s * 1000)
    except Exception:  # playwright's TimeoutError: record it, go on with the next size
        return {"timed_out": True, "click_to_table_ms": None}
    t = page.evaluate(TIMINGS)
    out = {
        "timed_out": False,
        "click_to_table_ms": round(t["shown"] - t["click"], 1),
        "server_ms": None,
        "render_ms": None,
        "response_bytes": t["bytes"],
        "anchors": t["anchors"],
        "elements": t["elements"],
    }
    if t["response_end"] is not None:
        out["server_ms"] = round(t["response_end"] - t["click"], 1)
        out["render_ms"] = round(t["shown"] - t["response_end"], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/analyze_render.json"))
    parser.add_argument("--db", type=Path, help="an existing database (default: build one)")
    parser.add_argument("--words", type=int, nargs="+", default=[10, 40, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-sentences", type=int, default=300)
    parser.add_argument("--n-factors", type=int, default=512)
    parser.add_argument("--timeout-s", type=float, default=90.0, help="per measurement")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="fs-bench-analyze-") as tmp:
        tmp_dir = Path(tmp)
        db, build_s = args.db, None
        if db is None:
            db = tmp_dir / "bench.duckdb"
            build_s = round(build_db(db, n_sentences=args.n_sentences, n_factors=args.n_factors))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(db, port, tmp_dir / "server.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                measure(page, base, text_of(5), timeout_s=args.timeout_s)  # warm-up: model load
                for n_words in args.words:
                    text = text_of(n_words)
                    results = []
                    for _ in range(args.repeats):
                        results.append(measure(page, base, text, timeout_s=args.timeout_s))
                        print(f"{n_words} words: {results[-1]}", flush=True)
                        if results[-1]["timed_out"]:
                            break  # the next try would time out as well
                    runs[str(n_words)] = [{"chars": len(text), **r} for r in results]
                browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    sizes = {}
    for n_words, results in runs.items():
        done = [r["click_to_table_ms"] for r in results if not r["timed_out"]]
        median = statistics.median(done) if done and len(done) == len(results) else None
        sizes[n_words] = {
            "chars": results[0]["chars"],
            "median_click_to_table_ms": median,
            "median_render_ms": _median([r.get("render_ms") for r in results]),
            "median_server_ms": _median([r.get("server_ms") for r in results]),
            "response_bytes": results[-1].get("response_bytes"),
            "anchors": results[-1].get("anchors"),
            "elements": results[-1].get("elements"),
            "meets_target": median is not None and median <= TARGET_S * 1000,
            "runs": results,
        }
    import dash

    report = {
        "benchmark": "analyze_render",
        "target": f"click -> first table visible <= {TARGET_S} s for every size",
        "meets_target": all(s["meets_target"] for s in sizes.values()),
        "sizes_words": sizes,
        "page_errors": errors,
        "database": {
            "path": str(args.db) if args.db else "built: packaged MiniLM, default corpus",
            "n_sentences": args.n_sentences if args.db is None else None,
            "n_factors": args.n_factors if args.db is None else None,
            "build_seconds": build_s,
        },
        "browser": f"{CHROMIUM} (headless, playwright)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "dash": dash.__version__,
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for n_words, s in sizes.items():
        print(
            f"{n_words:>4} words: {s['median_click_to_table_ms']} ms click -> table "
            f"(render {s['median_render_ms']} ms, {s['anchors']} links)"
        )
    print(f"-> {args.out}")
    return 0 if report["meets_target"] and not errors else 1


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


if __name__ == "__main__":
    raise SystemExit(main())
