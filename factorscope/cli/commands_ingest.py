"""`factorscope ingest`."""

from __future__ import annotations

from typing import Annotated

import typer

from factorscope.cli.app import (
    DEFAULT_DB,
    CorpusOption,
    DbOption,
    DeviceOption,
    ModelOption,
    SeedOption,
    ThreadsOption,
    app,
    limited,
)
from factorscope.ingest.corpus import SPLITTERS, CorpusConfig

OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Delete the run already in --db (and any unfinished work) and start over.",
    ),
]


@app.command()
def ingest(
    db: DbOption = DEFAULT_DB,
    corpus: CorpusOption = "fortunes",
    model: ModelOption = None,
    format: Annotated[
        str, typer.Option("--format", help="auto, text, jsonl, csv or parquet.")
    ] = "auto",
    field: Annotated[
        str, typer.Option("--field", help="JSONL field or CSV/Parquet column holding the text.")
    ] = "text",
    split: Annotated[
        str, typer.Option("--split", help="auto, lines (one sentence a line) or paragraphs.")
    ] = "auto",
    splitter: Annotated[
        str,
        typer.Option(
            "--splitter",
            help=f"Sentence splitter for paragraphs: {', '.join(SPLITTERS)} "
            "(regex reproduces runs made before sentencex).",
        ),
    ] = CorpusConfig.splitter,
    min_words: Annotated[
        int, limited("min_words", "--min-words", help="Drop sentences with fewer words.")
    ] = 4,
    max_words: Annotated[
        int, limited("max_words", "--max-words", help="Drop sentences with more words.")
    ] = 48,
    max_sentences: Annotated[
        str,
        limited(
            "max_sentences",
            "--max-sentences",
            help="Keep at most this many sentences (seeded sample), or 'all'.",
        ),
    ] = "2000",
    sample_size: Annotated[
        str,
        limited(
            "sample_size",
            "--sample-size",
            help="Token x layer vectors kept for learning the dictionary, or 'all'.",
        ),
    ] = "200000",
    max_length: Annotated[
        int, limited("max_length", "--max-length", help="Truncate sentences at this many pieces.")
    ] = 128,
    chunk_size: Annotated[
        int, limited("chunk_size", "--chunk-size", help="Sentences per committed chunk.")
    ] = 256,
    batch_size: Annotated[
        int, limited("batch_size", "--batch-size", help="Sentences per forward pass.")
    ] = 32,
    keep_special: Annotated[
        bool, typer.Option(help="Store [CLS]/[SEP]-like special tokens as contexts too.")
    ] = False,
    seed: SeedOption = 0,
    dedupe: Annotated[
        bool,
        typer.Option(
            "--dedupe/--no-dedupe", help="Drop repeated sentences (--no-dedupe keeps them)."
        ),
    ] = True,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Ingest only shard i of n (e.g. 0/4) of the corpus into --db; "
            "join the shards with `merge-ingest`."
        ),
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Read a corpus, run the model, store sentences, tokens and a hidden-state sample.

    Resumable: after an interruption, run the same command again.
    """
    from factorscope.cli.checks import check_same_run
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.stages.ingest import IngestConfig, run_ingest
    from factorscope.stages.sharding import ShardSpec

    config = IngestConfig(
        corpus=CorpusConfig(
            source=corpus,
            format=format,  # type: ignore[arg-type]
            field=field,
            split=split,  # type: ignore[arg-type]
            splitter=splitter,
            min_words=min_words,
            max_words=max_words,
            max_sentences=max_sentences,  # type: ignore[arg-type]  (the callback parsed it)
            seed=seed,
            dedupe=dedupe,
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
    summary = run_ingest(db, config, shard=spec)
    typer.echo(summary.line())
