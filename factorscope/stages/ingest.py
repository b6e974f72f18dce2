"""`factorscope ingest`: corpus -> model -> sentences, tokens and a hidden-state sample.

Work is cut into chunks of ``chunk_size`` sentences; each chunk is committed in one
transaction with its row in ``ingest_chunks``. Re-running the same command after a
crash or ``kill -9`` skips the committed chunks and ends with exactly the rows of an
uninterrupted run; a run is done only once published (see docs/CONTRACTS.md, "Crash
safety"). All input is validated (corpus read, model loaded) before the
database is touched, so bad input leaves it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from factorscope import __version__
from factorscope.crashpoints import crashpoint
from factorscope.errors import FactorscopeError, InputError, WarehouseError
from factorscope.ingest.corpus import (
    CorpusConfig,
    CorpusReport,
    Sentence,
    read_corpus_with_report,
)
from factorscope.ingest.model import LoadedModel, load_model
from factorscope.ingest.runner import TokenizedSentence, hidden_states, tokenize
from factorscope.ingest.sampling import in_sample, sample_threshold
from factorscope.limits import check_setting, token_id
from factorscope.progress import progress_bar
from factorscope.stages.sharding import ShardSpec, run_shard
from factorscope.warehouse import store, summaries
from factorscope.warehouse.connection import Connection, connect, schema_version
from factorscope.warehouse.publish import (
    check_db_path_writable,
    newest_copy,
    staged_database,
    wip_path,
)

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_SIZE = 200_000


@dataclass(frozen=True)
class IngestConfig:
    """Everything that decides which rows an ingest writes.

    ``sample_size`` token x layer vectors are kept for learning the dictionary
    (``None`` keeps them all). ``batch_size``, ``device`` and ``threads`` change speed,
    not results, so they are left out of :meth:`config_hash`.
    """

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: str | None = None
    max_length: int = 128
    chunk_size: int = 256
    sample_size: int | None = DEFAULT_SAMPLE_SIZE
    keep_special: bool = False
    seed: int = 0
    batch_size: int = 32
    device: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        # limits.LIMITS is the one table of ranges: the CLI, the TOML and this API agree
        for key in ("max_length", "chunk_size", "batch_size", "sample_size"):
            check_setting(key, getattr(self, key), key)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["corpus"] = self.corpus.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> IngestConfig:
        data = dict(data)
        data["corpus"] = CorpusConfig.from_dict(data.get("corpus", {}))
        return cls(**data)

    def config_hash(self) -> str:
        data = self.to_dict()
        for runtime_only in ("batch_size", "device", "threads"):
            data.pop(runtime_only)
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IngestSummary:
    db_path: Path
    n_sentences: int
    n_tokens: int
    n_layers: int
    sample_size: int
    chunks_done_now: int
    seconds: float
    already_complete: bool
    shard: ShardSpec | None = None
    from_staging: bool = False
    corpus: CorpusReport | None = None

    def line(self) -> str:
        """The summary, and on a second line what the corpus reader did not store."""
        if self.corpus is None:
            return self._line()
        return f"{self._line()}\n  corpus: {self.corpus.line()}"

    def _line(self) -> str:
        what = "ingest" if self.shard is None else f"ingest (shard {self.shard})"
        if self.from_staging:
            return (
                f"{what}: {self.n_sentences:,} sentences, {self.n_tokens:,} tokens, ingested by "
                f"an interrupted run, are published -> {self.db_path}"
            )
        if self.already_complete:
            return (
                f"{what}: {self.db_path} already holds this run "
                f"({self.n_sentences:,} sentences, {self.n_tokens:,} tokens); nothing to do"
            )
        rate = self.n_tokens / self.seconds if self.seconds else 0.0
        return (
            f"{what}: {self.n_sentences:,} sentences, {self.n_tokens:,} tokens x "
            f"{self.n_layers} layers, {self.sample_size:,} vectors sampled, "
            f"{self.seconds:.1f} s ({rate:,.0f} tokens/s) -> {self.db_path}"
        )


def existing_run(db_path: Path) -> dict | None:
    """The run stored in the staging copy or the published file, read without writing."""
    return _read_run(newest_copy(db_path))


def published_run(db_path: Path) -> dict | None:
    """The run of the published file only (what readers see), or None."""
    return _read_run(Path(db_path))


def _read_run(source: Path) -> dict | None:
    if not source.exists():
        return None
    con = connect(source, read_only=True)
    try:
        return store.get_run(con) if schema_version(con) >= 1 else None
    finally:
        con.close()


def _token_ids(sentence_idx: int, sentence: TokenizedSentence) -> np.ndarray:
    return token_id(sentence_idx, sentence.positions.astype(np.int64))


def _chunk_tables(
    indices: list[int], sentences: list[Sentence], tokenized: list[TokenizedSentence]
) -> tuple[pa.Table, pa.Table]:
    rows: dict[str, list] = {name: [] for name in store.SENTENCES_SCHEMA.names}
    tok: dict[str, list] = {name: [] for name in store.TOKENS_SCHEMA.names}
    for idx, sentence, ts in zip(indices, sentences, tokenized, strict=True):
        positions = ts.positions
        rows["sentence_idx"].append(idx)
        rows["sentence_id"].append(sentence.sentence_id)
        rows["source"].append(sentence.source)
        rows["text"].append(sentence.text)
        rows["n_tokens"].append(len(positions))
        rows["metadata"].append(sentence.metadata)
        for p in positions.tolist():
            tok["token_id"].append(token_id(idx, p))
            tok["sentence_idx"].append(idx)
            tok["position"].append(p)
            tok["piece"].append(ts.pieces[p])
            tok["vocab_id"].append(int(ts.input_ids[p]))
            tok["word"].append(ts.word_at(p))
            tok["word_index"].append(int(ts.word_index[p]) if ts.word_index[p] >= 0 else None)
            tok["char_start"].append(int(ts.char_start[p]))
            tok["char_end"].append(int(ts.char_end[p]))
            tok["word_start"].append(int(ts.word_start[p]))
            tok["word_end"].append(int(ts.word_end[p]))
    sentence_table = store.sentences_table(rows)
    token_table = store.tokens_table(tok)
    return sentence_table, token_table


@dataclass
class PreparedCorpus:
    """Sentences with at least one stored token, tokenized once for counting and chunking."""

    sentences: list[Sentence]
    tokenized: list[TokenizedSentence]
    without_tokens: list[Sentence] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return sum(len(t.positions) for t in self.tokenized)

    def all_token_ids(self) -> np.ndarray:
        if not self.tokenized:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([_token_ids(i, t) for i, t in enumerate(self.tokenized)])


def prepare_corpus(
    config: IngestConfig, loaded: LoadedModel, sentences: list[Sentence]
) -> PreparedCorpus:
    tokenized = tokenize(
        loaded,
        [s.text for s in sentences],
        max_length=config.max_length,
        keep_special=config.keep_special,
    )
    pairs = [(s, t) for s, t in zip(sentences, tokenized, strict=True) if len(t.positions)]
    if not pairs:
        raise InputError("no sentence of the corpus produced any token to store")
    empty = [s for s, t in zip(sentences, tokenized, strict=True) if not len(t.positions)]
    return PreparedCorpus([p[0] for p in pairs], [p[1] for p in pairs], empty)


def _count_tokenless(report: CorpusReport, prepared: PreparedCorpus) -> None:
    """Sentences the model keeps no token of are not stored: counted under their reason."""
    if prepared.without_tokens:
        words = sum(len(s.text.split()) for s in prepared.without_tokens)
        report.drop("no tokens", words, len(prepared.without_tokens))
        report.keep_less(len(prepared.without_tokens), words)


def _summary(
    db_path: Path,
    run: dict,
    shard: ShardSpec | None,
    *,
    already_complete: bool = False,
    from_staging: bool = False,
    seconds: float = 0.0,
) -> IngestSummary:
    return IngestSummary(
        db_path,
        run["n_sentences"],
        run["n_tokens"],
        run["n_layers"],
        run["sample_size"],
        0,
        seconds,
        already_complete,
        shard,
        from_staging,
    )


def _describe(shard: ShardSpec | None) -> str:
    return "the whole run" if shard is None else f"shard {shard}"


def run_ingest(
    db_path: str | Path,
    config: IngestConfig,
    *,
    shard: ShardSpec | None = None,
    overwrite: bool = False,
) -> IngestSummary:
    """Ingest (or resume ingesting) ``config``'s corpus into the database at ``db_path``.

    With ``shard`` (``--shard i/n``) only the sentences whose stable ``sentence_id``
    falls in shard ``i`` (:func:`~factorscope.stages.sharding.shard_of`) are stored,
    under their ``sentence_idx`` in the whole corpus (so token ids are those of the
    whole run), and the hidden-state sample is the whole run's bottom-k sample
    restricted to this shard's tokens: the threshold is computed over every token of
    the corpus (tokenizing is cheap; the forward pass runs on this shard only). The
    shard's sentences are cut into chunks of ``chunk_size``, in order, so a resumed
    shard redoes exactly its missing chunks. The run row counts this shard's rows and
    records the shard in its config (outside ``config_hash``, which is the whole
    run's); ``factorscope merge-ingest`` joins the shards into the whole run.

    ``overwrite`` (``--overwrite``) replaces whatever ``db_path`` holds, and only when
    the new run publishes: the corpus is read and the model loaded first, the new run
    is built in a fresh staging copy, and the old file keeps its name (and its codes,
    dictionaries and labels, none of which are carried) until the finished run
    replaces it. A killed overwrite leaves the old file as it was; the same command
    (with or without ``--overwrite``) resumes the staged new run.
    """
    db_path = Path(db_path)
    check_db_path_writable(db_path)
    resume_overwrite = overwrite and _overwrite_in_progress(db_path, config, shard)
    if not overwrite:
        finished = _finished_before(db_path, config, shard)
        if finished is not None:
            return finished

    # bad input fails here, before the model loads
    sentences, report = read_corpus_with_report(config.corpus)
    loaded = load_model(config.model, device=config.device, threads=config.threads)
    prepared = prepare_corpus(config, loaded, sentences)
    _count_tokenless(report, prepared)
    plan = _plan(config, loaded, prepared, shard)
    stored_config = config.to_dict()
    if shard is not None:
        stored_config["shard"] = shard.to_dict()

    started = time.perf_counter()
    done_now = 0
    fresh = overwrite and not resume_overwrite
    carry_if = _carry_nothing if overwrite else store.same_run_as_published
    with staged_database(db_path, fresh=fresh, carry_if=carry_if) as con:
        if store.get_run(con) is None:
            store.create_run(
                con,
                model=loaded.name,
                model_path=loaded.path,
                revision=loaded.revision,
                corpus=config.corpus.source,
                config=stored_config,
                config_hash=config.config_hash(),
                n_layers=loaded.n_layers,
                hidden_size=loaded.hidden_size,
                n_sentences=int(plan.members.size),
                n_tokens=plan.n_tokens,
                n_chunks=len(plan.chunks),
                sample_size=plan.expected_sample,
                status="ingesting",
                factorscope_version=__version__,
            )
            store.write_corpus_report(con, report.to_dict())
        done = store.done_ingest_chunks(con)
        todo = [c for c in range(len(plan.chunks)) if c not in done]
        tokens_todo = sum(
            len(prepared.tokenized[i].positions) for c in todo for i in plan.chunks[c]
        )
        with progress_bar("ingest", total=tokens_todo) as bar:
            task = bar.task_ids[0]
            processed = 0
            for chunk in todo:
                processed += _write_chunk(con, chunk, plan, prepared, loaded, config)
                done_now += 1
                crashpoint("ingest.chunk")
                rate = processed / max(time.perf_counter() - started, 1e-9)
                bar.update(task, completed=processed, rate=rate)
        seconds = time.perf_counter() - started
        store.finish_run(con, seconds)
        crashpoint("ingest.finished")
    return IngestSummary(
        db_path,
        int(plan.members.size),
        plan.n_tokens,
        loaded.n_layers,
        plan.expected_sample,
        done_now,
        seconds,
        False,
        shard,
        corpus=report,
    )


def _carry_nothing(_con: Connection) -> bool:
    """An overwrite keeps none of the replaced file's labels or LIME results."""
    return False


def _overwrite_in_progress(db_path: Path, config: IngestConfig, shard: ShardSpec | None) -> bool:
    """Whether the staging copy holds an unfinished ingest of this very run (an overwrite
    killed mid-way), to resume rather than start over. Anything else there (another
    run, a later stage's work on the old file, an unreadable file) is discarded."""
    wip = wip_path(db_path)
    if not wip.exists():
        return False
    try:
        staged = _read_run(wip)
    except FactorscopeError:
        return False
    return (
        staged is not None
        and staged["status"] == "ingesting"
        and staged["config_hash"] == config.config_hash()
        and run_shard(staged) == shard
    )


def _finished_before(
    db_path: Path, config: IngestConfig, shard: ShardSpec | None
) -> IngestSummary | None:
    """The summary of a run already done here (published, or finished in a staging copy,
    which is published now); None when there is work to do. Another run's file is an
    error."""
    previous = existing_run(db_path)
    if previous is not None and previous["config_hash"] != config.config_hash():
        raise WarehouseError(
            f"{db_path} already holds a run of model {previous['model']!r} over corpus "
            f"{previous['corpus']!r} with other settings; use another --db for this one"
        )
    if previous is not None and run_shard(previous) != shard:
        raise WarehouseError(
            f"{db_path} already holds {_describe(run_shard(previous))} of this run, not "
            f"{_describe(shard)}; use another --db for this one"
        )
    # Done only when published: a staging copy may hold a finished but unpublished
    # run (killed while publishing), which is published below, not skipped. A staging
    # copy next to a published finished run belongs to a later stage: left alone.
    published = published_run(db_path)
    if (
        published is not None
        and published["status"] == "ingested"
        and published["config_hash"] == config.config_hash()
        and run_shard(published) == shard
    ):
        return _summary(db_path, published, shard, already_complete=True)
    if previous is not None and previous["status"] == "ingested":
        started = time.perf_counter()
        with staged_database(db_path, carry_if=store.same_run_as_published) as con:
            summaries.settle_unfinished_encode(con)
        seconds = time.perf_counter() - started
        return _summary(db_path, previous, shard, from_staging=True, seconds=seconds)
    return None


@dataclass(frozen=True)
class _IngestPlan:
    """Which sentences this run (or shard) stores, in which chunks, and the sample rule."""

    members: np.ndarray  # corpus indices of the stored sentences
    n_tokens: int
    expected_sample: int
    chunks: list[np.ndarray]
    threshold: int  # the whole corpus's bottom-k sample threshold
    layers: np.ndarray


def _plan(
    config: IngestConfig, loaded: LoadedModel, prepared: PreparedCorpus, shard: ShardSpec | None
) -> _IngestPlan:
    # The sample's threshold always comes from every token of the whole corpus.
    all_token_ids = prepared.all_token_ids()
    threshold = sample_threshold(all_token_ids, loaded.n_layers, config.sample_size, config.seed)
    layers = np.arange(loaded.n_layers)
    if shard is None:
        members = np.arange(len(prepared.sentences))
        n_tokens = int(all_token_ids.size)
        expected_sample = (
            n_tokens * loaded.n_layers
            if config.sample_size is None
            else min(config.sample_size, n_tokens * loaded.n_layers)
        )
    else:
        members = np.array(
            [i for i, s in enumerate(prepared.sentences) if shard.owns(s.sentence_id)],
            dtype=np.int64,
        )
        own_ids = [_token_ids(int(i), prepared.tokenized[i]) for i in members]
        own = np.concatenate(own_ids) if own_ids else np.zeros(0, dtype=np.int64)
        n_tokens = int(own.size)
        mask = in_sample(own[None, :], layers[:, None], config.seed, threshold)
        expected_sample = int(mask.sum())
    chunks = [
        members[lo : lo + config.chunk_size] for lo in range(0, members.size, config.chunk_size)
    ]
    return _IngestPlan(members, n_tokens, int(expected_sample), chunks, threshold, layers)


def _write_chunk(
    con: Connection,
    chunk: int,
    plan: _IngestPlan,
    prepared: PreparedCorpus,
    loaded: LoadedModel,
    config: IngestConfig,
) -> int:
    """Run the model over one chunk and commit its rows and sample; its token count."""
    t0 = time.perf_counter()
    indices = plan.chunks[chunk].tolist()
    tokenized = [prepared.tokenized[i] for i in indices]
    states = hidden_states(loaded, tokenized, batch_size=config.batch_size)
    sample_layers, sample_tokens, sample_vectors = [], [], []
    for idx, ts, st in zip(indices, tokenized, states, strict=True):
        ids = _token_ids(idx, ts)
        mask = in_sample(ids[None, :], plan.layers[:, None], config.seed, plan.threshold)
        layer_idx, tok_idx = np.nonzero(mask)
        sample_layers.append(layer_idx)
        sample_tokens.append(ids[tok_idx])
        sample_vectors.append(st[layer_idx, tok_idx])
    sentence_table, token_table = _chunk_tables(
        indices, [prepared.sentences[i] for i in indices], tokenized
    )
    store.write_ingest_chunk(
        con,
        chunk=chunk,
        sentences=sentence_table,
        tokens=token_table,
        sample_layers=np.concatenate(sample_layers),
        sample_token_ids=np.concatenate(sample_tokens),
        sample_vectors=np.concatenate(sample_vectors).reshape(-1, loaded.hidden_size),
        seconds=time.perf_counter() - t0,
    )
    return int(token_table.num_rows)
