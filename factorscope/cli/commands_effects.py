"""`factorscope effects`: what each factor does to the model's output when removed."""

from __future__ import annotations

from typing import Annotated

import typer

from factorscope.cli.app import (
    DEFAULT_DB,
    DbOption,
    DeviceOption,
    ThreadsOption,
    all_or,
    app,
    limited,
)
from factorscope.stages.effects import EffectsConfig


@app.command()
def effects(
    db: DbOption = DEFAULT_DB,
    dictionary: Annotated[
        int | None,
        limited(
            "dictionary_id",
            "--dictionary",
            help="The encoded dictionary to measure (default: the one the app shows).",
        ),
    ] = None,
    contexts: Annotated[
        int,
        limited(
            "contexts",
            "--contexts",
            help="Top-context sentences each factor is removed from.",
        ),
    ] = EffectsConfig.n_contexts,
    factors: Annotated[
        str,
        limited(
            "factors",
            "--factors",
            help="Measure a seeded random sample of this many factors, or 'all'.",
        ),
    ] = all_or(EffectsConfig.max_factors),
    force: Annotated[
        bool, typer.Option("--force", help="Measure again factors already measured.")
    ] = False,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Remove each factor (alpha x atom, in the model's space) from the hidden states at
    its peak layer where it is active in its top contexts, run the rest of the model, and
    measure how the last layer, the sentence embedding and (for a model with a
    language-model head) the output tokens change, beside a random direction of the same
    norm; stores the effects for the factor pages and the report."""
    from factorscope.stages.effects import run_effects

    summary = run_effects(
        db,
        EffectsConfig(
            dictionary_id=dictionary,
            n_contexts=contexts,
            max_factors=factors,  # type: ignore[arg-type]  (the callback parsed it)
            force=force,
            device=device,
            threads=threads,
        ),
    )
    typer.echo(summary.line())
