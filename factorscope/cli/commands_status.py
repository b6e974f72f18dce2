"""`factorscope status`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from factorscope.cli.app import DEFAULT_DB, DbOption, app


def _print_state(console: Console, title: str, state: dict) -> None:
    if state.get("busy"):
        console.print(f"[bold]{title}[/]: a writer is working on it right now")
        return
    run = state.get("run")
    if run is None:
        console.print(f"[bold]{title}[/]: empty (no ingest run)")
        return
    console.print(
        f"[bold]{title}[/]: model [cyan]{run['model']}[/] over corpus [cyan]{run['corpus']}[/], "
        f"{run['n_layers']} layers x {run['hidden_size']} dims"
    )
    table = Table(show_header=True, header_style="bold")
    for column in ("stage", "state", "progress", "rows", "seconds"):
        table.add_column(column)
    table.add_row(
        "ingest",
        run["status"],
        f"{state['chunks_ingested']}/{run['n_chunks']} chunks",
        f"{state['sentences_ingested']:,} sentences, {state['tokens_ingested']:,} tokens, "
        f"{state['vectors_sampled']:,} sampled vectors",
        f"{run['ingest_seconds'] or 0:.1f}",
    )
    for d in state["dictionaries"]:
        table.add_row(
            f"dictionary {d['dictionary_id']}",
            d["status"],
            f"{d['chunks_encoded']}/{run['n_chunks']} chunks encoded",
            f"{d['n_factors']:,} factors, lambda {d['lambda1']:g}, {d['n_codes']:,} codes",
            f"fit {d['fit_seconds'] or 0:.1f}, encode {d['encode_seconds']:.1f}",
        )
    console.print(table)
    _print_corpus(console, state.get("corpus"))
    _print_storage(console, state["storage"])


def _print_corpus(console: Console, report: dict | None) -> None:
    """What the ingest did not store, by reason (nothing is dropped out of sight)."""
    if report is None:
        return
    dropped = ", ".join(
        f"{reason} {n:,} ({words:,} words)" for reason, (n, words) in report["dropped"].items()
    )
    resplit = (
        f"; {report['resplit']:,} over-long segments re-split into {report['resplit_into']:,}"
        if report["resplit"]
        else ""
    )
    console.print(
        f"corpus: {report['segments']:,} segments{resplit}; not stored: {dropped or 'none'}",
        markup=False,
        highlight=False,
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _print_storage(console: Console, st: dict) -> None:
    parts = ", ".join(f"{name} {_mib(b)}" for name, b in st["table_bytes"].items() if b)
    line = f"storage: file {_mib(st['file_bytes'])} ({st['free_share']:.0%} free blocks); {parts}"
    line += f", summaries {_mib(st['summary_bytes'])}"
    if st["bytes_per_code_row"] is not None:
        line += f"; {st['bytes_per_code_row']:.1f} bytes per code row"
    if st["bytes_per_token"] is not None:
        line += f", {st['bytes_per_token']:,.0f} bytes per token"
    console.print(line)


@app.command()
def status(db: DbOption = DEFAULT_DB) -> None:
    """Print what each run in the database holds and how far each stage got."""
    from factorscope.warehouse.status import database_status

    report = database_status(db)
    console = Console()
    console.print(f"database [bold]{report['db_path']}[/]")
    if report["published"] is not None:
        _print_state(console, "published", report["published"])
    else:
        console.print("[bold]published[/]: nothing yet")
    if report["staging"] is not None:
        _print_state(
            console, "unfinished work (resume by re-running the command)", report["staging"]
        )
    typer.echo("")
