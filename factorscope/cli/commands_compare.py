"""`factorscope compare A B`: match, split and merge the factors of two dictionaries."""

from __future__ import annotations

from typing import Annotated

import typer

from factorscope.cli.app import DEFAULT_DB, DbOption, SeedOption, all_or, app, limited
from factorscope.limits import option_check
from factorscope.stages.compare import CompareConfig

DictionaryArgument = Annotated[
    int,
    typer.Argument(
        callback=option_check("dictionary_id"),
        help="A dictionary id of this run (`factorscope status` lists them).",
        show_default=False,
    ),
]


@app.command()
def compare(
    dictionary_a: DictionaryArgument,
    dictionary_b: DictionaryArgument,
    db: DbOption = DEFAULT_DB,
    max_vectors: Annotated[
        str,
        limited(
            "max_vectors",
            "--max-vectors",
            help="Stored sample vectors coded by both for co-activation, or 'all'.",
        ),
    ] = all_or(CompareConfig.max_vectors),
    seed: SeedOption = CompareConfig.seed,
) -> None:
    """Compare two dictionaries of the run: one-to-one matches by atom cosine and by
    co-activation, stability numbers, splits and merges; stored in the comparison tables."""
    from factorscope.stages.compare import run_compare

    config = CompareConfig(max_vectors=max_vectors, seed=seed)  # type: ignore[arg-type]
    for line in run_compare(db, dictionary_a, dictionary_b, config).lines():
        typer.echo(line)
