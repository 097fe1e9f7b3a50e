"""The engine's front door: what the websocket route calls. Holds the worker, the step history,
the runners and an index of recent jobs (for update / rewind / cancel by run id)."""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from app.engine.history import StepHistory
from app.engine.jobs import Job, Sink
from app.engine.limits import LimitError, check_diffusion, check_gan, check_update
from app.engine.live import LiveState
from app.engine.worker import Worker
from app.measured import studio_figures
from app.params import DiffusionParams, GanParams, LiveParams, LiveUpdate
from app.registry import Models
from app.settings import Settings
from app.store.gallery import Gallery

KEEP_JOBS = 256


class StudioError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Studio:
    def __init__(self, settings: Settings, models: Models, gallery: Gallery) -> None:
        from app.engine.diffusion_runner import DiffusionRunner

        self.settings = settings
        self.models = models
        self.gallery = gallery
        self.history = StepHistory(settings.history_bytes)
        init = self._thread_init if models.device.type == "cpu" and settings.cpu_threads else None
        self.encoder = ThreadPoolExecutor(1, thread_name_prefix="noisescope-encoder", initializer=init)
        self.uploads = settings.data_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        ids = models.public_names()
        self.diffusion = DiffusionRunner(models.diffusion, self.history, gallery, self.encoder, self.uploads, ids)
        self.gan = None
        if models.gan is not None:
            from app.engine.gan_runner import GanRunner

            self.gan = GanRunner(models.gan, gallery, self.encoder, ids, waiting=lambda job: self.worker.waiting(job))
        self.worker = Worker(self._dispatch, settings.queue_size, init=init)
        self.measured = studio_figures(settings.evaluation, models.names)
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.encoder.shutdown(wait=False, cancel_futures=True)

    def _thread_init(self) -> None:
        # OpenMP's team size is per calling thread: set it where the work runs.
        torch.set_num_threads(self.settings.cpu_threads)

    def _dispatch(self, job: Job) -> None:
        if job.engine == "gan":
            assert self.gan is not None
            self.gan.run(job)
        else:
            self.diffusion.run(job)

    def _remember(self, job: Job) -> None:
        self._jobs[job.run_id] = job
        while len(self._jobs) > KEEP_JOBS:
            self._jobs.popitem(last=False)

    def _job(self, run_id: str) -> Job:
        job = self._jobs.get(run_id)
        if job is None:
            raise StudioError("not_found", f"no run {run_id!r}")
        return job

    def _queue(self, job: Job, *, replace_stale: bool = False) -> str:
        from app.engine.worker import QueueFull

        try:
            position = self.worker.submit(job, replace_stale=replace_stale)
        except QueueFull as exc:
            raise StudioError("busy", str(exc)) from None
        self._remember(job)
        job.sink.send({"type": "queued", "run_id": job.run_id, "engine": job.engine, "position": position,
                       "parent": job.parent, "from_step": job.from_step})
        return job.run_id

    def generate(self, params: DiffusionParams, sink: Sink, client_id: str) -> str:
        try:
            check_diffusion(params, self.settings)
        except LimitError as exc:
            raise StudioError("too_large", str(exc)) from None
        live = LiveState(params.live())
        return self._queue(Job("diffusion", params, sink, client_id, live=live))

    def generate_gan(self, params: GanParams, sink: Sink, client_id: str) -> str:
        if self.gan is None:
            raise StudioError("no_model", "no GAN model loaded")
        try:
            check_gan(params, self.settings)
        except LimitError as exc:
            raise StudioError("too_large", str(exc)) from None
        problem = self.gan.problem(params)  # what this generator cannot serve, refused before queueing
        if problem:
            raise StudioError("bad_request", problem)
        live = LiveState(LiveParams())
        return self._queue(Job("gan", params, sink, client_id, live=live), replace_stale=True)

    def update(self, run_id: str, change: LiveUpdate) -> LiveParams:
        job = self._job(run_id)
        if job.live is None or job.engine != "diffusion":
            raise StudioError("bad_request", "only diffusion runs take live updates")
        try:
            check_update(job.live.params(), change, self.settings, getattr(job.params, "batch", 1))
        except LimitError as exc:
            raise StudioError("too_large", str(exc)) from None
        try:
            return job.live.update(change)
        except ValueError:
            raise StudioError("bad_request", "that update is not valid for this run") from None

    def rewind(self, run_id: str, step: int, sink: Sink, client_id: str, change: LiveUpdate | None = None) -> str:
        """Fork: a new run continues from `step` of `run_id` with that run's current live params,
        changed by `change` for the fork only."""
        parent = self._job(run_id)
        if parent.engine != "diffusion" or parent.live is None:
            raise StudioError("bad_request", "only diffusion runs can be rewound")
        params: DiffusionParams = parent.params  # type: ignore[assignment]
        if step >= params.steps:
            raise StudioError("bad_request", f"step must be below {params.steps}")
        if step > 0 and self.history.step(run_id, step) is None:
            raise StudioError("not_found", f"step {step} of run {run_id} is not kept (not reached yet, or evicted)")
        current = parent.live.params()
        if change is not None:
            try:
                check_update(current, change, self.settings, params.batch)
            except LimitError as exc:
                raise StudioError("too_large", str(exc)) from None
            current = current.model_copy(update=change.model_dump(exclude_none=True))
        params = params.model_copy(update=current.model_dump())
        live = LiveState(current)
        return self._queue(Job("diffusion", params, sink, client_id, live=live, parent=run_id, from_step=step))

    def cancel(self, run_id: str) -> None:
        if not self.worker.cancel(run_id):
            raise StudioError("not_found", f"run {run_id!r} is not queued or running")

    def preview(self, run_id: str, step: int, sink: Sink) -> None:
        if self._job(run_id).engine != "diffusion" or not self.diffusion.timeline_preview(sink, run_id, step):
            raise StudioError("not_found", f"step {step} of run {run_id} is not kept")

    def disconnect(self, client_id: str) -> None:
        self.worker.cancel_client(client_id)

    @property
    def upload_dir(self) -> Path:
        return self.uploads
