"""The summary definitions: one self-describing SQL file per summary.

A summary is ``summary_sql/NN_<name>.sql``; ``NN`` orders the merges (a summary read
by another, like levels by auto labels, comes first). The file is split into sections
by marker lines (``-- @<section>``, optionally followed by a comment on that line),
each section holding DuckDB statements:

- ``-- @table``: ``CREATE TABLE IF NOT EXISTS <table> (...)``, the summary's table.
  Summary tables are derived data, so they are created from here when a database is
  migrated (not in a numbered migration), and recreated empty when the file changes
  their columns (the next refresh refills them).
- ``-- @partial`` (optional): from the ``codes`` and ``tokens`` one shard sees, the
  temp table ``_p_<name>``. A summary without one is derived from merged summaries.
- ``-- @merge`` (optional): from the partials of every shard, the table's rows. A
  summary without partial and merge is filled in Python (``summaries.PYTHON_FILLED``).
- ``-- @view`` (optional): the public view(s) over the table.

This module only reads and checks the files: it knows the layout, not what any
summary means. Text before the first marker is the summary's description.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from factorscope.errors import WarehouseError

SECTIONS = ("table", "partial", "merge", "view")
_FILE_NAME = re.compile(r"^(\d{2})_([a-z][a-z0-9_]*)\.sql$")
_MARKER = re.compile(r"^-- @([a-z]+)\b[^\n]*$", flags=re.M)
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS\s+([a-z_][a-z0-9_]*)", flags=re.I)


@dataclass(frozen=True)
class SummaryFile:
    """One summary's SQL, split into its sections (empty string: no such section)."""

    order: int
    name: str
    table: str
    table_sql: str
    partial: str = ""
    merge: str = ""
    view: str = ""

    @property
    def partial_table(self) -> str:
        """The temp table the partial creates (fixed by the naming convention)."""
        return f"_p_{self.name}"


def parse(file_name: str, text: str) -> SummaryFile:
    """Split one summary file into its sections; a malformed file is a WarehouseError."""
    match = _FILE_NAME.match(file_name)
    if not match:
        raise WarehouseError(f"summary file {file_name!r} is not named NN_<name>.sql")
    order, name = int(match.group(1)), match.group(2)
    markers = list(_MARKER.finditer(text))
    sections: dict[str, str] = {}
    for i, marker in enumerate(markers):
        section = marker.group(1)
        if section not in SECTIONS or section in sections:
            raise WarehouseError(f"{file_name}: unknown or repeated section @{section}")
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        sections[section] = text[marker.end() : end].strip()
    table = _TABLE.search(sections.get("table", ""))
    if not table:
        raise WarehouseError(f"{file_name}: the @table section must CREATE TABLE IF NOT EXISTS")
    summary = SummaryFile(
        order=order,
        name=name,
        table=table.group(1),
        table_sql=sections["table"],
        partial=sections.get("partial", ""),
        merge=sections.get("merge", ""),
        view=sections.get("view", ""),
    )
    if summary.partial and summary.partial_table not in summary.partial:
        raise WarehouseError(
            f"{file_name}: the @partial section must create {summary.partial_table}"
        )
    if summary.partial and not summary.merge:
        raise WarehouseError(f"{file_name}: a @partial needs a @merge")
    return summary


def read_folder(folder: Traversable) -> tuple[SummaryFile, ...]:
    """Every ``NN_<name>.sql`` summary in ``folder``, in merge order."""
    found = [
        parse(entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if _FILE_NAME.match(entry.name)
    ]
    found.sort(key=lambda s: (s.order, s.name))
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise WarehouseError(f"two summary files share a name: {sorted(names)}")
    return tuple(found)


def sql_folder() -> Traversable:
    return resources.files("factorscope.warehouse").joinpath("summary_sql")


@functools.cache
def summaries() -> tuple[SummaryFile, ...]:
    """The summaries shipped with the package, in merge order."""
    return read_folder(sql_folder())


def macro_sql(name: str) -> str:
    """A helper script of the summaries that is not a summary (e.g. ``context``)."""
    return sql_folder().joinpath(f"{name}.sql").read_text("utf-8")
