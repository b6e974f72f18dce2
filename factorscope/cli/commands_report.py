"""`factorscope report`: the reproduction report (Markdown + PNG plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factorscope.cli.app import DEFAULT_DB, DbOption, app


@app.command()
def report(
    db: DbOption = DEFAULT_DB,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for README.md and figures/ (created).")
    ] = Path("docs/report"),
    examples_per_level: Annotated[
        int, typer.Option(min=0, max=20, help="Example factors shown per level.")
    ] = 3,
    word: Annotated[
        list[str] | None,
        typer.Option(
            "--word",
            help="A word for the polysemy check (repeat; default: left, right, bank, play).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for picking the example factors.")] = 0,
) -> None:
    """Write a reproduction report of the database: counts, timings, quality, levels,
    example factors and the polysemy check."""
    from factorscope.report import DEFAULT_WORDS, write_report

    summary = write_report(
        db,
        out,
        examples_per_level=examples_per_level,
        words=tuple(word) if word else DEFAULT_WORDS,
        seed=seed,
    )
    typer.echo(summary.line())
