"""The engine's front door: what the websocket route calls. Holds the worker, the step history,
the runners and an index of recent jobs (for update / rewind / cancel by run id).

Each job is queued with the runner (the loaded model) it was checked against, pinned in the job
(app.engine.jobs.ModelPin): a model swapped in while runs wait or run (`use_diffusion`, `use_gan`:
app.engine.switcher) serves the runs queued after the swap, and the old one finishes its own."""

from __future__ import annotations

import dataclasses
import hmac
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from app.diffusion.denoiser import unet_batch
from app.diffusion.generate import family_of
from app.engine import budget
from app.engine.batcher import Batcher
from app.engine.calibrate import available_memory, calibrate
from app.engine.history import StepHistory
from app.engine.jobs import Job, ModelPin, Sink
from app.engine.limits import LimitError, check_diffusion, check_gan, check_live, check_update
from app.engine.live import LiveState
from app.engine.memory import freeze_loaded, release_memory
from app.engine.worker import Worker
from app.measured import studio_figures
from app.params import (
    MAX_UPSCALE_SOURCE,
    UPSCALE_FACTOR,
    DiffusionParams,
    GanParams,
    LiveParams,
    LiveUpdate,
    ScheduleEntry,
    UpscaleParams,
    apply_change,
    dump_schedule,
    gallery_source,
    live_diff,
    skip_steps_for,
)
from app.registry import Models, public_names
from app.settings import Settings
from app.store.gallery import Gallery

if TYPE_CHECKING:
    from app.engine.diffusion_runner import DiffusionRunner

KEEP_JOBS = 256
UPSCALE_PROMPT = "emoji"  # the diffusion upscaler's text for a picture with no prompt (an upload, a GAN image)


class StudioError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fork_schedule(start: LiveParams, inherited: list[ScheduleEntry], step: int, fork: LiveParams) -> list[dict]:
    """A fork's replay schedule: the parent's entries before `step`, then whatever the fork's values
    at `step` change from the parent's values there."""
    at_step = start
    for entry in inherited:
        at_step = apply_change(at_step, entry.changes)
    diff = live_diff(at_step, fork)
    return dump_schedule(inherited) + ([{"step": step, "changes": diff}] if diff else [])


class Studio:
    def __init__(self, settings: Settings, models: Models, gallery: Gallery) -> None:
        from app.engine.diffusion_runner import DiffusionRunner

        self.settings = settings
        self.models = models
        self.gallery = gallery
        self._swap = threading.RLock()  # a model swap, against the checks and pinning of a new job
        self.history = StepHistory(settings.history_bytes)
        init = self._thread_init if models.device.type == "cpu" and settings.cpu_threads else None
        self.encoder = ThreadPoolExecutor(1, thread_name_prefix="noisescope-encoder", initializer=init)
        self.uploads = settings.data_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        ids = models.public_names()
        self.diffusion = DiffusionRunner(models.diffusion, self.history, gallery, self.encoder, self.uploads, ids,
                                         models.calibration or calibrate(models.diffusion,
                                                                         cpu_threads=settings.cpu_threads))
        self.upscaler = None  # the diffusion upscaler: its runs are diffusion runs with params.upscale
        if getattr(models, "upscaler_diffusion", None) is not None:
            self.upscaler = DiffusionRunner(models.upscaler_diffusion, self.history, gallery, self.encoder,
                                            self.uploads, ids, calibrate(models.upscaler_diffusion,
                                                                         cpu_threads=settings.cpu_threads))
        self.gan_upscaler = None
        if getattr(models, "upscaler_gan", None) is not None:
            from app.engine.upscale_runner import GanUpscaleRunner

            self.gan_upscaler = GanUpscaleRunner(models.upscaler_gan, gallery, self.diffusion.source_path, ids)
        self.gan = None
        if models.gan is not None:
            from app.engine.gan_runner import GanRunner

            self.gan = GanRunner(models.gan, gallery, self.encoder, ids, waiting=self._waiting)
        batcher = None
        if settings.batch_runs > 1:
            batcher = Batcher(lambda job: self._pinned(job).begin(job), unet_batch, settings.batch_rows)
        self.batcher = batcher
        self.worker = Worker(self._dispatch, settings.queue_size, init=init,
                             after=lambda: release_memory(self.models.device), batcher=batcher, room=self._room,
                             batchable=lambda job: self._pinned(job).batchable(job))
        self.measured = studio_figures(settings.evaluation, models.names)
        self.sizes = family_of(models.diffusion).sizes(settings.max_pixels)  # what /api/info offers
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pages: dict[str, Sink] = {}  # every connected page, for events that concern them all
        self._pages_lock = threading.Lock()

    @property
    def calibration(self) -> budget.Calibration:
        """The text-to-image model's costs on this device (its runner's)."""
        return self.diffusion.calibration

    def start(self) -> None:
        freeze_loaded()  # so the collection after each job (release_memory) skips the models
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.encoder.shutdown(wait=False, cancel_futures=True)

    def _thread_init(self) -> None:
        # OpenMP's team size is per calling thread: set it where the work runs.
        torch.set_num_threads(self.settings.cpu_threads)

    def _waiting(self, job: Job) -> bool:
        return self.worker.waiting(job)

    def _dispatch(self, job: Job) -> None:
        self._pinned(job).run(job)

    def _pinned(self, job: Job):
        """The runner a job was queued for (the current one for a job queued without a pin); None
        when the job has ended and its model was swapped out since."""
        if job.model is not None:
            return job.model.get()
        if job.engine == "gan":
            return self.gan
        if job.engine == "upscale":
            return self.gan_upscaler
        return self._runner(job.params)  # type: ignore[arg-type]

    def use_diffusion(self, diffusion, name: str, calibration: budget.Calibration) -> None:
        """Make `diffusion` the text-to-image model of every run queued from now on (runs queued
        before keep theirs). Everything derived from the model is built first, then swapped at once."""
        from app.engine.diffusion_runner import DiffusionRunner

        names = {**self.models.names, "diffusion": name}
        runner = DiffusionRunner(diffusion, self.history, self.gallery, self.encoder, self.uploads,
                                 public_names(names), calibration)
        sizes = family_of(diffusion).sizes(self.settings.max_pixels)
        measured = studio_figures(self.settings.evaluation, names)
        models = dataclasses.replace(self.models, diffusion=diffusion, names=names, calibration=calibration,
                                     demo=self.models.demo - {"diffusion"})
        with self._swap:
            self.models, self.diffusion, self.sizes, self.measured = models, runner, sizes, measured
        self.broadcast({"type": "models_changed", "engine": "diffusion", "name": models.public_names().get("diffusion")})

    def use_gan(self, gan, name: str) -> None:
        """Make `gan` the generator of every GAN job queued from now on (as use_diffusion)."""
        from app.engine.gan_runner import GanRunner

        names = {**self.models.names, "gan": name}
        runner = GanRunner(gan, self.gallery, self.encoder, public_names(names), waiting=self._waiting)
        measured = studio_figures(self.settings.evaluation, names)
        models = dataclasses.replace(self.models, gan=gan, names=names)
        with self._swap:
            self.models, self.gan, self.measured = models, runner, measured
        self.broadcast({"type": "models_changed", "engine": "gan", "name": models.public_names().get("gan")})

    def _runner(self, params: DiffusionParams):
        """The diffusion runner of a run: the upscaler's for upscale runs, else the text-to-image model's."""
        if params.upscale:
            if self.upscaler is None:
                raise StudioError("no_model", "no diffusion upscaler loaded (--upscaler-diffusion)")
            return self.upscaler
        return self.diffusion

    def _room(self, job: Job, running: list[Job]) -> bool:
        """Whether a waiting diffusion job may join the batch now: a free slot, no run of its page in
        the batch (a page's runs go in order), and memory for every peak at once. The memory with
        none of the batch running is taken as what is available now plus their estimated peaks."""
        if not running:
            return True
        if len(running) >= self.settings.batch_runs or any(j.client_id == job.client_id for j in running):
            return False
        available = available_memory(self.models.device)
        if available is None:
            return True
        held = sum(j.peak_bytes for j in running)
        return held + job.peak_bytes <= (available + held) * self.settings.memory_fraction

    def _remember(self, job: Job) -> None:
        self._jobs[job.run_id] = job
        while len(self._jobs) > KEEP_JOBS:
            self._jobs.popitem(last=False)

    def _job(self, run_id: str, owner: str) -> Job:
        """The run `run_id` if `owner` started it. Anyone else's run is answered exactly like an
        unknown one, so run ids published in the gallery are no handle on other pages' runs."""
        job = self._jobs.get(run_id)
        if job is None or not hmac.compare_digest(job.owner, owner):
            raise StudioError("not_found", f"no run {run_id!r}")
        return job

    def _queue(self, job: Job, runner, *, replace_stale: bool = False) -> str:
        """Queue `job` to run on `runner` (pinned: app.engine.jobs.ModelPin)."""
        from app.engine.worker import QueueFull

        job.model = ModelPin(runner)

        def queued(position: int) -> None:
            ev = {"type": "queued", "run_id": job.run_id, "engine": job.engine, "position": position,
                  "parent": job.parent, "from_step": job.from_step}
            job.sink.send({**ev, "ref": job.ref} if job.ref is not None else ev)

        self._remember(job)
        try:
            self.worker.submit(job, replace_stale=replace_stale, on_queued=queued)
        except QueueFull as exc:
            self._jobs.pop(job.run_id, None)
            raise StudioError("busy", str(exc)) from None
        return job.run_id

    def estimate(self, params: DiffusionParams, live: LiveParams | None = None, first: int | None = None,
                 runner: DiffusionRunner | None = None) -> budget.Estimate:
        """The budget's estimate of sampling `params` from step `first` with `live` on this device, on
        `runner`'s model (default: the runner a new run of `params` would get)."""
        runner = runner or self._runner(params)
        return budget.estimate(params, runner.calibration, has_clip=runner.models.clip is not None,
                               live=live, first=first, history_bytes=self.settings.history_bytes)

    def costliest(self, params: DiffusionParams, states: list[LiveParams], first: int | None = None,
                  runner: DiffusionRunner | None = None) -> budget.Estimate:
        """The estimate of the most expensive of the live states a run goes through (its starting
        values, then after each scheduled change), as if held for the whole run: an upper bound."""
        return max((self.estimate(params, s, first, runner) for s in states), key=lambda e: (e.seconds, e.peak_bytes))

    def _within_budget(self, params: DiffusionParams, states: list[LiveParams], first: int | None = None,
                       was: budget.Estimate | None = None, runner: DiffusionRunner | None = None) -> float:
        """Refuse (too_large) a job over the compute budget or the available memory; returns its
        estimated peak bytes. With `was` (the cost before a live change), only a change that raises
        the cost is checked. The run on the worker now gives its memory back before a later job (or
        a change to itself) needs it, so its estimated peak counts as available (the same for every
        run of a batch: a job that fits alone waits until the batch has memory for it). `runner`: the
        model the job runs on (default: the one a new run of `params` gets), whose calibration counts."""
        est, live = max(((self.estimate(params, s, first, runner), s) for s in states),
                        key=lambda pair: (pair[0].seconds, pair[0].peak_bytes))
        if was is not None and est.seconds <= was.seconds and est.peak_bytes <= was.peak_bytes:
            return est.peak_bytes
        available = available_memory(self.models.device)
        if available is not None:
            available += sum(job.peak_bytes for job in self.worker.running_jobs())
        try:
            budget.check(est, params, budget_s=self.settings.job_seconds(self.models.device.type),
                         available_bytes=None if available is None else available * self.settings.memory_fraction,
                         live=live)
        except budget.BudgetError as exc:
            raise StudioError("too_large", str(exc)) from None
        return est.peak_bytes

    def generate(self, params: DiffusionParams, sink: Sink, client_id: str, owner: str,
                 ref: str | None = None) -> str:
        with self._swap:  # checked against, and pinned to, one model
            return self._generate(params, sink, client_id, owner, ref)

    def _generate(self, params: DiffusionParams, sink: Sink, client_id: str, owner: str, ref: str | None) -> str:
        try:
            check_diffusion(params, self.settings)
        except LimitError as exc:
            raise StudioError("too_large", str(exc)) from None
        if params.upscale:
            self._check_upscale(params)
        for name in ("width", "height") if not params.upscale else ():
            if problem := self.sizes.problem(name, getattr(params, name)):
                raise StudioError("bad_request", f"params.{name}: {problem}")
        source = gallery_source(params.init_image)
        if source is not None and self.gallery.get(source) is None:
            raise StudioError("not_found", f"params.init_image: there is no gallery image {source}")
        if params.upscale and source is None and not (self.uploads / f"{params.init_image}.png").is_file():
            raise StudioError("not_found", "params.init_image: no uploaded image has that id; upload it again")
        if params.mask_image is not None:  # an inpainting run: both uploads must be there before it queues
            for name in ("mask_image",) if source is not None else ("init_image", "mask_image"):
                if not (self.uploads / f"{getattr(params, name)}.png").is_file():
                    raise StudioError("not_found", f"params.{name}: no uploaded image has that id (uploads expire "
                                                   f"after {self.settings.upload_max_age_hours:g} hours); upload it again")
        params = self._with_loras(params)
        live = LiveState(params.live(), params.schedule)
        self._check_preview_decoder(live.states_with(LiveUpdate()))
        runner = self._runner(params)
        peak = self._within_budget(params, live.states_with(LiveUpdate()), runner=runner)
        return self._queue(Job("diffusion", params, sink, client_id, owner, live=live, ref=ref, peak_bytes=peak),
                           runner)

    def _with_loras(self, params: DiffusionParams) -> DiffusionParams:
        """`params` with `lora_weights` naming every LoRA the run applies at its starting weight (the
        prompt's <lora:name:weight> tags included), each loaded and fitting this model: what the
        gallery records, so a replay applies exactly these."""
        from app.diffusion.lora import LoraError

        weights = params.run_loras()
        if not weights:
            return params
        library = self.models.diffusion.loras
        if library is None:
            raise StudioError("bad_request", "this server has no LoRAs: start it with --lora FILE or --lora-dir "
                                             f"FOLDER to apply {next(iter(weights))!r}")
        try:
            library.resolve(weights)
        except LoraError as exc:
            raise StudioError("bad_request", f"params.lora_weights: {exc}") from None
        return params if weights == params.lora_weights else params.model_copy(update={"lora_weights": weights})

    def _check_preview_decoder(self, states: list[LiveParams]) -> None:
        if self.models.diffusion.preview_decoder is None and any(s.preview_decoder == "tiny" for s in states):
            raise StudioError("bad_request", "preview_decoder: 'tiny' needs a tiny decoder, and this server has none "
                                             "(start it with --preview-decoder); choose 'linear' or 'full'")

    @staticmethod
    def _check_run_loras(params: DiffusionParams, change: LiveUpdate | None) -> None:
        """A live change may move the weights of the LoRAs the run started with, and no others."""
        unknown = set((change.lora_weights if change is not None else None) or ()) - set(params.lora_weights)
        if unknown:
            have = ", ".join(params.lora_weights) or "none"
            raise StudioError("bad_request", f"lora_weights: this run has no LoRA {sorted(unknown)[0]!r} (its LoRAs: "
                                             f"{have}); a LoRA is added by a new run, not a live change")

    def _check_upscale(self, params: DiffusionParams) -> None:
        self._runner(params)  # no_model when there is no diffusion upscaler
        side = MAX_UPSCALE_SOURCE * UPSCALE_FACTOR
        if params.width > side or params.height > side or params.batch != 1:
            raise StudioError("too_large", f"an upscale run makes one picture of at most {side}x{side} "
                                           f"(a {MAX_UPSCALE_SOURCE} px source)")
        if params.width % 16 or params.height % 16:
            raise StudioError("bad_request", "an upscale run's width and height must be multiples of 16")

    def upscale(self, params: UpscaleParams, sink: Sink, client_id: str, owner: str,
                ref: str | None = None) -> list[str]:
        """Queue the GAN upscaler, the diffusion upscaler, or both (side by side) on one picture; returns
        the run ids. The source must be a gallery image or an upload of at most MAX_UPSCALE_SOURCE px a side."""
        wanted = ("gan", "diffusion") if params.upscaler == "both" else (params.upscaler,)
        if "gan" in wanted and self.gan_upscaler is None:
            raise StudioError("no_model", "no GAN upscaler loaded (--upscaler-gan)")
        if "diffusion" in wanted and self.upscaler is None:
            raise StudioError("no_model", "no diffusion upscaler loaded (--upscaler-diffusion)")
        path = self.diffusion.source_path(params.source)
        gallery_id = gallery_source(params.source)
        record = self.gallery.get(gallery_id) if gallery_id else None
        if path is None or not path.is_file() or (gallery_id and record is None):
            raise StudioError("not_found", "params.source: no gallery image or upload has that id")
        from PIL import Image

        with Image.open(path) as opened:
            w, h = opened.size
        if max(w, h) > MAX_UPSCALE_SOURCE:
            raise StudioError("too_large", f"params.source: the picture is {w}x{h}; the upscalers take at most "
                                           f"{MAX_UPSCALE_SOURCE}x{MAX_UPSCALE_SOURCE}")
        runs = []
        if "gan" in wanted:
            runs.append(self._queue(Job("upscale", params, sink, client_id, owner, live=LiveState(LiveParams()),
                                        ref=ref), self.gan_upscaler))
        if "diffusion" in wanted:
            prompt = params.prompt or str((record.params if record else {}).get("prompt") or "") or UPSCALE_PROMPT
            side = (-(-w // 4) * 4 * UPSCALE_FACTOR, -(-h // 4) * 4 * UPSCALE_FACTOR)  # latent cells in whole UNet blocks
            try:
                run = DiffusionParams(prompt=prompt, seed=params.seed, steps=params.steps, sampler=params.sampler,
                                      cfg_scale=params.cfg_scale, width=side[0], height=side[1],
                                      init_image=params.source, upscale=True, noise_level=params.noise_level,
                                      skip_steps=skip_steps_for(params.steps, params.strength),
                                      clip_guidance_scale=0.0)
            except ValueError as exc:
                raise StudioError("bad_request", f"params.prompt: {exc}") from None
            runs.append(self.generate(run, sink, client_id, owner, ref=ref))
        return runs

    def generate_gan(self, params: GanParams, sink: Sink, client_id: str, owner: str,
                     ref: str | None = None) -> str:
        with self._swap:
            return self._generate_gan(params, sink, client_id, owner, ref)

    def _generate_gan(self, params: GanParams, sink: Sink, client_id: str, owner: str, ref: str | None) -> str:
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
        return self._queue(Job("gan", params, sink, client_id, owner, live=live, ref=ref), self.gan, replace_stale=True)

    def update(self, run_id: str, change: LiveUpdate, owner: str) -> LiveParams:
        job = self._job(run_id, owner)
        if job.live is None or job.engine != "diffusion":
            raise StudioError("bad_request", "only diffusion runs take live updates")
        self._check_run_loras(job.params, change)  # type: ignore[arg-type]
        try:
            for state in job.live.states_with(change):
                check_live(state, self.settings, getattr(job.params, "batch", 1))
        except LimitError as exc:
            raise StudioError("too_large", str(exc)) from None
        except ValueError:
            raise StudioError("bad_request", "that update is not valid for this run") from None
        params: DiffusionParams = job.params  # type: ignore[assignment]
        first = job.from_step or None
        try:
            states = job.live.states_with(change)
        except ValueError:
            raise StudioError("bad_request", "that update is not valid for this run") from None
        self._check_preview_decoder(states)
        runner = self._pinned(job) or self._runner(params)  # the model the run is on, even if swapped out since
        was = self.costliest(params, job.live.states_with(LiveUpdate()), first, runner)
        peak = self._within_budget(params, states, first, was=was, runner=runner)
        try:
            updated = job.live.update(change)
            job.peak_bytes = peak
            return updated
        except ValueError:
            raise StudioError("bad_request", "that update is not valid for this run") from None

    def rewind(self, run_id: str, step: int, sink: Sink, client_id: str, owner: str,
               change: LiveUpdate | None = None, ref: str | None = None) -> str:
        """Fork: a new run continues from `step` of `run_id` with that run's current live params,
        changed by `change` for the fork only. The fork keeps the parent's starting values and
        schedule before `step`, plus one entry at `step` for whatever differs there, so it replays
        from scratch. The fork belongs to the parent's owner."""
        parent = self._job(run_id, owner)
        if parent.engine != "diffusion" or parent.live is None:
            raise StudioError("bad_request", "only diffusion runs can be rewound")
        runner = self._drawn_by(parent)
        params: DiffusionParams = parent.params  # type: ignore[assignment]
        if step >= params.steps:
            raise StudioError("bad_request", f"step must be below {params.steps}")
        if step > 0 and self.history.step(run_id, step) is None:
            raise StudioError("not_found", f"step {step} of run {run_id} is not kept (not reached yet, or evicted)")
        current = parent.live.latest()
        if change is not None:
            self._check_run_loras(params, change)
            try:
                check_update(current, change, self.settings, params.batch)
            except LimitError as exc:
                raise StudioError("too_large", str(exc)) from None
            current = apply_change(current, change)
            self._check_preview_decoder([current])
        try:
            at = max(step, params.skip_steps)  # a fork from step 0 starts where the parent started
            schedule = fork_schedule(params.live(), parent.live.schedule(before=at), at, current)
            params = DiffusionParams.model_validate({**params.model_dump(), "schedule": schedule})
        except ValueError as exc:
            raise StudioError("too_large", f"the fork cannot be recorded: {exc}") from None
        live = LiveState(params.live(), params.schedule)
        peak = self._within_budget(params, live.states_with(LiveUpdate()), first=step or None, runner=runner)
        return self._queue(Job("diffusion", params, sink, client_id, owner, live=live, parent=run_id,
                               from_step=step, ref=ref, peak_bytes=peak), runner)

    def _drawn_by(self, job: Job):
        """The runner of the model that drew `job`'s run, if that model is still loaded."""
        runner = self._pinned(job)
        if runner is None:
            raise StudioError("not_found", f"run {job.run_id} was drawn by a model that is no longer loaded; "
                                           "its steps can be seen and forked only with that model")
        return runner

    def cancel(self, run_id: str, owner: str) -> None:
        self._job(run_id, owner)
        if not self.worker.cancel(run_id):
            raise StudioError("not_found", f"run {run_id!r} is not queued or running")

    def preview(self, run_id: str, step: int, sink: Sink, owner: str) -> None:
        job = self._job(run_id, owner)
        if job.engine != "diffusion" or not self._drawn_by(job).timeline_preview(sink, run_id, step):
            raise StudioError("not_found", f"step {step} of run {run_id} is not kept")

    def attach_page(self, client_id: str, sink: Sink) -> None:
        """A page connected: it hears `broadcast` events until it disconnects."""
        with self._pages_lock:
            self._pages[client_id] = sink

    def disconnect(self, client_id: str) -> None:
        with self._pages_lock:
            self._pages.pop(client_id, None)
        self.worker.cancel_client(client_id)

    def broadcast(self, ev: dict) -> None:
        """Send `ev` to every connected page (a model swap: each page re-reads /api/info)."""
        with self._pages_lock:
            pages = list(self._pages.values())
        for sink in pages:
            sink.send(ev)

    @property
    def upload_dir(self) -> Path:
        return self.uploads
