"""`factorscope probe`: how well a word's senses separate, layer by layer.

The paper's claim: a word's factor at layer 0 is one word, and later layers split that
word's occurrences by sense. The probe measures it on sense-labelled sentences, from
the run itself (``sentences.metadata``, e.g. a run ingested from ``--corpus wordnet``)
or from a labelled corpus given with ``--corpus`` (the built-in ``wordnet``, or a
JSONL/CSV/Parquet file with ``--metadata-fields``).

**Occurrences.** A sentence's metadata names the probed word (field ``key``, default
``word``: the word as the sentence writes it, falling back to ``lemma``; ``--key lemma``
groups "left", "leaves" and "leaving" under ``leave``) and its sense (field ``sense``,
default ``lexname``: WordNet's lexicographer file, a coarse sense such as
``verb.motion`` or ``adj.all``; ``synset`` gives WordNet's fine senses). The token read
is the **first word piece of the first word of the sentence that equals the written
word** (metadata ``word``, else the key; case-insensitive); an occurrence whose word the
tokenizer does not yield as a whole word (e.g. ``didn't``) is skipped and counted. A
word is probed when at least ``min_senses`` of its senses have at least ``min_examples``
occurrences each; its other senses are left out, and a sense keeps at most
``max_examples`` occurrences (a seeded sample, in corpus order).

**Scores**, per word and layer (pure functions below, tested against hand-computed cases):

- ``accuracy``: leave-one-out 1-nearest-neighbour sense accuracy under cosine
  similarity: each occurrence takes the sense of its most similar other occurrence
  (ties: the first in occurrence order; an all-zero vector is similarity 0 to all),
  on the sparse codes (``codes``) and on the raw hidden states (``states``, the ceiling);
- ``chance``: the accuracy of a neighbour drawn at random among the other occurrences,
  ``sum_s n_s (n_s - 1) / (n (n - 1))`` (the leave-one-out form of ``sum_s p_s^2``);
- ``off_word_share`` (codes): the word's layer-0 factor is the most frequent top factor
  (largest alpha; ties: the smaller factor number) of its occurrences at layer 0;
  ``off_word_share`` at layer l is the share of occurrences whose top factor at layer l
  is another factor (or none: all codes zero). High values at upper layers mean the
  senses are carried by factors other than the word factor.

The model runs over the probed sentences with the ingest leaf's runner and the codes
come from the active dictionary through sparse's encoder and the stored preprocessing
(:class:`~factorscope.stages.live.RunCoder`, the same steps as ``encode`` and the app's
Analyze page). Results replace the probe of that dictionary in ``sense_probe``,
``sense_occurrences`` and ``sense_probe_runs``; ``sense_probe_summary`` averages over
words with 95% confidence intervals.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from factorscope.errors import InputError
from factorscope.ingest.corpus import CorpusConfig, read_corpus
from factorscope.ingest.runner import TokenizedSentence, hidden_states, tokenize
from factorscope.progress import progress_bar
from factorscope.stages.live import RunCoder
from factorscope.warehouse import queries, senses, summaries
from factorscope.warehouse.connection import connect
from factorscope.warehouse.publish import check_db_path_writable, staged_database

PROBE_BATCH = 64
"""Sentences per forward pass and encode call (one progress step)."""


@dataclass(frozen=True)
class ProbeSettings:
    """Which words are probed and how (the CLI's defaults)."""

    key: str = "word"
    sense: str = "lexname"
    min_senses: int = 2
    min_examples: int = 5
    max_examples: int | None = 40
    lemmas: tuple[str, ...] = ()
    max_lemmas: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        lemmas = self.lemmas
        if isinstance(lemmas, str):
            lemmas = tuple(w for w in lemmas.split(","))
        object.__setattr__(
            self, "lemmas", tuple(dict.fromkeys(w.strip().lower() for w in lemmas if w.strip()))
        )
        if self.min_senses < 2:
            raise InputError(f"--min-senses must be at least 2, not {self.min_senses}")
        if self.min_examples < 2:
            raise InputError(f"--min-examples must be at least 2, not {self.min_examples}")
        if self.max_examples is not None and self.max_examples < self.min_examples:
            raise InputError(
                f"--max-examples ({self.max_examples}) must be at least --min-examples "
                f"({self.min_examples})"
            )
        if not self.key.strip() or not self.sense.strip():
            raise InputError("--key and --sense must name metadata fields")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lemmas"] = list(self.lemmas)
        return data


@dataclass(frozen=True)
class Occurrence:
    """One labelled sentence of a probed word, and where the word is in it.

    ``lemma`` is what occurrences are grouped by (the ``key`` field); ``word`` is the form
    looked for in the sentence (metadata ``word`` when there is one, else ``lemma``)."""

    lemma: str
    sense: str
    text: str
    word: str = ""
    sentence_idx: int | None = None
    synset: str | None = None
    gloss: str | None = None
    word_start: int = -1
    word_end: int = -1
    position: int = -1  # the target piece's index in the model input
    row: int = field(default=-1, compare=False)  # the target among the kept positions


@dataclass(frozen=True)
class ProbeSummary:
    db_path: Path
    dictionary_id: int
    source: str
    n_lemmas: int
    n_occurrences: int
    n_skipped: int
    best_layer: int
    best_codes: float
    best_states: float
    chance: float
    seconds: float
    missing: tuple[str, ...] = ()
    already_done: bool = False

    def line(self) -> str:
        if self.already_done:
            return (
                f"probe: {self.db_path} already holds this probe of dictionary "
                f"{self.dictionary_id} ({self.n_lemmas:,} words from {self.source}); "
                "nothing to do (--force probes again)"
            )
        text = (
            f"probe: {self.n_lemmas:,} word{'' if self.n_lemmas == 1 else 's'}, "
            f"{self.n_occurrences:,} occurrences from "
            f"{self.source} (dictionary {self.dictionary_id}); best layer {self.best_layer}: "
            f"1-NN sense accuracy {self.best_codes:.3f} on codes, {self.best_states:.3f} on "
            f"states, chance {self.chance:.3f}; {self.seconds:.1f} s -> {self.db_path}"
        )
        if self.n_skipped:
            text += f" ({self.n_skipped:,} occurrences skipped: word not a whole token)"
        if self.missing:
            text += f"; not probed (too few senses or examples): {', '.join(self.missing)}"
        return text


# ----------------------------------------------------------------------------- scores


def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def nearest_neighbours(X: np.ndarray) -> np.ndarray:
    """For each row, the index of its most cosine-similar other row (ties: the first).

    An all-zero row has similarity 0 to every row."""
    U = _unit_rows(X)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return np.argmax(S, axis=1)


def loo_1nn_accuracy(X: np.ndarray, labels: Iterable[Any]) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy of ``labels`` under cosine similarity."""
    y = np.asarray(list(labels))
    if y.size < 2 or len(X) != y.size:
        raise ValueError("need at least two rows, one label each")
    return float(np.mean(y[nearest_neighbours(X)] == y))


def chance_accuracy(labels: Iterable[Any]) -> float:
    """Accuracy of a neighbour drawn at random among the others: sum n_s(n_s-1) / n(n-1)."""
    counts = np.array(list(Counter(labels).values()), dtype=np.float64)
    n = counts.sum()
    if n < 2:
        raise ValueError("need at least two labels")
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def top_factors(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top factor, its alpha) per row; factor -1 and alpha 0 where every code is 0."""
    codes = np.asarray(codes)
    top = np.argmax(codes, axis=1)
    alpha = codes[np.arange(codes.shape[0]), top]
    return np.where(alpha > 0, top, -1), np.where(alpha > 0, alpha, 0.0)


def word_factor(layer0_tops: Iterable[int]) -> int | None:
    """The most frequent top factor at layer 0 (ties: the smaller number; None if none)."""
    counts = Counter(int(f) for f in layer0_tops if f >= 0)
    if not counts:
        return None
    return min(counts, key=lambda f: (-counts[f], f))


def off_word_share(tops: Iterable[int], factor: int | None) -> float | None:
    """Share of occurrences whose top factor is not ``factor`` (None without a factor)."""
    tops = np.asarray(list(tops))
    if factor is None or tops.size == 0:
        return None
    return float(np.mean(tops != factor))


# ----------------------------------------------------------------------------- selection


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def labelled_occurrences(
    items: Iterable[tuple[int | None, str, dict | None]], settings: ProbeSettings
) -> list[Occurrence]:
    """Occurrences of (sentence_idx, text, metadata) items with a word and a sense."""
    out = []
    for idx, text, meta in items:
        if not isinstance(meta, dict):
            continue
        key = _text(meta.get(settings.key)) or _text(meta.get("lemma"))
        sense = _text(meta.get(settings.sense))
        if key is None or sense is None:
            continue
        written = _text(meta.get("word")) or key
        out.append(
            Occurrence(
                lemma=key.lower(),
                sense=sense,
                text=text,
                word=written.lower(),
                sentence_idx=idx,
                synset=_text(meta.get("synset")),
                gloss=_text(meta.get("gloss")),
            )
        )
    return out


def qualifying(
    occurrences: list[Occurrence], settings: ProbeSettings
) -> dict[str, dict[str, list[Occurrence]]]:
    """{word: {sense: occurrences}} of the words that qualify, senses that qualify only."""
    by_word: dict[str, dict[str, list[Occurrence]]] = defaultdict(lambda: defaultdict(list))
    for occ in occurrences:
        if settings.lemmas and occ.lemma not in settings.lemmas:
            continue
        by_word[occ.lemma][occ.sense].append(occ)
    out = {}
    for word, by_sense in by_word.items():
        kept = {s: occ for s, occ in by_sense.items() if len(occ) >= settings.min_examples}
        if len(kept) >= settings.min_senses:
            out[word] = dict(sorted(kept.items()))
    return out


def _capped(
    groups: dict[str, dict[str, list[Occurrence]]], settings: ProbeSettings
) -> dict[str, dict[str, list[Occurrence]]]:
    """At most ``max_examples`` per sense (seeded, in corpus order); at most ``max_lemmas``
    words (those with the most occurrences, then by name)."""
    rng = np.random.default_rng(settings.seed)
    out = {}
    for word in sorted(groups):
        out[word] = {}
        for sense, occ in groups[word].items():
            if settings.max_examples is not None and len(occ) > settings.max_examples:
                keep = np.sort(rng.choice(len(occ), size=settings.max_examples, replace=False))
                occ = [occ[i] for i in keep]
            out[word][sense] = occ
    if settings.max_lemmas is not None and len(out) > settings.max_lemmas:
        sizes = {w: sum(len(o) for o in s.values()) for w, s in out.items()}
        chosen = sorted(out, key=lambda w: (-sizes[w], w))[: settings.max_lemmas]
        out = {w: out[w] for w in sorted(chosen)}
    return out


def locate(occ: Occurrence, ts: TokenizedSentence) -> Occurrence | None:
    """``occ`` with its target: the first piece of the first word equal to its word."""
    word = occ.word or occ.lemma
    kept = ts.positions
    for row, p in enumerate(kept.tolist()):
        if ts.word_index[p] < 0:
            continue
        start, end = int(ts.word_start[p]), int(ts.word_end[p])
        if occ.text[start:end].lower() == word:
            return replace(occ, word_start=start, word_end=end, position=p, row=row)
    return None


# ----------------------------------------------------------------------------- the stage


def _read_labelled(
    db_path: Path, corpus: CorpusConfig | None
) -> tuple[str, list[tuple[int | None, str, dict | None]]]:
    if corpus is not None:
        sentences = read_corpus(corpus)
        return corpus.source, [(None, s.text, s.metadata) for s in sentences]
    con = connect(db_path, read_only=True)
    try:
        items = senses.labelled_sentences(con)
    finally:
        con.close()
    if not items:
        raise InputError(
            "this run's sentences carry no sense labels: give a labelled corpus, e.g. "
            "`factorscope probe --corpus wordnet`"
        )
    return "run", list(items)


def probe_corpus_config(
    source: str,
    *,
    format: str = "auto",
    field: str = "text",
    metadata_fields: tuple[str, ...] = (),
) -> CorpusConfig:
    """How ``--corpus`` is read for the probe: every sentence kept, whole records."""
    return CorpusConfig(
        source=source,
        format=format,
        field=field,
        split="lines" if source == "wordnet" else "auto",
        min_words=1,
        max_words=10_000,
        max_sentences=None,
        metadata_fields=metadata_fields,
    )


# Over 80 lines: the stage's sequence (read, code, score, write, publish) in order, each step a
# call.
def run_probe(
    db_path: str | Path,
    settings: ProbeSettings | None = None,
    *,
    corpus: CorpusConfig | None = None,
    dictionary_id: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    force: bool = False,
) -> ProbeSummary:
    """Probe dictionary ``dictionary_id`` (default: the active one) of ``db_path`` and
    store the results (see the module); it must be encoded.

    A database that already holds this probe (same dictionary, source and settings) is
    left alone unless ``force``."""
    settings = settings or ProbeSettings()
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    if not db_path.is_file():
        raise InputError(f"no database at {db_path} (run `factorscope pipeline` first)")
    started = time.perf_counter()
    dictionary_id = _encoded_dictionary(db_path, dictionary_id)
    if not force:
        done = _same_probe(
            db_path, settings, "run" if corpus is None else corpus.source, dictionary_id
        )
        if done is not None:
            return done
    source, items = _read_labelled(db_path, corpus)
    candidates = qualifying(labelled_occurrences(items, settings), settings)
    if not candidates:
        raise InputError(_nothing_qualifies(settings, source))

    con = connect(db_path, read_only=True)
    try:
        coder = RunCoder.from_connection(
            con,
            dictionary_id=dictionary_id,
            device=device,
            threads=threads,
            require_encoded=True,
        )
    finally:
        con.close()
    n_layers = coder.loaded.n_layers

    # Find each candidate's token, then qualify again without the unlocatable ones.
    flat = [o for by_sense in candidates.values() for occ in by_sense.values() for o in occ]
    tokenized = tokenize(
        coder.loaded,
        [o.text for o in flat],
        max_length=coder.max_length,
        keep_special=coder.keep_special,
    )
    located, n_skipped = [], 0
    by_text: dict[str, TokenizedSentence] = {}
    for occ, ts in zip(flat, tokenized, strict=True):
        hit = locate(occ, ts)
        if hit is None:
            n_skipped += 1
        else:
            located.append(hit)
            by_text[occ.text] = ts
    groups = _capped(qualifying(located, settings), settings)
    if not groups:
        raise InputError(_nothing_qualifies(settings, source, after_tokens=True))
    missing = tuple(w for w in settings.lemmas if w not in groups)
    order = [o for w in groups for s in groups[w] for o in groups[w][s]]

    states, codes = _encode(coder, [by_text[o.text] for o in order], order, n_layers)
    scores, occ_rows = _score(groups, order, states, codes, n_layers)
    seconds = time.perf_counter() - started
    with staged_database(db_path) as wcon:
        summaries.settle_unfinished_encode(wcon)
        senses.write_probe(
            wcon,
            dictionary_id=coder.dictionary_id,
            scores=pa.Table.from_pydict(scores, schema=senses.PROBE_SCHEMA),
            occurrences=pa.Table.from_pydict(occ_rows, schema=senses.OCCURRENCE_SCHEMA),
            source=source,
            settings=settings.to_dict(),
            n_lemmas=len(groups),
            n_skipped=n_skipped,
            seconds=seconds,
        )
    means = (
        pl.DataFrame(scores)
        .group_by("representation", "layer")
        .agg(pl.col("accuracy").mean(), pl.col("chance").mean())
    )
    return _summary(
        db_path,
        coder.dictionary_id,
        source,
        means,
        n_lemmas=len(groups),
        n_occurrences=len(order),
        n_skipped=n_skipped,
        seconds=seconds,
        missing=missing,
    )


def _encoded_dictionary(db_path: Path, dictionary_id: int | None) -> int | None:
    """``dictionary_id`` when it is an encoded dictionary of the run (None: the active
    one); a clear error naming the encoded ones otherwise."""
    if dictionary_id is None:
        return None
    con = connect(db_path, read_only=True)
    try:
        encoded = [d["dictionary_id"] for d in queries.encoded_dictionaries(con)]
    finally:
        con.close()
    if dictionary_id not in encoded:
        have = ", ".join(map(str, encoded)) or "none"
        raise InputError(
            f"--dictionary {dictionary_id} is not an encoded dictionary of {db_path} "
            f"(encoded: {have}); run `factorscope encode --dictionary {dictionary_id}` first"
        )
    return dictionary_id


def _same_probe(
    db_path: Path, settings: ProbeSettings, source: str, dictionary_id: int | None = None
) -> ProbeSummary | None:
    """The summary of the stored probe when it is this one (else None)."""
    con = connect(db_path, read_only=True)
    try:
        info = senses.probe_info(con, dictionary_id)
        if info is None or info["source"] != source or info["settings"] != settings.to_dict():
            return None
        frame = senses.probe_summary(con, int(info["dictionary_id"]))
    finally:
        con.close()
    return _summary(
        db_path,
        int(info["dictionary_id"]),
        source,
        frame,
        n_lemmas=int(info["n_lemmas"]),
        n_occurrences=int(frame["n_occurrences"][0]) if frame.height else 0,
        n_skipped=int(info["n_skipped"]),
        already_done=True,
    )


def _nothing_qualifies(settings: ProbeSettings, source: str, *, after_tokens: bool = False) -> str:
    which = f" among {', '.join(settings.lemmas)}" if settings.lemmas else ""
    why = " whose word the tokenizer yields as a whole word" if after_tokens else ""
    return (
        f"no word{which} in {source} has {settings.min_senses} senses "
        f"(metadata field {settings.sense!r}) with at least {settings.min_examples} "
        f"example sentences each{why}: lower --min-examples or give other --lemmas"
    )


def _encode(
    coder: RunCoder, tokenized: list[TokenizedSentence], order: list[Occurrence], n_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, layers, d) raw hidden states and (n, layers, m) codes of each target token."""
    n = len(order)
    m = int(coder.encoder.components_.shape[0])
    states: np.ndarray | None = None
    codes = np.zeros((n, n_layers, m), dtype=np.float32)
    with progress_bar("probe", total=n, unit="sentences") as bar:
        task = bar.task_ids[0]
        t0 = time.perf_counter()
        for lo in range(0, n, PROBE_BATCH):
            batch = list(range(lo, min(lo + PROBE_BATCH, n)))
            st = hidden_states(coder.loaded, [tokenized[i] for i in batch])
            X = np.stack([s[:, order[i].row, :] for s, i in zip(st, batch, strict=True)])
            if states is None:
                states = np.zeros((n, n_layers, X.shape[2]), dtype=np.float32)
            states[batch] = X
            flat = X.transpose(1, 0, 2).reshape(n_layers * len(batch), -1)
            layers = np.repeat(np.arange(n_layers), len(batch))
            coded = coder.encoder.transform(flat, layers=layers).toarray()
            codes[batch] = coded.reshape(n_layers, len(batch), m).transpose(1, 0, 2)
            bar.update(
                task, advance=len(batch), rate=(batch[-1] + 1) / max(time.perf_counter() - t0, 1e-9)
            )
    assert states is not None
    return states, codes


def _score(
    groups: dict[str, dict[str, list[Occurrence]]],
    order: list[Occurrence],
    states: np.ndarray,
    codes: np.ndarray,
    n_layers: int,
) -> tuple[dict[str, list], dict[str, list]]:
    scores: dict[str, list] = {name: [] for name in senses.PROBE_SCHEMA.names}
    occ_rows: dict[str, list] = {name: [] for name in senses.OCCURRENCE_SCHEMA.names}
    start = 0
    for word, by_sense in groups.items():
        n = sum(len(o) for o in by_sense.values())
        idx = np.arange(start, start + n)
        start += n
        labels = [order[i].sense for i in idx]
        chance = chance_accuracy(labels)
        tops = [top_factors(codes[idx, layer, :]) for layer in range(n_layers)]
        wf = word_factor(tops[0][0])
        for layer in range(n_layers):
            for representation, X in (("codes", codes), ("states", states)):
                scores["lemma"].append(word)
                scores["layer"].append(layer)
                scores["representation"].append(representation)
                scores["n_occurrences"].append(n)
                scores["n_senses"].append(len(by_sense))
                scores["accuracy"].append(loo_1nn_accuracy(X[idx, layer, :], labels))
                scores["chance"].append(chance)
                is_codes = representation == "codes"
                scores["off_word_share"].append(
                    off_word_share(tops[layer][0], wf) if is_codes else None
                )
                scores["word_factor"].append(wf if is_codes else None)
        for k, i in enumerate(idx.tolist()):
            occ = order[i]
            for layer in range(n_layers):
                factor, alpha = int(tops[layer][0][k]), float(tops[layer][1][k])
                occ_rows["lemma"].append(word)
                occ_rows["occurrence"].append(k)
                occ_rows["sense"].append(occ.sense)
                occ_rows["synset"].append(occ.synset)
                occ_rows["gloss"].append(occ.gloss)
                occ_rows["sentence_idx"].append(occ.sentence_idx)
                occ_rows["text"].append(occ.text)
                occ_rows["word_start"].append(occ.word_start)
                occ_rows["word_end"].append(occ.word_end)
                occ_rows["layer"].append(layer)
                occ_rows["factor"].append(factor if factor >= 0 else None)
                occ_rows["alpha"].append(alpha if factor >= 0 else None)
    return scores, occ_rows


def _summary(
    db_path: Path,
    dictionary_id: int,
    source: str,
    means: pl.DataFrame,
    *,
    n_lemmas: int,
    n_occurrences: int,
    n_skipped: int,
    seconds: float = 0.0,
    missing: tuple[str, ...] = (),
    already_done: bool = False,
) -> ProbeSummary:
    """The summary line's numbers from the per-(representation, layer) means over words
    (columns representation, layer, accuracy, chance: as ``sense_probe_summary``)."""
    codes = means.filter(pl.col("representation") == "codes").sort(
        ["accuracy", "layer"], descending=[True, False]
    )
    best = codes.row(0, named=True)
    states = means.filter(
        (pl.col("representation") == "states") & (pl.col("layer") == best["layer"])
    )
    return ProbeSummary(
        db_path,
        dictionary_id,
        source,
        n_lemmas,
        n_occurrences,
        n_skipped,
        int(best["layer"]),
        float(best["accuracy"]),
        float(states["accuracy"][0]),
        float(best["chance"]),
        seconds,
        missing,
        already_done,
    )
