"""Sentence splitting: sentencex (the default) against the former hand regex.

    python bench/bench_segmentation.py --out bench/results/segmentation.json

On the built-in corpora (fortunes, shakespeare): records, sentences split, sentences
kept by ``read_corpus`` (default filters, no cap) and speed (sentences per second,
best of 3). On the hand-checked sample tests/data/sentence_splits.jsonl: paragraphs
split exactly right, the same with a fortune's "-- Author" line allowed to stay on its
sentence, and boundary precision / recall / F1. docs/SEGMENTATION.md reads the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from unittest import mock

from factorscope.ingest import corpus
from factorscope.ingest.corpus import CorpusConfig, iter_records, read_corpus

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sentence_splits.jsonl"
SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "sentencex": corpus.split_sentences,
    "regex": corpus.regex_split_sentences,
}


def boundaries(text: str, segments: list[str]) -> set[int]:
    """Character offsets in ``text`` where the second, third, ... segment starts."""
    found, pos = set(), 0
    for i, segment in enumerate(segments):
        start = text.find(segment, pos)
        if start < 0:  # a splitter that rewrites text: no boundary can be placed
            break
        if i:
            found.add(start)
        pos = start + len(segment)
    return found


def with_attribution(segments: list[str]) -> list[str]:
    """The segments with a "-- Author" segment joined back onto the one before it."""
    out: list[str] = []
    for segment in segments:
        if out and segment.startswith("-"):
            out[-1] = f"{out[-1]} {segment}"
        else:
            out.append(segment)
    return out


def score(split: Callable[[str], list[str]], rows: list[dict]) -> dict:
    """Exact paragraphs, exact with attributions allowed on, and boundary P / R / F1."""
    exact = lenient = tp = n_pred = n_true = 0
    for row in rows:
        got, want = split(row["text"]), row["expected"]
        exact += got == want
        lenient += with_attribution(got) == with_attribution(want)
        b_got, b_want = boundaries(row["text"], got), boundaries(row["text"], want)
        tp += len(b_got & b_want)
        n_pred += len(b_got)
        n_true += len(b_want)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "paragraphs": len(rows),
        "exact": exact,
        "exact_share": round(exact / len(rows), 3),
        "exact_attribution_allowed": lenient,
        "boundary_precision": round(precision, 3),
        "boundary_recall": round(recall, 3),
        "boundary_f1": round(f1, 3),
    }


def corpus_figures(source: str, split: Callable[[str], list[str]]) -> dict:
    records = [record for _, record in iter_records(CorpusConfig(source=source))]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        n_sentences = sum(len(split(record)) for record in records)
        best = min(best, time.perf_counter() - started)
    with mock.patch.object(corpus, "split_sentences", split):
        kept = read_corpus(CorpusConfig(source=source, max_sentences=None))
    return {
        "records": len(records),
        "sentences": n_sentences,
        "kept": len(kept),
        "seconds": round(best, 3),
        "sentences_per_s": round(n_sentences / best),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/segmentation.json")
    args = parser.parse_args()
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "sentencex": metadata.version("sentencex"),
        "sample": {
            "file": SAMPLE.relative_to(ROOT).as_posix(),
            **{name: score(split, rows) for name, split in SPLITTERS.items()},
        },
        "corpora": {
            source: {name: corpus_figures(source, split) for name, split in SPLITTERS.items()}
            for source in corpus.BUILTIN_CORPORA
        },
    }
    for part in corpus.BUILTIN_CORPORA:
        sub = [r for r in rows if r["source"] == part]
        result["sample"][f"{part}_exact"] = {
            "paragraphs": len(sub),
            **{
                name: sum(split(r["text"]) == r["expected"] for r in sub)
                for name, split in SPLITTERS.items()
            },
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
