"""`factorscope ingest`."""

from __future__ import annotations

from typing import Annotated

import typer

from factorscope.cli.app import (
    DEFAULT_DB,
    CorpusFormatOption,
    CorpusOption,
    DbOption,
    DeviceOption,
    FieldOption,
    LabelFieldOption,
    MetadataFieldsOption,
    ModelOption,
    SeedOption,
    ThreadsOption,
    all_or,
    app,
    choice,
    limited,
    metadata_field_list,
)
from factorscope.ingest.corpus import SPLIT_MODES, SPLITTERS, CorpusConfig
from factorscope.stages.ingest import IngestConfig

SplitChoice = choice(SPLIT_MODES)
SplitterChoice = choice(SPLITTERS)

OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the run in --db (and any unfinished work) by a new one; the old file "
        "is kept until the new run is published.",
    ),
]


# The options of `ingest` that only it takes, declared once here so that the command's
# signature reads as a list of its options.
SplitOption = Annotated[
    SplitChoice,
    typer.Option("--split", help="lines: one sentence a line; paragraphs: split into sentences."),
]
SplitterOption = Annotated[
    SplitterChoice,
    typer.Option(
        "--splitter",
        help="Sentence splitter for paragraphs (regex reproduces runs made before sentencex).",
    ),
]
MinWordsOption = Annotated[
    int, limited("min_words", "--min-words", help="Drop sentences with fewer words.")
]
MaxWordsOption = Annotated[
    int, limited("max_words", "--max-words", help="Drop sentences with more words.")
]
MaxSentencesOption = Annotated[
    str,
    limited(
        "max_sentences",
        "--max-sentences",
        help="Keep at most this many sentences (seeded sample), or 'all'.",
    ),
]
SampleSizeOption = Annotated[
    str,
    limited(
        "sample_size",
        "--sample-size",
        help="Token x layer vectors kept for learning the dictionary, or 'all'.",
    ),
]
MaxLengthOption = Annotated[
    int, limited("max_length", "--max-length", help="Truncate sentences at this many pieces.")
]
ChunkSizeOption = Annotated[
    int, limited("chunk_size", "--chunk-size", help="Sentences per committed chunk.")
]
BatchSizeOption = Annotated[
    int, limited("batch_size", "--batch-size", help="Sentences per forward pass.")
]
KeepSpecialOption = Annotated[
    bool, typer.Option(help="Store [CLS]/[SEP]-like special tokens as contexts too.")
]
DedupeOption = Annotated[
    bool,
    typer.Option("--dedupe/--no-dedupe", help="Drop repeated sentences (--no-dedupe keeps them)."),
]
ResplitOption = Annotated[
    bool,
    typer.Option(
        "--resplit/--no-resplit",
        help="Cut a segment over --max-words again (line breaks, then the regex rule) "
        "before dropping it (--no-resplit reproduces runs made before).",
    ),
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        help="Ingest only shard i of n (e.g. 0/4) of the corpus into --db; "
        "join the shards with `merge-ingest`."
    ),
]


@app.command()
def ingest(
    db: DbOption = DEFAULT_DB,
    corpus: CorpusOption = CorpusConfig.source,
    model: ModelOption = None,
    format: CorpusFormatOption = CorpusConfig.format,
    field: FieldOption = CorpusConfig.field,
    split: SplitOption = CorpusConfig.split,
    splitter: SplitterOption = CorpusConfig.splitter,
    min_words: MinWordsOption = CorpusConfig.min_words,
    max_words: MaxWordsOption = CorpusConfig.max_words,
    max_sentences: MaxSentencesOption = all_or(CorpusConfig.max_sentences),
    sample_size: SampleSizeOption = all_or(IngestConfig.sample_size),
    max_length: MaxLengthOption = IngestConfig.max_length,
    chunk_size: ChunkSizeOption = IngestConfig.chunk_size,
    batch_size: BatchSizeOption = IngestConfig.batch_size,
    keep_special: KeepSpecialOption = IngestConfig.keep_special,
    seed: SeedOption = IngestConfig.seed,
    dedupe: DedupeOption = CorpusConfig.dedupe,
    resplit: ResplitOption = CorpusConfig.resplit,
    metadata: MetadataFieldsOption = "",
    label_field: LabelFieldOption = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    shard: ShardOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Read a corpus, run the model, store sentences, tokens and a hidden-state sample.

    Resumable: after an interruption, run the same command again.
    """
    from factorscope.cli.checks import check_same_run
    from factorscope.stages.ingest import run_ingest
    from factorscope.stages.sharding import ShardSpec

    config = IngestConfig(
        corpus=CorpusConfig(
            source=corpus,
            format=format,
            field=field,
            split=split,  # type: ignore[arg-type]
            splitter=splitter,
            min_words=min_words,
            max_words=max_words,
            max_sentences=max_sentences,  # type: ignore[arg-type]  (the callback parsed it)
            seed=seed,
            dedupe=dedupe,
            resplit=resplit,
            metadata_fields=metadata_field_list(metadata, label_field),
        ),
        model=model,
        max_length=max_length,
        chunk_size=chunk_size,
        sample_size=sample_size,  # type: ignore[arg-type]
        keep_special=keep_special,
        seed=seed,
        batch_size=batch_size,
        device=device,
        threads=threads,
    )
    spec = ShardSpec.parse(shard) if shard is not None else None
    check_same_run(db, config, overwrite=overwrite)
    summary = run_ingest(db, config, shard=spec, overwrite=overwrite)
    typer.echo(summary.line())
