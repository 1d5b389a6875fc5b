"""Slow requests of `genlab app` run here, off the request thread, and report how far they are.

A browser posts a request, gets a job id at once, and polls ``GET /api/jobs/ID`` for its progress and its result;
the HTTP server's threads never wait for a model. Each job holds its own inputs (seed, generators, files), so two
tabs drawing at the same time cannot mix their results.
"""

from __future__ import annotations

import sys
import threading
import traceback
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from genlab.errors import USER_ERRORS, file_error_line


@dataclass
class Job:
    id: str
    state: str = "running"  # running | done | error
    done: int = 0
    total: int = 0
    unit: str = ""  # what done/total count ("samples", "images")
    result: dict = field(default_factory=dict)  # JSON-able: what the page shows
    files: dict = field(default_factory=dict)  # name -> (bytes, media type, download name): what it links to
    error: str = ""
    data: dict = field(default_factory=dict)  # what later requests of the same job read (the drawn tensors)

    def progress(self, done: int, total: int, unit: str = "") -> None:
        self.done, self.total, self.unit = done, total, unit or self.unit

    def status(self) -> dict:
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total, "unit": self.unit,
                "result": self.result if self.state == "done" else None, "error": self.error}


def error_message(err: BaseException) -> str:
    """What the page shows for a failed request: a user error's own line; anything else is a bug and says so
    (its traceback goes to the server's terminal)."""
    if isinstance(err, USER_ERRORS):
        return str(err)
    line = file_error_line(err) if isinstance(err, OSError) else None
    if line is not None:
        return line
    traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    return f"internal error (a bug in genlab; the traceback is in the server's terminal): {type(err).__name__}: {err}"


class Jobs:
    """A small pool of worker threads and the recent jobs (the oldest are forgotten past ``keep``)."""

    def __init__(self, workers: int = 2, keep: int = 64):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genlab-app-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, fn, *args) -> Job:
        """Run ``fn(job, *args)`` on a worker; it fills ``job.result`` / ``job.files`` and calls ``job.progress``."""
        job = Job(uuid.uuid4().hex)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)

        def run():
            try:
                fn(job, *args)
                job.state = "done"
            except Exception as err:  # every failure becomes a message in the page; the server keeps serving
                job.error = error_message(err)
                job.state = "error"

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
