"""Named crash points: a test hook that kills this process at a chosen step.

The kill tests (tests/test_crash.py) need a ``kill -9`` that lands at a named step
of a stage, deterministically, not after a guessed delay. Each step of a stage calls
:func:`crashpoint` with its name; with the environment variable
``FACTORSCOPE_CRASH_AT`` unset (always, outside tests) the call does nothing.

``FACTORSCOPE_CRASH_AT="encode.chunk:3"`` makes the process send itself ``SIGKILL``
the 3rd time it reaches ``crashpoint("encode.chunk")`` (``:N`` defaults to 1);
several points may be given, comma-separated. The kill is a real ``SIGKILL``: no
``finally``, no ``atexit``, no flush, exactly what ``kill -9`` does.

The points (each documented where it is called):

==========================  ========================================================
``ingest.chunk``            after an ingest chunk is committed in ``<db>.wip``
``ingest.finished``         after the run is marked ingested, before publishing
``learn.fitted``            after the fit, before the dictionary is stored
``learn.saved``             after the dictionary is stored in ``<db>.wip``
``encode.chunk``            after an encode chunk is committed in ``<db>.wip``
``encode.finished``         after the codes are sorted and the status set
``encode.summaries``        inside the summary refresh (before it commits)
``shard.chunk``             after a shard's chunk files are written
``shard.finish``            while the shard's final files are written (no manifest)
``merge.built``             after the merged warehouse is built in ``<db>.wip``
``publish.carried``         inside a publish: app tables carried, file not replaced
``publish.replace``         inside a publish: old WAL set aside, file not replaced
``merge_ingest.shard``      after a shard's rows are committed in merge-ingest's
                            ``<db>.wip``
``ray.chunk``               in the Ray driver, after an actor reports a chunk's files
                            written (``encode --engine ray``)
``publish.copy``            after a staging copy is written, before it is verified
``publish.checkpoint``      before a publish's first checkpoint of ``<db>.wip``
``effects.chunk``           after a chunk of factors' effects is committed in
                            ``<db>.wip`` (``factorscope effects``)
==========================  ========================================================

The same points take a second hook, ``FACTORSCOPE_DISK_FULL_AT="encode.chunk:2"``: the
N-th pass raises ``OSError(ENOSPC)`` instead, as a full disk would there (the tests of
docs/CONTRACTS.md, "Damaged files and a full disk", use it where no small filesystem can
be mounted; :func:`disk_fault` is the hook for a point that knows the file it writes).
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "FACTORSCOPE_CRASH_AT"
DISK_FULL_ENV = "FACTORSCOPE_DISK_FULL_AT"

_passes: dict[str, int] = {}
_fault_passes: dict[tuple[str, str], int] = {}


def reset() -> None:
    """Forget the passes counted so far (tests running several commands in one process)."""
    _passes.clear()
    _fault_passes.clear()


def disk_fault(name: str, path: str | os.PathLike | None = None) -> None:
    """Raise ``OSError(ENOSPC)`` on the N-th pass of ``name`` if ``FACTORSCOPE_DISK_FULL_AT``
    asks (a no-op when it is unset)."""
    spec = os.environ.get(DISK_FULL_ENV)
    if not spec:
        return
    wanted = _targets(spec).get(name)
    if wanted is None:
        return
    key = (spec, name)
    _fault_passes[key] = _fault_passes.get(key, 0) + 1
    if _fault_passes[key] == wanted:
        filename = None if path is None else os.fspath(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)


def _targets(spec: str) -> dict[str, int]:
    targets: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, count = part.partition(":")
        targets[name.strip()] = int(count) if count.strip() else 1
    return targets


def crashpoint(name: str) -> None:
    """SIGKILL this process on the N-th pass of ``name`` if ``FACTORSCOPE_CRASH_AT`` asks
    (or raise a full disk's error if ``FACTORSCOPE_DISK_FULL_AT`` does)."""
    disk_fault(name)
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted = _targets(spec).get(name)
    if wanted is None:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == wanted:
        os.kill(os.getpid(), signal.SIGKILL)
