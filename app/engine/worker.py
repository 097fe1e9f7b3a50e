"""One worker thread per device, fed by a bounded queue.

A full queue refuses new work ("busy") instead of growing. A GAN request replaces the same
client's GAN slider render that is still waiting, so a dragged slider renders only its newest value
(a waiting CLIP search or kept render is never replaced).
Whenever the waiting line moves, each waiting job whose place changed is told its new `position`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from app.engine.jobs import Job
from app.engine.live import RunCancelled

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} runs may wait; try again when one has finished")
        self.limit = limit


class Worker:
    def __init__(self, run: Callable[[Job], None], max_queue: int, init: Callable[[], None] | None = None,
                 after: Callable[[], None] | None = None) -> None:
        self._run = run
        self._init = init
        self._after = after  # after every job, finished, cancelled or failed: give its memory back
        self._max_queue = max_queue
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._current: Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="noisescope-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> Job | None:
        """The job the worker is running now, if any."""
        with self._cond:
            return self._current

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            for job in self._queue:
                if job.live:
                    job.live.cancel()
            self._queue.clear()
            if self._current and self._current.live:
                self._current.live.cancel()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, job: Job, *, replace_stale: bool = False,
               on_queued: Callable[[int], Any] | None = None) -> int:
        """Queue a job; returns its position (0 = next). Raises QueueFull. `on_queued(position)` runs
        before the worker can take the job, so the client hears `queued` before `started`."""
        with self._cond:
            if replace_stale:
                stale = [j for j in self._queue if j.client_id == job.client_id and j.engine == job.engine
                         and getattr(j.params, "supersedable", True)]
                for j in stale:
                    self._queue.remove(j)
                    j.sink.send({"type": "cancelled", "run_id": j.run_id, "index": 0, "reason": "superseded"})
                self._announce()
            if len(self._queue) >= self._max_queue:
                raise QueueFull(self._max_queue)
            self._queue.append(job)
            job.position = len(self._queue) - 1
            if on_queued is not None:
                on_queued(job.position)
            self._cond.notify()
            return job.position

    def waiting(self, job: Job) -> bool:
        """Whether a newer job of the same page and engine waits behind `job`."""
        with self._cond:
            return any(j.client_id == job.client_id and j.engine == job.engine for j in self._queue)

    def cancel(self, run_id: str) -> bool:
        """Cancel a waiting job at once, or ask the running one to stop at its next step."""
        with self._cond:
            for job in self._queue:
                if job.run_id == run_id:
                    self._queue.remove(job)
                    job.sink.send({"type": "cancelled", "run_id": run_id, "index": 0})
                    self._announce()
                    return True
            if self._current is not None and self._current.run_id == run_id and self._current.live:
                self._current.live.cancel()
                return True
        return False

    def cancel_client(self, client_id: str) -> None:
        """A page went away: drop its waiting jobs and stop its running one."""
        with self._cond:
            for job in [j for j in self._queue if j.client_id == client_id]:
                self._queue.remove(job)
            self._announce()
            if self._current is not None and self._current.client_id == client_id and self._current.live:
                self._current.live.cancel()

    def _announce(self) -> None:
        """Send `position` to each waiting job whose place moved; the caller holds the lock."""
        for i, job in enumerate(self._queue):
            if job.position != i:
                job.position = i
                job.sink.send({"type": "position", "run_id": job.run_id, "position": i})

    def _loop(self) -> None:
        if self._init is not None:
            self._init()
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._current = job
                self._announce()
            try:
                self._run(job)
            except RunCancelled:
                pass
            except Exception:
                log.exception("run %s failed", job.run_id)
                job.sink.send({"type": "error", "code": "internal", "run_id": job.run_id,
                               "message": "the run failed on the server; see the server log"})
            finally:
                with self._cond:
                    self._current = None
                del job  # the job's tensors go with it, before the memory is given back
                if self._after is not None:
                    try:
                        self._after()
                    except Exception:
                        log.exception("releasing memory after a run failed")
