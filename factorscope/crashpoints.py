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
==========================  ========================================================
"""

from __future__ import annotations

import os
import signal

ENV = "FACTORSCOPE_CRASH_AT"

_passes: dict[str, int] = {}


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
    """SIGKILL this process on the N-th pass of ``name`` if ``FACTORSCOPE_CRASH_AT`` asks."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted = _targets(spec).get(name)
    if wanted is None:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == wanted:
        os.kill(os.getpid(), signal.SIGKILL)
