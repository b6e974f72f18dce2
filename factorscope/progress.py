"""Progress bars on stderr (transient), so stdout carries only results."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr_console = Console(stderr=True)


def progress_enabled() -> bool:
    return os.environ.get("FACTORSCOPE_PROGRESS", "1") != "0"


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "tokens") -> Iterator[Progress]:
    """A bar showing done/total and a throughput field ``rate`` (``{unit}/s``).

    Callers update with ``bar.update(task, advance=n, rate=...)``; the first task id is
    ``bar.task_ids[0]``. Disabled (but still usable) when stderr is not a terminal and
    FACTORSCOPE_PROGRESS=0, so logs of CI runs stay readable.
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>10,.0f} " + unit + "/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    disable = not progress_enabled()
    with Progress(
        *columns,
        console=stderr_console,
        transient=sys.stderr.isatty(),
        disable=disable,
    ) as bar:
        bar.add_task(description, total=total, rate=0.0)
        yield bar
