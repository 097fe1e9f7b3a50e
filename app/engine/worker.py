"""One worker thread per device, fed by a bounded queue.

A full queue refuses new work ("busy") instead of growing. A GAN request replaces the same
client's GAN slider render that is still waiting, so a dragged slider renders only its newest value
(a waiting CLIP search or kept render is never replaced).
Whenever the waiting line moves, each waiting job whose place changed is told its new `position`.

With a `Batcher` (app.engine.batcher), diffusion jobs are stepped together instead of one after
another: between two ticks the worker admits waiting diffusion jobs while `room(job, running)`
allows (the studio's rule: a free slot, the page has no run in the batch, the memory for all of
them) and runs one other job whole (a GAN render or search, or a diffusion job that is not
`batchable`: one with LoRAs); then every run in the batch takes one step. A
job run whole calls `job.between_steps()` after each of its own steps, where the batch takes one
step too, so the batch is never held longer than one of its steps. A page's own runs still go one
after another, in order; other pages' runs join at once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from app.engine.batcher import Batcher
from app.engine.jobs import Job
from app.engine.live import RunCancelled

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} runs may wait; try again when one has finished")
        self.limit = limit


class Worker:
    def __init__(self, run: Callable[[Job], None], max_queue: int, init: Callable[[], None] | None = None,
                 after: Callable[[], None] | None = None, batcher: Batcher | None = None,
                 room: Callable[[Job, list[Job]], bool] | None = None,
                 batchable: Callable[[Job], bool] | None = None) -> None:
        """`run(job)` runs a job whole; with `batcher`, the diffusion jobs that are `batchable` (default:
        all) are stepped by it instead, admitted while `room(job, running)` says so (default: always)."""
        self._run = run
        self._batcher = batcher
        self._room = room or (lambda job, running: True)
        self._batchable = batchable or (lambda job: True)
        self._stepping: list[Job] = []  # the jobs in the batch (kept under the lock for other threads)
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
        """The job the worker is running now, if any (the first, when a batch steps several)."""
        with self._cond:
            return self._current or (self._stepping[0] if self._stepping else None)

    def running_jobs(self) -> list[Job]:
        """Every job the worker is running now: the batch's and the one run whole."""
        with self._cond:
            return self._stepping + ([self._current] if self._current is not None else [])

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            for job in self._queue:
                if job.live:
                    job.live.cancel()
                job.ended()
            self._queue.clear()
            for job in self._running_locked():
                if job.live:
                    job.live.cancel()
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
                    j.ended()
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
                    job.ended()
                    job.sink.send({"type": "cancelled", "run_id": run_id, "index": 0})
                    self._announce()
                    return True
            for job in self._running_locked():
                if job.run_id == run_id and job.live:
                    job.live.cancel()
                    return True
        return False

    def cancel_client(self, client_id: str) -> None:
        """A page went away: drop its waiting jobs and stop its running one."""
        with self._cond:
            for job in [j for j in self._queue if j.client_id == client_id]:
                self._queue.remove(job)
                job.ended()
            self._announce()
            for job in self._running_locked():
                if job.client_id == client_id and job.live:
                    job.live.cancel()

    def _running_locked(self) -> list[Job]:
        return self._stepping + ([self._current] if self._current is not None else [])

    def _announce(self) -> None:
        """Send `position` to each waiting job whose place moved; the caller holds the lock."""
        for i, job in enumerate(self._queue):
            if job.position != i:
                job.position = i
                job.sink.send({"type": "position", "run_id": job.run_id, "position": i})

    def _loop(self) -> None:
        if self._init is not None:
            self._init()
        if self._batcher is not None:
            return self._batched_loop(self._batcher)
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._current = job
                self._announce()
            self._whole(job)

    def _whole(self, job: Job) -> None:
        try:
            self._run(job)
        except RunCancelled:
            pass
        except Exception:
            log.exception("run %s failed", job.run_id)
            job.sink.send({"type": "error", "code": "internal", "run_id": job.run_id,
                           "message": "the run failed on the server; see the server log"})
        finally:
            job.ended()
            with self._cond:
                self._current = None
            del job  # the job's tensors go with it, before the memory is given back
            self._release()

    def _release(self) -> None:
        if self._after is not None:
            try:
                self._after()
            except Exception:
                log.exception("releasing memory after a run failed")

    def _batched_loop(self, batcher: Batcher) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stepping and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                joining: list[Job] = []
                whole = None
                # a page's diffusion runs go in order, batched or whole: one waits behind its page's others
                behind = {job.client_id for job in self._stepping}
                for job in list(self._queue):
                    if job.engine != "diffusion":
                        if whole is None:
                            whole = job
                    elif not self._batchable(job):
                        if whole is None and job.client_id not in behind:
                            whole = job
                        behind.add(job.client_id)
                    elif job.client_id not in behind and self._room(job, self._stepping + joining):
                        joining.append(job)
                        behind.add(job.client_id)
                if not self._stepping and not joining and whole is None:
                    joining.append(self._queue[0])  # alone, a job always runs
                for job in joining + ([whole] if whole is not None else []):
                    self._queue.remove(job)
                self._stepping.extend(joining)
                self._current = whole
                self._announce()
            for job in joining:
                if not batcher.add(job):
                    self._leave([job])
            if whole is not None:
                whole.between_steps = lambda: self._tick(batcher)
                self._whole(whole)
            self._tick(batcher)
        batcher.cancel_all()
        with self._cond:
            for job in self._stepping:
                job.ended()
            self._stepping.clear()

    def _tick(self, batcher: Batcher) -> None:
        if batcher.runs:
            self._leave(batcher.tick())

    def _leave(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        for job in jobs:
            job.ended()
        with self._cond:
            gone = {id(job) for job in jobs}
            self._stepping = [job for job in self._stepping if id(job) not in gone]
        del jobs
        self._release()
