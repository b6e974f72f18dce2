"""A factor's effect measured on demand in a background thread, polled by the factor page.

The factor page shows the stored effect of the layer it shows (``factorscope effects``
stores every factor at its peak layer); for any other layer its "Measure" button starts
a job here: the run's model (the page's live analyzer, loaded once per dictionary and
shared with the Analyze page and LIME) removes the factor at its top contexts and at a
random direction of the same norm
(:func:`factorscope.stages.effects.effect_for_page`), and the result is stored in the
database's effect tables, so a reload of the page reads it like the stage's rows.
A ``dcc.Interval`` polls :func:`status` until the job ends.

One worker thread runs the jobs, one at a time, apart from LIME's worker (an effect
takes about half a second; it must not wait for a LIME map of hundreds of samples:
the two share the model's lock pass by pass). A second click on the same factor and
layer while its job runs gets the same job. Jobs live in this process's memory, as
LIME's do. The last results are also kept here by file version, so that a file made
before the effect tables existed (which the app cannot write to) still shows what
was measured until it is replaced.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorscope.dash_app import logic
from factorscope.dash_app.background import Worker
from factorscope.errors import FactorscopeError
from factorscope.warehouse.connection import file_signature

log = logging.getLogger(__name__)

_MAX_JOBS = 64
_MAX_RESULTS = 64


@dataclass
class Job:
    key: tuple
    factor: int
    layer: int
    result: dict[str, Any] | None = None
    error: str | None = None
    finished: bool = False
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None


_jobs: dict[str, Job] = {}
_running: dict[tuple, str] = {}
_results: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def _key(db_path: str | Path, dictionary_id: int | None, factor: int, layer: int) -> tuple:
    return (os.path.realpath(db_path), dictionary_id, int(factor), int(layer))


def start(
    db_path: str | Path, get_analyzer: Any, dictionary_id: int | None, factor: int, layer: int
) -> str:
    """Queue the measurement of (``factor``, ``layer``) of ``dictionary_id`` (the page's;
    None: the active one); a job id (the running one's, when it is already queued).

    ``get_analyzer()`` returns the page's live analyzer (an object with
    ``effect_model()``: :class:`factorscope.analyzer.LiveAnalyzer`).
    """
    key = _key(db_path, dictionary_id, factor, layer)
    with _lock:
        running = _running.get(key)
        if running is not None and running in _jobs and not _jobs[running].finished:
            return running
        job_id = uuid.uuid4().hex
        _jobs[job_id] = Job(key=key, factor=int(factor), layer=int(layer))
        _running[key] = job_id
        while len(_jobs) > _MAX_JOBS:
            _jobs.pop(next(iter(_jobs)))
    _worker.submit(_jobs[job_id], db_path, get_analyzer)
    return job_id


def _run(job: Job, db_path: str | Path, get_analyzer: Any) -> None:
    from factorscope.stages.effects import effect_for_page

    try:
        try:
            analyzer = get_analyzer()
            model = analyzer.effect_model()
        except FactorscopeError as e:
            job.error = f"Measuring an effect needs the run's model, which is not available: {e}"
            return
        except Exception as e:  # model files gone, analyzer missing, a layout refused...
            log.warning("no effect model: %s", e)
            job.error = f"Measuring an effect needs the run's model, which is not available: {e}"
            return
        signature = file_signature(db_path)
        result = effect_for_page(db_path, model, job.factor, job.layer)
        job.result = result
        with _lock:
            # kept by the file version it was measured on (before this write)
            _results[(*job.key, signature)] = result
            while len(_results) > _MAX_RESULTS:
                _results.popitem(last=False)
        logic.PAGE_CACHE.clear(db_path)  # the write changed the file; be explicit
    except FactorscopeError as e:
        job.error = str(e)
    except Exception as e:  # a bug, but the page must still say something
        log.exception("effect job failed")
        job.error = f"Measuring the effect failed: {type(e).__name__}: {e}"
    finally:
        job.seconds = time.monotonic() - job.started
        job.finished = True


_worker = Worker("effects", _run)


def status(job_id: str | None) -> dict[str, Any] | None:
    """``{"finished", "error", "result", "factor", "layer", "seconds"}`` of a job, or
    None if unknown."""
    if not job_id:
        return None
    with _lock:
        job = _jobs.get(job_id)
    if job is None:
        return None
    return {
        "finished": job.finished,
        "error": job.error,
        "result": job.result,
        "factor": job.factor,
        "layer": job.layer,
        "seconds": job.seconds if job.finished else time.monotonic() - job.started,
    }


def recent(
    db_path: str | Path, dictionary_id: int | None, factor: int, layer: int
) -> dict[str, Any] | None:
    """The result measured here for (factor, layer) on this very version of the file
    (a file the app could not store it in keeps its version), or None."""
    key = (*_key(db_path, dictionary_id, factor, layer), file_signature(db_path))
    with _lock:
        return _results.get(key)


def wait(job_id: str, timeout: float = 120.0) -> dict[str, Any] | None:
    """Block until a job ends (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status(job_id)
        if state is None or state["finished"]:
            return state
        time.sleep(0.02)
    return status(job_id)
