"""`factorscope probe`: sense separation per layer, on codes and on hidden states."""

from __future__ import annotations

from typing import Annotated

import typer

from factorscope.cli.app import (
    DEFAULT_DB,
    CorpusFormatOption,
    DbOption,
    DeviceOption,
    FieldOption,
    LabelFieldOption,
    MetadataFieldsOption,
    SeedOption,
    ThreadsOption,
    all_or,
    app,
    limited,
    metadata_field_list,
)
from factorscope.ingest.corpus import CorpusConfig
from factorscope.stages.probe import ProbeSettings


# Over 80 lines: typer declares one annotated parameter per option; the body only builds the
# settings and calls the stage.
@app.command()
def probe(
    db: DbOption = DEFAULT_DB,
    corpus: Annotated[
        str | None,
        typer.Option(
            "--corpus",
            help="A sense-labelled corpus: the built-in wordnet, or a JSONL/CSV/Parquet file "
            "with --metadata-fields (default: the run's own labelled sentences).",
        ),
    ] = None,
    format: CorpusFormatOption = CorpusConfig.format,
    field: FieldOption = CorpusConfig.field,
    metadata: MetadataFieldsOption = "",
    label_field: LabelFieldOption = None,
    key: Annotated[
        str,
        typer.Option("--key", help="Metadata field naming the probed word (falls back to lemma)."),
    ] = ProbeSettings.key,
    sense: Annotated[
        str,
        typer.Option(
            "--sense",
            help="Metadata field naming the sense (wordnet: lexname, synset or pos).",
        ),
    ] = ProbeSettings.sense,
    min_senses: Annotated[
        int, limited("min_senses", "--min-senses", help="Senses a word needs to be probed.")
    ] = ProbeSettings.min_senses,
    min_examples: Annotated[
        int,
        limited("min_examples", "--min-examples", help="Example sentences a sense needs."),
    ] = ProbeSettings.min_examples,
    max_examples: Annotated[
        str,
        limited(
            "max_examples",
            "--max-examples",
            help="Example sentences kept per sense (seeded sample), or 'all'.",
        ),
    ] = all_or(ProbeSettings.max_examples),
    lemma_list: Annotated[
        str,
        typer.Option("--lemmas", help="Probe only these words (comma-separated, e.g. left,bank)."),
    ] = "",
    max_lemmas: Annotated[
        str,
        limited(
            "max_lemmas",
            "--max-lemmas",
            help="Probe at most this many words (those with the most examples), or 'all'.",
        ),
    ] = all_or(ProbeSettings.max_lemmas),
    seed: SeedOption = ProbeSettings.seed,
    dictionary: Annotated[
        int | None,
        limited(
            "dictionary_id",
            "--dictionary",
            help="The encoded dictionary to probe (default: the active one, the last encoded).",
        ),
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Probe again even if this probe is already stored."),
    ] = False,
) -> None:
    """Score how well each word's senses separate at every layer: leave-one-out 1-NN sense
    accuracy on the codes and on the hidden states, against chance; stores the results
    for the app's Senses page and the report."""
    from factorscope.stages.probe import probe_corpus_config, run_probe

    fields = metadata_field_list(metadata, label_field)
    if label_field is not None and label_field.strip():
        sense = label_field.strip()
    settings = ProbeSettings(
        key=key,
        sense=sense,
        min_senses=min_senses,
        min_examples=min_examples,
        max_examples=max_examples,  # type: ignore[arg-type]  (the callback parsed it)
        lemmas=tuple(lemma_list.split(",")),
        max_lemmas=max_lemmas,  # type: ignore[arg-type]
        seed=seed,
    )
    source = None
    if corpus is not None:
        source = probe_corpus_config(corpus, format=format, field=field, metadata_fields=fields)
    summary = run_probe(
        db,
        settings,
        corpus=source,
        dictionary_id=dictionary,
        device=device,
        threads=threads,
        force=force,
    )
    typer.echo(summary.line())
