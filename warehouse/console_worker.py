"""The SQL console's worker: one child process runs one console query, then exits.

Started by :func:`factorscope.warehouse.safe_sql.run_safe_query` as
``python -P -m factorscope.warehouse.console_worker``. Why a process and not a thread:
DuckDB's own memory limit does not count every allocation (``list_resize``, ``repeat``
and list-valued ``range`` grow past it by gigabytes), and its interrupt is not checked
inside such a function, so neither a timer nor ``max_memory`` can stop them in the
server's own process. A child can be given an OS memory limit (``RLIMIT_DATA``: a
failed allocation becomes DuckDB's "Out of Memory Error" or, at worst, kills only the
child) and can be killed at the timeout, which returns its memory at once.

The protocol is one JSON request on stdin (written by ``safe_sql``, which has already
checked the statement and holds the connection policy) and, on stdout, one JSON header
line followed, when the query succeeded, by the rows as an Arrow IPC stream::

    {"ok": true, "over_bytes": false, "rows": 12}\\n<Arrow IPC stream>
    {"ok": false, "error": "memory" | "interrupted" | "failed" | "open", "message": "..."}\\n

Only ``duckdb`` and ``pyarrow`` are imported (no factorscope module beyond the empty
package ``__init__`` files): start-up is most of a short query's cost.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
from typing import Any

EXIT_MEMORY = 70
"""Exit code of a worker that ran out of memory while writing its answer."""

_BACKSTOP_S = 5
"""Seconds past the timeout after which the worker ends itself (SIGALRM's default
action) should its parent have died without killing it."""


def limit_memory(limit_bytes: int) -> None:
    """Cap the private writable memory (heap, anonymous maps, thread stacks) of this process.

    ``RLIMIT_DATA`` rather than ``RLIMIT_AS``: the address space also counts mapped
    shared libraries and reserved-but-unused ranges, so the same real memory needs a
    higher, machine-dependent ``RLIMIT_AS``. Both stop ``list_resize`` and ``repeat``
    in DuckDB 2.0 with its "Out of Memory Error" (measured; see safe_sql's docstring).
    """
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def _rows_within(batch: Any, budget: int) -> int:
    """How many leading rows of ``batch`` fit in ``budget`` bytes (binary search)."""
    low, high = 0, batch.num_rows
    while low < high:
        mid = (low + high + 1) // 2
        if batch.slice(0, mid).nbytes <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _connect(request: dict[str, Any]) -> Any:
    """A read-only connection with the parent's configuration (external access off, locked).

    Mirrors ``connection._open_read_only``: an attached warehouse's codes folders are
    allowed before external access is switched off and the configuration locked.
    """
    import duckdb

    config = dict(request["config"])
    roots = request.get("roots") or []
    if not roots:
        return duckdb.connect(request["db"], read_only=True, config=config)
    late = ("enable_external_access", "lock_configuration")
    con = duckdb.connect(
        request["db"], read_only=True, config={k: v for k, v in config.items() if k not in late}
    )
    con.execute("SET allowed_directories = ?", [roots])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run(request: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Run the request's query: (the header, the Arrow table or None)."""
    import duckdb
    import pyarrow as pa

    row_cap, byte_cap = int(request["row_cap"]), int(request["byte_cap"])
    interrupted = threading.Event()
    try:
        con = _connect(request)
    except duckdb.Error as e:  # the file changed since the parent checked it
        return {"ok": False, "error": "open", "message": _first_line(e)}, None

    def _interrupt() -> None:
        interrupted.set()
        con.interrupt()

    timer = threading.Timer(float(request["timeout_s"]), _interrupt)
    timer.daemon = True
    timer.start()
    over_bytes = False
    try:
        reader = con.sql(request["sql"]).to_arrow_reader(min(row_cap + 1, 10_000))
        batches: list[pa.RecordBatch] = []
        n = size = 0
        for batch in reader:
            if size + batch.nbytes > byte_cap:
                keep = _rows_within(batch, byte_cap - size)
                batches.append(batch.slice(0, keep))
                n += keep
                over_bytes = True
                break
            batches.append(batch)
            n += batch.num_rows
            size += batch.nbytes
            if n > row_cap:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, row_cap + 1)
    except duckdb.OutOfMemoryException as e:
        return {"ok": False, "error": "memory", "message": _first_line(e)}, None
    except duckdb.Error as e:
        kind = "interrupted" if interrupted.is_set() else "failed"
        return {"ok": False, "error": kind, "message": _first_line(e)}, None
    finally:
        timer.cancel()
    return {"ok": True, "over_bytes": over_bytes, "rows": table.num_rows}, table


def main() -> int:
    """Read the request, lower this process's priority and memory, run, answer, exit.

    A ``MemoryError`` (Python's side of the memory limit) before the answer starts is
    answered as one; after it started, exit code :data:`EXIT_MEMORY` says so instead.
    """
    request = json.loads(sys.stdin.buffer.read())
    limit_memory(int(request["memory_bytes"]))
    signal.alarm(int(float(request["timeout_s"])) + _BACKSTOP_S)
    os.nice(int(request.get("nice", 0)))  # the server's pages come first on a busy machine
    out = sys.stdout.buffer
    try:
        header, table = run(request)
    except MemoryError:
        header, table = {"ok": False, "error": "memory", "message": "MemoryError"}, None
    try:
        out.write(json.dumps(header).encode("utf-8") + b"\n")
        if table is not None:
            import pyarrow as pa

            with pa.ipc.new_stream(out, table.schema) as writer:
                writer.write_table(table)
        out.flush()
    except MemoryError:
        os._exit(EXIT_MEMORY)
    return 0


if __name__ == "__main__":
    # The answer is flushed: leave without the interpreter's teardown, where DuckDB's
    # threads can abort the process ("exception not rethrown") after an allocation failed.
    os._exit(main())
