"""One named background worker thread with its queue, started on first use.

LIME maps (:mod:`.lime_jobs`) and on-demand effects (:mod:`.effect_jobs`) each run their
jobs one at a time on a worker of their own, so a quick effect never waits behind a
long LIME map. The thread is a daemon: a server told to stop (Ctrl+C, SIGTERM) exits at
once instead of waiting for a result nobody will read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Worker:
    """Calls ``run(*work)`` for each :meth:`submit`, in order, on one thread."""

    def __init__(self, name: str, run: Callable[..., None]) -> None:
        self.name = name
        self._run = run
        self._queue: queue.SimpleQueue | None = None
        self._lock = threading.Lock()

    def submit(self, *work: Any) -> None:
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                threading.Thread(
                    target=self._loop, args=(self._queue,), name=self.name, daemon=True
                ).start()
            self._queue.put(work)

    def _loop(self, jobs: queue.SimpleQueue) -> None:
        while True:
            self._run(*jobs.get())
