"""LIME maps computed in a background thread, polled by the page for progress.

LIME re-runs the model hundreds of times, far longer than an HTTP request should
block. A click starts a job on one worker thread (jobs queue: the machine has few
cores and the model is not shared between threads); a ``dcc.Interval`` polls
:func:`status` and the page draws the progress bar and the maps finished so far.
Jobs live in this process's memory, which is right for ``app.run``'s one process.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorscope import saliency
from factorscope.dash_app.background import Worker
from factorscope.errors import FactorscopeError

log = logging.getLogger(__name__)

_MAX_JOBS = 64


@dataclass
class Job:
    targets: list[dict[str, Any]]
    n_samples: int
    done_samples: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def total_samples(self) -> int:
        return max(1, len(self.targets) * self.n_samples)


_jobs: dict[str, Job] = {}
_lock = threading.Lock()


def start(db_path: str | Path, get_analyzer: Any, targets: list[dict], n_samples: int) -> str:
    """Queue LIME maps of ``targets``; a job id.

    A target is a dict with text, word_index, layer, factor and optionally piece (which
    piece of the word α is read at, 0 by default) and sentence_idx, as
    :func:`factorscope.dash_app.logic.lime_targets` makes them.
    """
    job_id = uuid.uuid4().hex
    job = Job(targets=list(targets), n_samples=int(n_samples))
    with _lock:
        _jobs[job_id] = job
        while len(_jobs) > _MAX_JOBS:
            _jobs.pop(next(iter(_jobs)))
    _worker.submit(job, db_path, get_analyzer)
    return job_id


def _run(job: Job, db_path: str | Path, get_analyzer: Any) -> None:
    try:
        try:
            analyzer = get_analyzer()
        except Exception as e:  # no model stored, model files gone, analyzer missing...
            log.warning("no live analyzer for LIME: %s", e)
            job.error = f"LIME needs the run's model, which is not available here: {e}"
            return
        for i, target in enumerate(job.targets):
            base = i * job.n_samples

            def progress(done: int, _total: int, base: int = base) -> None:
                job.done_samples = base + done

            result = saliency.explain_cached(
                db_path,
                analyzer,
                target["text"],
                target["word_index"],
                target["layer"],
                target["factor"],
                piece=int(target.get("piece", 0)),
                n_samples=job.n_samples,
                sentence_idx=target.get("sentence_idx"),
                progress=progress,
            )
            result["word"] = target.get("word")
            job.results.append(result)
            job.done_samples = base + job.n_samples
    except FactorscopeError as e:
        job.error = str(e)
    except Exception as e:  # a bug, but the page must still say something
        log.exception("LIME job failed")
        job.error = f"LIME failed: {type(e).__name__}: {e}"
    finally:
        job.finished = True


_worker = Worker("lime", _run)


def status(job_id: str | None) -> dict[str, Any] | None:
    """``{"done", "total", "results", "error", "finished"}`` of a job, or None if unknown."""
    if not job_id:
        return None
    with _lock:
        job = _jobs.get(job_id)
    if job is None:
        return None
    return {
        "done": job.done_samples,
        "total": job.total_samples,
        "results": list(job.results),
        "error": job.error,
        "finished": job.finished,
        "n_targets": len(job.targets),
    }


def wait(job_id: str, timeout: float = 600.0) -> dict[str, Any] | None:
    """Block until a job ends (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status(job_id)
        if state is None or state["finished"]:
            return state
        time.sleep(0.05)
    return status(job_id)
