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
    ThreadsOption,
    app,
    parse_count,
)


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
    min_words: Annotated[int, typer.Option(help="Drop sentences with fewer words.")] = 4,
    max_words: Annotated[int, typer.Option(help="Drop sentences with more words.")] = 48,
    max_sentences: Annotated[
        str, typer.Option(help="Keep at most this many sentences (seeded sample), or 'all'.")
    ] = "2000",
    sample_size: Annotated[
        str,
        typer.Option(help="Token x layer vectors kept for learning the dictionary, or 'all'."),
    ] = "200000",
    max_length: Annotated[int, typer.Option(help="Truncate sentences at this many pieces.")] = 128,
    chunk_size: Annotated[int, typer.Option(help="Sentences per committed chunk.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Sentences per forward pass.")] = 32,
    keep_special: Annotated[
        bool, typer.Option(help="Store [CLS]/[SEP]-like special tokens as contexts too.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for sentence and vector sampling.")] = 0,
    no_dedupe: Annotated[bool, typer.Option(help="Keep duplicate sentences.")] = False,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Ingest only shard i of n (e.g. 0/4) of the corpus into --db; "
            "join the shards with `merge-ingest`."
        ),
    ] = None,
) -> None:
    """Read a corpus, run the model, store sentences, tokens and a hidden-state sample.

    Resumable: after an interruption, run the same command again.
    """
    from factorscope.ingest.corpus import CorpusConfig
    from factorscope.ingest.pipeline import IngestConfig, run_ingest
    from factorscope.scale.sharding import ShardSpec

    config = IngestConfig(
        corpus=CorpusConfig(
            source=corpus,
            format=format,  # type: ignore[arg-type]
            field=field,
            split=split,  # type: ignore[arg-type]
            min_words=min_words,
            max_words=max_words,
            max_sentences=parse_count(max_sentences, "--max-sentences"),
            seed=seed,
            dedupe=not no_dedupe,
        ),
        model=model,
        max_length=max_length,
        chunk_size=chunk_size,
        sample_size=parse_count(sample_size, "--sample-size"),
        keep_special=keep_special,
        seed=seed,
        batch_size=batch_size,
        device=device,
        threads=threads,
    )
    spec = ShardSpec.parse(shard) if shard is not None else None
    summary = run_ingest(db, config, shard=spec)
    typer.echo(summary.line())
