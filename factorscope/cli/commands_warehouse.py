"""`factorscope sql`, `export` and `serve`: reading the published database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factorscope.cli.app import DEFAULT_DB, DbOption, app


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only statement (SELECT, WITH, ...).")],
    db: DbOption = DEFAULT_DB,
    max_rows: Annotated[int, typer.Option(min=1, help="Row cap.")] = 1000,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds before the query is cancelled.")
    ] = 10.0,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """Run one read-only SQL query (no writes, no files, no network) and print the rows."""
    import polars as pl

    from factorscope.warehouse.safe_sql import run_safe_query

    frame, truncated = run_safe_query(db, query, row_cap=max_rows, timeout_s=timeout)
    if csv:
        typer.echo(frame.write_csv(), nl=False)
    else:
        with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
            typer.echo(frame)
    if truncated:
        typer.echo(f"(showing the first {max_rows} rows; raise --max-rows for more)", err=True)


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write one file per table/view.")],
    db: DbOption = DEFAULT_DB,
    format: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Write every table and public view to Parquet or CSV files."""
    from factorscope.errors import InputError
    from factorscope.warehouse.export import export as export_tables

    if format not in ("parquet", "csv"):
        raise InputError(f"--format must be parquet or csv, not {format!r}")
    for path in export_tables(db, out_dir, fmt=format):  # type: ignore[arg-type]
        typer.echo(str(path))


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback unless told otherwise).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8050,
    lime_samples: Annotated[int, typer.Option(min=10, help="Default LIME sample count.")] = 200,
    debug: bool = False,
) -> None:
    """Serve the Dash explorer over the published database."""
    from factorscope.dash_app.app import serve as serve_app

    typer.echo(f"factorscope: serving {db.resolve()} on http://{host}:{port}/ (Ctrl+C stops)")
    serve_app(db, host=host, port=port, debug=debug, lime_default_samples=lime_samples)
