"""Sentence splitting: sentencex (the default) against the former hand regex.

    python bench/bench_segmentation.py --out bench/results/segmentation.json

On the built-in corpora (fortunes, shakespeare, wordnet): records, sentences split,
sentences kept by ``read_corpus`` (default filters, no cap; with and without re-splitting)
and speed (sentences per second, best of 3). On the hand-checked sample
tests/data/sentence_splits.jsonl: paragraphs split exactly right, the same with a
fortune's "-- Author" line allowed to stay on its sentence, and boundary precision /
recall / F1.

``drops`` (issue 22): what is stored of line-per-sentence text with quotes -- a generated
licence-like file, Debian's GPL-3 and Apache-2.0 as shipped and rewritten one sentence a
line -- and of the fortunes, for each splitter with re-splitting on and off: segments,
kept, drops by reason, the share of input lines whose text is stored and the share of
words stored; and what the sentences that re-splitting adds are (sentence, verse line,
fragment of a wrapped sentence) and how their segment was cut (at its line breaks, or by
the regex rule only: ``corpus.LINE_BREAK_SHARE``), with seeded examples.
docs/SEGMENTATION.md reads the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from factorscope.ingest import corpus
from factorscope.ingest.corpus import (
    DROP_REASONS,
    CorpusConfig,
    iter_records,
    normalise_whitespace,
    read_corpus,
    read_corpus_with_report,
)

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


def corpus_figures(source: str, name: str) -> dict:
    """Records, raw splitter output, kept sentences (re-split on, the default, and off)
    and speed. The splitter is chosen by ``CorpusConfig.splitter``: patching
    ``corpus.split_sentences`` no longer reaches ``corpus.SPLITTERS``, so results written
    before issue 22 recorded sentencex's kept count for the regex too."""
    split = SPLITTERS[name]
    records = [record for _, record in iter_records(CorpusConfig(source=source))]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        n_sentences = sum(len(split(record)) for record in records)
        best = min(best, time.perf_counter() - started)
    kept = read_corpus(CorpusConfig(source=source, splitter=name, max_sentences=None))
    old = read_corpus(CorpusConfig(source=source, splitter=name, max_sentences=None, resplit=False))
    return {
        "records": len(records),
        "sentences": n_sentences,
        "kept": len(kept),
        "kept_no_resplit": len(old),
        "seconds": round(best, 3),
        "sentences_per_s": round(n_sentences / best),
    }


# ------------------------------------------------------------ drops (issue 22)

LICENCE_WORDS = [
    *("license", "program", "software", "copy", "modify", "distribute", "warranty"),
    *("source", "code", "terms", "conditions", "public", "notice", "work", "covered"),
    *("patent", "user", "product", "interface", "object", "form"),
]
DEBIAN_LICENCES = Path("/usr/share/common-licenses")
DEBIAN_FILES = ("GPL-3", "Apache-2.0")
RUNS = {
    f"{name}/{'resplit' if resplit else 'no_resplit'}": (name, resplit)
    for name in SPLITTERS
    for resplit in (True, False)
}
"""The four settings measured: splitter x ``CorpusConfig.resplit`` (the default is
``sentencex/resplit``)."""
EXAMPLES = 5
EXAMPLE_SEED = 22
_STARTS = re.compile(r"[\"'(\[]*[A-Z0-9]")
_ENDS = re.compile(r"[.!?][\"')\]]*$")
_LIST_ITEM = re.compile(r"(\(?([a-z]|[ivx]{1,4}|\d{1,2})[).]|[A-Z]\)|[*+•-])\s")


def licence_like_lines(n_lines: int = 272, seed: int = 3) -> list[str]:
    """The lines of tests/test_corpus_drops.py's ``write_licence_like``, by the same
    seeded rule (reproduced here: a bench does not import the tests): one sentence or
    heading a line, no blank line, unbalanced quotes (`` `show w' ``, a stray ') here
    and there."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        body = " ".join(rng.choice(LICENCE_WORDS) for _ in range(rng.randint(5, 18)))
        if i % 9 == 0:
            line = f"Type `show w' for the details of clause {i}"
        elif i % 13 == 0:
            line = f"SECTION {i} TERMS AND CONDITIONS"
        elif i % 7 == 0:
            line = f"The user's rights under '{body} number {i}"
        else:
            line = f"{body.capitalize()} number {i}."
        lines.append(line)
    return lines


def one_sentence_a_line(text: str, split: Callable[[str], list[str]]) -> list[str]:
    """``text`` rewritten line-per-sentence: each blank-line paragraph joined and cut by
    ``split``, one sentence a line, no blank lines."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return [sentence for p in paragraphs for sentence in split(p)]


def drop_inputs(folder: Path) -> dict[str, tuple[Path, list[str] | None]]:
    """Name -> (file, its lines when it is one sentence a line; None for wrapped prose)."""
    inputs: dict[str, tuple[Path, list[str] | None]] = {}
    lines = licence_like_lines()
    path = folder / "licence_like.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    inputs["licence_like"] = (path, lines)
    for name in DEBIAN_FILES:
        source = DEBIAN_LICENCES / name
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8")
        inputs[name] = (source, None)
        for splitter, split in SPLITTERS.items():
            lines = one_sentence_a_line(text, split)
            path = folder / f"{name}.{splitter}-lines.txt"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            inputs[f"{name}/{splitter}_lines"] = (path, lines)
    return inputs


def stored_share(lines: list[str], texts: list[str], config: CorpusConfig) -> dict:
    """The share of lines whose text is stored (as a sentence or inside one): of all
    lines, and of the lines with ``min_words``..``max_words`` words (those the filters
    would keep on their own); and the share of those stored alone, as one sentence. A line
    cut into two stored sentences counts as not stored."""
    joined, alone = "\n".join(texts), set(texts)
    lines = [normalise_whitespace(line) for line in lines if line.strip()]
    fits = [line for line in lines if config.min_words <= len(line.split()) <= config.max_words]
    return {
        "lines": len(lines),
        "lines_stored_share": round(sum(line in joined for line in lines) / len(lines), 3),
        "lines_fitting": len(fits),
        "lines_fitting_stored_share": round(sum(line in joined for line in fits) / len(fits), 3),
        "lines_fitting_alone_share": round(sum(line in alone for line in fits) / len(fits), 3),
    }


PIECE_KINDS = (
    "sentence",
    "list item",
    "attribution",
    "line",
    "starts mid-sentence",
    "ends mid-sentence",
    "other",
)
"""What a sentence added by re-splitting is (:func:`piece_kind`)."""


def piece_kind(piece: str, record: str) -> str:
    """What a re-split piece is, by its first and last characters and the record's next
    line -- a heuristic, in this order: ``attribution`` ("-- Author"); ``list item``
    ("a) ...", "1. ...", "* ..."); ``starts mid-sentence`` (a lower-case word or other
    punctuation first: the tail of a wrapped sentence); ``sentence`` (ends with . ! ? and
    any closing quote); ``line`` (ends where its line ends, before a line that starts with
    a capital, or with : or ;: verse lines, headings, list intros -- or a wrap before a
    name); ``ends mid-sentence`` (the next line goes on in lower case: the head of a
    wrapped sentence); ``other``."""
    if piece.startswith("--"):
        return "attribution"
    if _LIST_ITEM.match(piece):
        return "list item"
    if not _STARTS.match(piece):
        return "starts mid-sentence"
    if _ENDS.search(piece):
        return "sentence"
    if piece.endswith((":", ";")):
        return "line"
    lines = [normalise_whitespace(line) for line in record.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.endswith(piece):
            after = lines[i + 1] if i + 1 < len(lines) else ""
            return "line" if not after or _STARTS.match(after) else "ends mid-sentence"
    return "other"


def cut_at_lines(segment: str, record: str) -> bool:
    """Whether ``corpus._resplit`` cuts ``segment`` at the record's line breaks (they
    pass ``corpus._lines_are_sentences``) rather than by the regex rule only."""
    match = corpus._words_pattern(segment).search(record)
    raw = match.group(0) if match else segment
    return corpus._lines_are_sentences([line for line in raw.splitlines() if line.strip()])


def resplit_additions(
    config: CorpusConfig, added: set[str]
) -> tuple[list[tuple[str, str, str, str]], Counter]:
    """(source, text, kind, how) of every stored sentence in ``added`` that came from
    re-splitting, in corpus order (first occurrence), ``how`` being ``lines`` (cut at the
    line breaks) or ``regex`` (by the regex rule only); and the over-long segments by what
    re-splitting did to them (``lines``, ``regex``, or ``whole``: the regex found no cut).
    Re-cuts each over-long segment with ``corpus._resplit``, the function ingest uses, to
    know its record."""
    split = SPLITTERS[config.splitter]
    out, seen, over_long = [], set(), Counter()
    for source, record in iter_records(config):
        for segment in split(record):
            if len(segment.split()) <= config.max_words:
                continue
            pieces = corpus._resplit(segment, record)
            how = "lines" if cut_at_lines(segment, record) else "regex"
            over_long[how if len(pieces) > 1 else "whole"] += 1
            for piece in pieces:
                if piece in added and piece not in seen:
                    seen.add(piece)
                    out.append((source, piece, piece_kind(piece, record), how))
    return out, over_long


def run_figures(config: CorpusConfig, n_words: int, lines: list[str] | None) -> tuple:
    kept, report = read_corpus_with_report(config)
    figures = {
        "segments": report.segments,
        "resplit": report.resplit,
        "resplit_into": report.resplit_into,
        "kept": report.kept,
        "kept_words": report.kept_words,
        "dropped": {
            reason: {"sentences": report.dropped[reason][0], "words": report.dropped[reason][1]}
            for reason in DROP_REASONS
            if reason in report.dropped
        },
        "words_stored_share": round(report.kept_words / n_words, 3),
    }
    if lines is not None:
        figures.update(stored_share(lines, [s.text for s in kept], config))
    return figures, kept


def drop_figures(source: str, lines: list[str] | None, examples: bool = False) -> dict:
    """Every setting of :data:`RUNS` on one input, and what re-splitting adds."""
    base = CorpusConfig(source=source, max_sentences=None)
    n_words = sum(len(record.split()) for _, record in iter_records(base))
    result: dict = {"words": n_words, "line_per_sentence": lines is not None}
    kept_by_run = {}
    for run, (name, resplit) in RUNS.items():
        config = CorpusConfig(source=source, max_sentences=None, splitter=name, resplit=resplit)
        result[run], kept_by_run[run] = run_figures(config, n_words, lines)
    for name in SPLITTERS:
        on, off = kept_by_run[f"{name}/resplit"], kept_by_run[f"{name}/no_resplit"]
        before = {s.text for s in off}
        added = {s.text for s in on if s.text not in before}
        config = CorpusConfig(source=source, max_sentences=None, splitter=name)
        pieces, over_long = resplit_additions(config, added)
        counts = Counter(kind for _, _, kind, _ in pieces)
        kinds = {kind: counts[kind] for kind in PIECE_KINDS if counts[kind]}
        summary: dict = {
            "sentences": len(added),
            "words": sum(len(text.split()) for text in added),
            "kinds": kinds,
            "over_long_segments": {
                "total": sum(over_long.values()),
                **{how: over_long[how] for how in ("lines", "regex", "whole")},
            },
            "kinds_by_cut": {
                how: {
                    kind: n
                    for kind in PIECE_KINDS
                    if (n := sum(1 for *_, k, h in pieces if (k, h) == (kind, how)))
                }
                for how in ("lines", "regex")
            },
        }
        if examples:
            summary["top_sources"] = dict(Counter(s for s, *_ in pieces).most_common(8))
            chosen = random.Random(EXAMPLE_SEED).sample(pieces, min(EXAMPLES, len(pieces)))
            summary["examples_seed"] = EXAMPLE_SEED
            summary["examples"] = [
                {"source": s, "text": text, "kind": kind, "cut": how}
                for s, text, kind, how in chosen
            ]
        result[f"{name}/added_by_resplit"] = summary
    return result


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
            source: {name: corpus_figures(source, name) for name in SPLITTERS}
            for source in corpus.BUILTIN_CORPORA
        },
    }
    with tempfile.TemporaryDirectory() as folder:
        inputs = drop_inputs(Path(folder))
        drops: dict = {
            "settings": {
                "min_words": CorpusConfig().min_words,
                "max_words": CorpusConfig().max_words,
                "max_sentences": None,
                "dedupe": CorpusConfig().dedupe,
            },
            "inputs": {
                name: {
                    "file": path.name if path.parent != DEBIAN_LICENCES else str(path),
                    **drop_figures(str(path), lines),
                }
                for name, (path, lines) in inputs.items()
            },
        }
    drops["inputs"]["fortunes"] = drop_figures("fortunes", None, examples=True)
    result["drops"] = drops
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
