"""The typer application and the options every command shares.

Numeric options take their allowed range from :data:`factorscope.limits.LIMITS` (the
table the TOML config is checked against too), through :func:`limited`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from factorscope.ingest.corpus import BUILTIN_CORPORA, CORPUS_FORMATS
from factorscope.limits import option_check

app = typer.Typer(
    name="factorscope",
    help="See inside a transformer: sparse factors of every token at every layer, in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DB = Path("factorscope.duckdb")


def limited(key: str, *names: str, **kwargs: Any) -> Any:
    """A typer option whose range is ``LIMITS[key]`` (message names the flag)."""
    return typer.Option(*names, callback=option_check(key), **kwargs)


def choice(names: Iterable[str]) -> Any:
    """``Literal[...]`` of a registry's names, for an option's annotation.

    typer then lists the names in ``--help`` and turns any other value into a usage
    error (one line, exit 2, naming the flag and the names), before a command starts.
    """
    return Literal[tuple(names)]  # type: ignore[valid-type]


def all_or(value: int | None) -> str:
    """A config default as the CLI writes it: ``None`` (no cap) is ``'all'``."""
    return "all" if value is None else str(value)


def _device_callback(value: str | None) -> str | None:
    from factorscope.errors import FactorscopeError
    from factorscope.ingest.model import check_device

    if value is None:
        return None
    try:
        return check_device(value)
    except FactorscopeError as e:
        raise typer.BadParameter(f"--device: {e}") from e


DbOption = Annotated[
    Path,
    typer.Option("--db", help="The DuckDB file to read or write.", show_default=True),
]
CorpusOption = Annotated[
    str,
    typer.Option(
        "--corpus",
        help=f"A built-in corpus ({', '.join(BUILTIN_CORPORA)}; several joined by '+', "
        "e.g. fortunes+shakespeare) or a corpus file or folder (see --format).",
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
    typer.Option(
        "--device",
        callback=_device_callback,
        help="torch device: cpu, cuda, cuda:N or mps (default: cuda when present, else cpu).",
    ),
]
ThreadsOption = Annotated[
    int | None, limited("threads", "--threads", help="torch CPU threads (default: torch's own).")
]
SeedOption = Annotated[int, limited("seed", "--seed", help="Random seed.")]
CorpusFormatOption = Annotated[
    choice(CORPUS_FORMATS),
    typer.Option("--format", help="Corpus file format (auto: by the file's suffix)."),
]
FieldOption = Annotated[
    str, typer.Option("--field", help="JSONL field or CSV/Parquet column holding the text.")
]
MetadataFieldsOption = Annotated[
    str,
    typer.Option(
        "--metadata-fields",
        help="JSONL fields or CSV/Parquet columns kept with each sentence as its metadata "
        "(comma-separated, e.g. word,sense; `probe` reads them).",
    ),
]
LabelFieldOption = Annotated[
    str | None,
    typer.Option(
        "--label-field",
        help="The field or column holding each sentence's sense label, kept as metadata "
        "(the sense `probe` reads: `--sense NAME`).",
    ),
]


def metadata_field_list(metadata_fields: str, label_field: str | None) -> tuple[str, ...]:
    """``--metadata-fields a,b`` and ``--label-field c`` as one list of fields, in order."""
    names = [f.strip() for f in metadata_fields.split(",") if f.strip()]
    if label_field is not None and label_field.strip():
        names.append(label_field.strip())
    return tuple(dict.fromkeys(names))
