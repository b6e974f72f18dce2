"""The `factorscope` command line: one thin command per library function.

Every error leaves through :func:`main`, the one exit point: a mistake on the command
line (unknown command or option, missing argument, a value of the wrong type or out of
range) or in the data (``FactorscopeError``, an unusable path; a damaged or foreign
database, a full disk, met however deep in a stage: ``explain_failure``) becomes ONE
line on stderr and exit code 2; ``--help`` prints help and exits 0. ``FACTORSCOPE_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import typer
from rich.markup import escape

from factorscope.cli import (  # noqa: F401  (importing registers the commands)
    commands_compare,
    commands_effects,
    commands_explain,
    commands_ingest,
    commands_pipeline,
    commands_probe,
    commands_report,
    commands_status,
    commands_warehouse,
)
from factorscope.cli.app import app
from factorscope.errors import DatabaseFileError, DiskFullError, FactorscopeError, WriterBusyError
from factorscope.progress import stderr_console
from factorscope.warehouse import publish
from factorscope.warehouse.connection import explain_failure, mentions_damage

__all__ = ["app", "main"]

PROG = "factorscope"

# typer vendors its own copy of click (typer._click): its exceptions are not click's.
_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    click.exceptions.ClickException,
    typer.exceptions.TyperException,
)
_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, typer.exceptions.Abort)
_NO_ARGS_HELP = tuple(
    cls
    for cls in (
        getattr(click.exceptions, "NoArgsIsHelpError", None),
        getattr(typer._click.exceptions, "NoArgsIsHelpError", None),  # type: ignore[attr-defined]
    )
    if cls is not None
)


def one_line(text: str) -> str:
    """``text`` on one line (every run of whitespace, newlines included, becomes a space)."""
    return " ".join(str(text).split())


def _print_error(message: str) -> None:
    stderr_console.print(
        f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True
    )


def _usage_message(error: BaseException) -> str:
    """click's message for a usage error, and which --help to read."""
    cause = error.__cause__
    if isinstance(cause, FactorscopeError):  # our own check, run as an option's callback
        message = str(cause)
    else:
        format_message = getattr(error, "format_message", None)
        message = format_message() if callable(format_message) else str(error)
    # typer words a wrong choice "Invalid value for '--x': Value error, 'y' is not one of ..."
    message = one_line(message).replace(": Value error, ", ": ")
    if not message.endswith((".", "?", "!")):
        message += "."
    ctx = getattr(error, "ctx", None)
    command = getattr(ctx, "command_path", None) or PROG
    return f"{message} See '{command} --help'."


def _is_usage_error(error: BaseException) -> bool:
    """typer's or click's usage error, whatever module its class comes from."""
    return isinstance(error, _USAGE_ERRORS) or (
        isinstance(getattr(error, "exit_code", None), int)
        and callable(getattr(error, "format_message", None))
    )


def _message(error: FactorscopeError) -> str:
    """A known error's line; one that only quotes DuckDB on a damaged file or a full
    disk (a query that failed half-way) says what is damaged and what to do instead."""
    if isinstance(error, DatabaseFileError | DiskFullError | WriterBusyError):
        return str(error)  # classified where it happened, with what was cleaned up
    for cause in (error.__cause__, error):
        if cause is not None and mentions_damage(str(cause)):
            explained = explain_failure(cause)
            if explained is not None and explained is not error:
                return str(explained)
    return str(error)


def _command_of(argv: list[str] | None) -> str:
    """The subcommand's name (how a stage names itself in ``<db>.writer.lock``)."""
    words = sys.argv[1:] if argv is None else argv
    return next((str(w) for w in words if not str(w).startswith("-")), PROG)


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("FACTORSCOPE_DEBUG") == "1"
    publish.WRITER_NAME = _command_of(argv)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = app(args=argv, prog_name=PROG, standalone_mode=False)
    except FactorscopeError as e:
        if debug:
            raise
        _print_error(_message(e))
        return e.exit_code
    except _ABORTS:
        stderr_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        stderr_console.print(
            "interrupted: finished chunks are kept; run the same command to resume"
        )
        return 130
    except Exception as e:
        if _NO_ARGS_HELP and isinstance(e, _NO_ARGS_HELP):
            ctx = getattr(e, "ctx", None)
            if ctx is not None:
                typer.echo(ctx.get_help())
            return 0
        if _is_usage_error(e):
            if debug:
                raise
            _print_error(_usage_message(e))
            return 2
        # A damaged or foreign file met half-way, a full disk, a file locked by another
        # process: not bugs, so one line (warehouse/connection.py classifies them).
        explained = explain_failure(e)
        if explained is not None:
            if debug:
                raise
            _print_error(str(explained))
            return explained.exit_code
        if isinstance(e, OSError) and (e.filename is not None or e.strerror):
            # a path or address the user gave that the system refused (permission, full disk)
            if debug:
                raise
            where = f": {e.filename}" if e.filename is not None else ""
            _print_error(f"{e.strerror or e}{where}")
            return 2
        raise
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())
