"""The typer application and the options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="factorscope",
    help="See inside a transformer: sparse factors of every token at every layer, in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DB = Path("factorscope.duckdb")

DbOption = Annotated[
    Path,
    typer.Option("--db", help="The DuckDB file to read or write.", show_default=True),
]
CorpusOption = Annotated[
    str,
    typer.Option(
        "--corpus",
        help="A built-in corpus (fortunes, shakespeare) or a text/JSONL/CSV/Parquet file/folder.",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="A Hugging Face model name or local path (default: the packaged MiniLM-L6).",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option("--device", help="torch device (default: cuda when present, else cpu)."),
]
ThreadsOption = Annotated[
    int | None, typer.Option("--threads", min=1, help="torch CPU threads (default: torch's own).")
]


def parse_count(value: str, option: str) -> int | None:
    """An integer, or None for 'all'; raises a clear error otherwise."""
    from factorscope.errors import InputError

    if value.strip().lower() in ("all", "none"):
        return None
    try:
        number = int(value)
    except ValueError as e:
        raise InputError(f"{option} must be a whole number or 'all', not {value!r}") from e
    if number < 0:
        raise InputError(f"{option} must not be negative")
    return number
