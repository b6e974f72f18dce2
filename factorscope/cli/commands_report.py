"""`factorscope report`: the reproduction report (Markdown + PNG plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factorscope.cli.app import DEFAULT_DB, DbOption, SeedOption, app, limited


@app.command()
def report(
    db: DbOption = DEFAULT_DB,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for README.md and figures/ (created).")
    ] = Path("docs/report"),
    examples_per_level: Annotated[
        int,
        limited(
            "examples_per_level", "--examples-per-level", help="Example factors shown per level."
        ),
    ] = 3,
    word: Annotated[
        list[str] | None,
        typer.Option(
            "--word",
            help="A word for the polysemy check of a run that has not been probed "
            "(repeat; default: left, right, bank, play).",
        ),
    ] = None,
    seed: SeedOption = 0,
) -> None:
    """Write a reproduction report of the database: counts, timings, quality, levels,
    example factors and the polysemy check (the sense probe's measurement once
    `factorscope probe` has run)."""
    from factorscope.cli.checks import check_output_folder, upgrade_old_database
    from factorscope.report import DEFAULT_WORDS, write_report

    check_output_folder(out)
    upgrade_old_database(Path(db))

    summary = write_report(
        db,
        out,
        examples_per_level=examples_per_level,
        words=tuple(word) if word else DEFAULT_WORDS,
        seed=seed,
    )
    typer.echo(summary.line())
