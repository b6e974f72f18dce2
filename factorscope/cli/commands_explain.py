"""`factorscope explain`: a readable rule per factor and layer, scored on held-out text."""

from __future__ import annotations

from typing import Annotated

import typer

from factorscope.cli.app import DEFAULT_DB, DbOption, app, limited


@app.command()
def explain(
    db: DbOption = DEFAULT_DB,
    dictionary: Annotated[
        int | None,
        limited(
            "dictionary_id",
            "--dictionary",
            help="The encoded dictionary to explain (default: the one the app shows).",
        ),
    ] = None,
    controls: Annotated[
        bool,
        typer.Option(
            "--controls/--no-controls",
            help="Explain the dictionary's encoded controls too (`learn --control`).",
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Explain again layers already explained.")
    ] = False,
) -> None:
    """Fit a short rule over token features (word, lemma, part of speech, WordNet class,
    neighbours, position) for every factor at every layer on training sentences, and
    score it on held-out ones against chance and against the controls; stores the
    explanations for the factor pages, the Evidence page and the report."""
    from factorscope.stages.explain import ExplainConfig, run_explain

    summary = run_explain(
        db, ExplainConfig(dictionary_id=dictionary, controls=controls, force=force)
    )
    typer.echo(summary.line())
