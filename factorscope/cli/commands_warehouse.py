"""`factorscope sql`, `export` and `serve`: reading the published database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factorscope.cli.app import DEFAULT_DB, DbOption, app, choice, limited
from factorscope.dash_app.config import DEFAULT_HOST, DEFAULT_PORT, AppConfig
from factorscope.dash_app.guard import TOKEN_ENV
from factorscope.limits import SERVE_THREADS, SQL_MAX_MB, SQL_MAX_ROWS, SQL_TIMEOUT_S
from factorscope.warehouse.export import DEFAULT_FORMAT, DEFAULT_VIEWS, FORMATS, VIEW_SETS

ExportFormatChoice = choice(FORMATS)
ExportViewsChoice = choice(VIEW_SETS)


# ignore_unknown_options: a query may start with an SQL comment ("-- top\nSELECT ..."),
# which click would otherwise read as an unknown option.
@app.command(context_settings={"ignore_unknown_options": True})
def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="One read-only statement (SELECT, WITH, ...); it may start with -- comments."
        ),
    ],
    db: DbOption = DEFAULT_DB,
    max_rows: Annotated[int, limited("max_rows", "--max-rows", help="Row cap.")] = SQL_MAX_ROWS,
    max_mb: Annotated[
        int, limited("max_mb", "--max-mb", help="Result size cap in MB (rows stop there).")
    ] = SQL_MAX_MB,
    timeout: Annotated[
        float, limited("timeout", "--timeout", help="Seconds before the query is cancelled.")
    ] = SQL_TIMEOUT_S,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """Run one read-only SQL query (no writes, no files, no network) and print the rows.

    It runs in its own process, under the console's memory limit, killed at the timeout.
    """
    import re

    import polars as pl

    from factorscope.cli.checks import upgrade_old_database
    from factorscope.errors import InputError
    from factorscope.warehouse.safe_sql import run_safe_query

    if re.fullmatch(r"\s*--?[A-Za-z][\w-]*(=\S*)?\s*", query):
        # An unknown option lands here (see ignore_unknown_options): name it.
        raise InputError(
            f"no such option: {query.strip()} (a query of only an SQL comment runs nothing; "
            "see factorscope sql --help)"
        )
    upgrade_old_database(Path(db))
    frame, truncated = run_safe_query(
        db, query, row_cap=max_rows, timeout_s=timeout, byte_cap=max_mb * 1_000_000
    )
    if csv:
        typer.echo(frame.write_csv(), nl=False)
    else:
        with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
            typer.echo(frame)
    if truncated:
        cap = f"--max-rows {max_rows}" if frame.height >= max_rows else f"--max-mb {max_mb}"
        typer.echo(
            f"(showing the first {frame.height:,} rows, the {cap} cap: narrow the query with "
            f"WHERE / LIMIT or fewer columns, or raise {cap.split()[0]})",
            err=True,
        )


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write one file per table/view.")],
    db: DbOption = DEFAULT_DB,
    format: Annotated[
        ExportFormatChoice, typer.Option("--format", help="File format of the exported files.")
    ] = DEFAULT_FORMAT,
    views: Annotated[
        ExportViewsChoice,
        typer.Option(
            "--views",
            help="Which public views to write besides the tables: "
            + "; ".join(f"{name}: {what}" for name, what in VIEW_SETS.items())
            + ".",
        ),
    ] = DEFAULT_VIEWS,
) -> None:
    """Write every table and the public views to files (one per table or view).

    By default each view once: <view>_all, every dictionary's rows with dictionary_id.
    """
    from factorscope.cli.checks import check_output_folder, upgrade_old_database
    from factorscope.warehouse.export import export as export_tables

    check_output_folder(out_dir, "OUT_DIR")
    upgrade_old_database(Path(db))
    for path in export_tables(db, out_dir, fmt=format, views=views):
        typer.echo(str(path))


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback unless told otherwise).")
    ] = DEFAULT_HOST,
    port: Annotated[int, limited("port", "--port", help="TCP port to listen on.")] = DEFAULT_PORT,
    lime_samples: Annotated[
        int, limited("lime_samples", "--lime-samples", help="Default LIME sample count.")
    ] = AppConfig.lime_default_samples,
    serve_threads: Annotated[
        int,
        limited("serve_threads", "--threads", help="Worker threads of the server (one process)."),
    ] = SERVE_THREADS,
    debug: Annotated[
        bool, typer.Option("--debug", help="Dash's development server (debug tools) instead.")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Another name the server answers to besides 127.0.0.1, localhost and [::1] "
            "(repeat the flag, or a,b): requests with any other Host header are refused.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help=f"Every request must carry this token (the printed link sets a cookie; "
            f"scripts: Authorization: Bearer). Default: ${TOKEN_ENV}, which stays out of the "
            "process list. Required when --host is not loopback.",
        ),
    ] = None,
) -> None:
    """Serve the Dash explorer over the published database (waitress; --debug: dev server)."""
    import os
    from urllib.parse import quote

    from factorscope.cli.checks import check_port_free, check_readable_database
    from factorscope.dash_app import guard
    from factorscope.dash_app.app import serve as serve_app
    from factorscope.progress import stderr_console

    allowed = guard.allowed_hosts(allowed_host or ())
    if token is None and TOKEN_ENV in os.environ:
        token = guard.check_token(os.environ[TOKEN_ENV], TOKEN_ENV)
    elif token is not None:
        token = guard.check_token(token, "--token")
    held = check_readable_database(db)
    check_port_free(host, port)
    access = guard.Access.for_bind(host, allowed=allowed, token=token)
    if not guard.bind_is_loopback(host):
        stderr_console.print(
            f"warning: --host {host} makes the explorer reachable from the network: its "
            "data, its labels and the SQL console answer anyone who has the token",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if not held["encoded"]:
        stderr_console.print(
            f"note: {db} has no codes yet, so factor pages are empty: run "
            f"`factorscope {'encode' if held['dictionaries'] else 'learn'} --db {db}`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    server = "the development server" if debug else f"waitress, {serve_threads} threads"
    typer.echo(
        f"factorscope: serving {db.resolve()} on http://{host}:{port}/ with {server} (Ctrl+C stops)"
    )
    if token is not None:
        link = f"http://{guard.display_host(host, allowed)}:{port}/?token={quote(token, safe='')}"
        typer.echo(f"factorscope: open {link} (once: the browser then keeps it in a cookie)")
    serve_app(
        db,
        host=host,
        port=port,
        debug=debug,
        threads=serve_threads,
        lime_default_samples=lime_samples,
        access=access,
    )
