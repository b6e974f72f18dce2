"""The `factorscope` command line: one thin command per library function.

Errors the user can fix (``FactorscopeError``) become one line on stderr and exit code
2; ``FACTORSCOPE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from factorscope.cli import (  # noqa: F401  (importing registers the commands)
    commands_ingest,
    commands_pipeline,
    commands_report,
    commands_status,
    commands_warehouse,
)
from factorscope.cli.app import app
from factorscope.errors import FactorscopeError
from factorscope.progress import stderr_console

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("FACTORSCOPE_DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = app(args=argv, standalone_mode=False)
    except FactorscopeError as e:
        if debug:
            raise
        stderr_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except click.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        stderr_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        stderr_console.print(
            "interrupted: finished chunks are kept; run the same command to resume"
        )
        return 130
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())
