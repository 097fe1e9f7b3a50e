"""Runs diffusion jobs: sampler steps -> history -> step events and preview frames -> gallery.

A job is begun (`begin`: its inputs read, `started` sent, its network calls set up as a
`DiffusionRun`), stepped (its calls answered alone by `run`, or stacked with other runs' by
app.engine.batcher), and finished (decode, score, gallery, final image, `done`) by its last answer."""

from __future__ import annotations

import random
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from app.diffusion.denoiser import UNetCall, unet_call
from app.diffusion.generate import (
    DiffusionModels,
    RunSteps,
    StepInfo,
    decode_to_pil,
    preview_rgb,
    sample_steps,
)
from app.diffusion.lora import LoraError, run_loras
from app.engine.budget import Calibration
from app.engine.history import RunRecord, StepHistory, StepRecord
from app.engine.images import encode, grid, to_pil
from app.engine.jobs import Job, Sink
from app.engine.live import LiveState, RunCancelled
from app.engine.scores import image_scores
from app.params import DiffusionParams, dump_schedule, gallery_source, strength
from app.store.gallery import Gallery, ImageRecord


def missing_init_text(init_image: str) -> str:
    """Why a run cannot read its init image, in words."""
    source = gallery_source(init_image)
    if source is not None:
        return f"gallery image {source} (the init image) is not in the gallery any more"
    return "the init image was not found; upload it again"


def run_lineage(params: DiffusionParams, parent: str | None, from_step: int) -> dict[str, Any] | None:
    """Where a run's image comes from: the run it was forked from ({"parent_run", "from_step"}) and,
    for img2img from a gallery image (variations), that image and the strength ({"source_image",
    "strength"}); for a diffusion upscaler run, the picture and the upscaler's settings ({"source_image"
    or "source_upload", "upscaler", "steps", "sampler", "noise_level", "cfg_scale", "strength"}); None for a run
    from noise or an upload."""
    lineage: dict[str, Any] = {}
    if parent is not None:
        lineage.update(parent_run=parent, from_step=from_step)
    source = gallery_source(params.init_image)
    if params.upscale and params.init_image is not None:  # a diffusion upscaler run: the picture it upscaled
        origin = {"source_image": source} if source else {"source_upload": params.init_image}
        lineage.update(origin, upscaler="diffusion", steps=params.steps, sampler=params.sampler,
                       noise_level=params.noise_level, cfg_scale=params.cfg_scale,
                       strength=strength(params.steps, params.skip_steps))
    elif source is not None:
        lineage.update(source_image=source, strength=strength(params.steps, params.skip_steps))
    return lineage or None


@dataclass(eq=False)
class DiffusionRun:
    """A begun diffusion job: the generator of its network calls and the call it waits for
    (None: a step it computes itself). `send` answers that call and runs the job up to its next one."""

    runner: DiffusionRunner
    job: Job
    params: DiffusionParams
    live: LiveState
    steps: RunSteps
    t0: float
    request: UNetCall | None = None
    last: dict[str, int] = field(default_factory=dict)  # {"index": the last step reported}

    @property
    def network(self) -> object:
        """The denoiser that answers its calls (app.engine.batcher groups calls by it)."""
        return self.runner.models.denoiser

    def start(self) -> bool:
        """Set the run up and run it to its first call; True if it already ended (cancelled)."""
        return self._advance(lambda: next(self.steps))

    def send(self, out: Tensor | None) -> bool:
        """Answer the waiting call; True when the run has ended (finished or cancelled)."""
        return self._advance(lambda: self.steps.send(out))

    def _advance(self, step) -> bool:
        try:
            with torch.no_grad():
                self.request = step()
            return False
        except StopIteration as done:
            self.runner.finish(self, done.value)
        except RunCancelled:
            self.cancelled()
        return True

    def cancelled(self) -> None:
        """Leave now: close the generator and tell the page the last step it reached."""
        self.steps.close()
        self.job.sink.send({"type": "cancelled", "run_id": self.job.run_id, "index": self.last["index"]})

    def cancelled_by_error(self) -> None:
        """Leave now: the network call it waited for failed."""
        self.steps.close()
        self.job.sink.send({"type": "error", "code": "internal", "run_id": self.job.run_id,
                            "message": "the run failed on the server; see the server log"})


class DiffusionRunner:
    def __init__(self, models: DiffusionModels, history: StepHistory, gallery: Gallery, encoder: Executor,
                 uploads: Path, model_ids: dict[str, Any], calibration: Calibration) -> None:
        """`calibration`: the costs of `models` on this device (app.engine.calibrate), what the budget
        checks this runner's jobs against."""
        self.models = models
        self.calibration = calibration
        self.history = history
        self.gallery = gallery
        self.encoder = encoder
        self.uploads = uploads
        self.model_ids = model_ids

    def batchable(self, job: Job) -> bool:
        """Whether the job's network calls may be stacked with other runs' (app.engine.batcher): every
        run without LoRAs, of any model family (SD's UNets, the flow transformers, the diffusion
        upscaler). A run's LoRA hooks scale the whole network call, so those run whole (`run`)."""
        params: DiffusionParams = job.params  # type: ignore[assignment]
        return not params.lora_weights

    def run(self, job: Job) -> None:
        """Run a job alone, start to finish, its LoRAs (app.diffusion.lora) on the models meanwhile."""
        run = self.begin(job)
        if run is None:
            return
        try:
            with run_loras(self.models, run.params.lora_weights, lambda: run.live.params().lora_weights):
                if run.start():
                    return
                while not run.send(None if run.request is None else unet_call(self.models.denoiser, run.request)):
                    pass
        except LoraError as exc:  # a --lora-dir file removed or changed since the run was queued
            run.steps.close()
            job.sink.send({"type": "error", "code": "not_found", "run_id": job.run_id, "message": str(exc)})

    def begin(self, job: Job) -> DiffusionRun | None:
        """Read the job's inputs, record it, send `started` and set up its steps; None if it ended
        here (an error was sent)."""
        params: DiffusionParams = job.params  # type: ignore[assignment]
        if params.seed is None:
            params = params.model_copy(update={"seed": random.randrange(2**32)})
            job.params = params
        live = job.live or LiveState(params.live(), params.schedule)
        start_latent = start_denoised = None
        if job.parent is not None and job.from_step > 0:
            record = self.history.step(job.parent, job.from_step)
            if record is None:
                job.sink.send({"type": "error", "code": "not_found", "run_id": job.run_id,
                               "message": f"step {job.from_step} of run {job.parent} is no longer kept"})
                return None
            start_latent, start_denoised = record.latent, record.denoised
        init_image = None
        if params.init_image is not None:
            path = self._init_path(params.init_image)
            try:
                if path is None:
                    raise FileNotFoundError(params.init_image)
                with Image.open(path) as opened:  # a gallery image may be deleted meanwhile
                    init_image = opened.convert("RGB")
            except FileNotFoundError:
                job.sink.send({"type": "error", "code": "not_found", "run_id": job.run_id,
                               "message": missing_init_text(params.init_image)})
                return None
        mask = None
        if params.mask_image is not None:
            path = self.uploads / f"{params.mask_image}.png"
            if not path.is_file():
                job.sink.send({"type": "error", "code": "not_found", "run_id": job.run_id,
                               "message": "the inpainting mask was not found; paint or upload it again"})
                return None
            mask = Image.open(path).convert("L")

        self.history.start(RunRecord(job.run_id, params.model_dump(), params.steps, job.parent, job.from_step))
        job.sink.send({"type": "started", "run_id": job.run_id, "engine": "diffusion", "total": params.steps,
                       "seed": params.seed, "width": params.width, "height": params.height,
                       "from_step": job.from_step, "parent": job.parent})
        t0 = time.perf_counter()
        last = {"index": job.from_step}

        def on_step(info: StepInfo) -> None:
            live.check()
            last["index"] = info.index
            self.history.put(job.run_id, info.index,
                             StepRecord(info.latent, info.denoised, float(info.sigma), info.clip_score))
            elapsed = (time.perf_counter() - t0) * 1000
            job.sink.send({"type": "step", "run_id": job.run_id, "index": info.index, "total": info.total,
                           "sigma": float(info.sigma), "elapsed_ms": round(elapsed, 1),
                           "clip_score": info.clip_score})
            if info.preview and info.index < info.total:
                knobs = live.params()
                decoder = "full" if info.index % knobs.full_decode_every == 0 else knobs.preview_decoder
                self.encoder.submit(self._send_preview, job.sink, job.run_id, info.index, info.denoised.detach().clone(),
                                    decoder, "preview")

        steps = sample_steps(self.models, params, live=live.params, on_step=on_step, start_step=job.from_step,
                             start_latent=start_latent, start_denoised=start_denoised, init_image=init_image,
                             on_boundary=live.advance, check=live.check, mask=mask)
        return DiffusionRun(self, job, params, live, steps, t0, last=last)

    def finish(self, run: DiffusionRun, latent: Tensor) -> None:
        """The final image: decode, score, gallery, the final frame and `done`."""
        job, params, live, t0 = run.job, run.params, run.live, run.t0
        images = decode_to_pil(self.models, latent)
        elapsed = (time.perf_counter() - t0) * 1000
        score, spread = image_scores(self.models.clip, images, params.prompt)
        done_steps = params.steps - job.from_step
        # The starting values plus every change at the step it took effect: a from-scratch replay.
        schedule = dump_schedule(live.schedule())
        lineage = run_lineage(params, job.parent, job.from_step)
        record = ImageRecord(
            engine="diffusion", params=params.model_dump(exclude={"schedule"}),
            seed=params.seed, clip_score=score, models=self.model_ids,
            timings={"total_ms": round(elapsed, 1), "steps": done_steps,
                     "ms_per_step": round(elapsed / max(1, done_steps), 2)},
            schedule=schedule, lineage=lineage, run_id=job.run_id,
        )
        # one gallery row per image; image j of a batch drew its noise from seed + j, which its row records
        # (params keep the batch's own seed and size, so "use these settings" replays the whole batch)
        ids = [self.gallery.add(img, replace(record, seed=params.seed + j)) for j, img in enumerate(images)]
        final = images[0] if len(images) == 1 else grid(images)
        meta = {"run_id": job.run_id, "step": params.steps, "width": final.width, "height": final.height,
                "format": "png", "engine": "diffusion", "image_id": ids[0]}
        # Through the same single-thread encoder, so no older preview can arrive after the final image.
        self.encoder.submit(lambda: job.sink.image(meta, encode(final, "png"), "final")).result()
        job.sink.send({"type": "done", "run_id": job.run_id, "engine": "diffusion", "image_id": ids[0],
                       "image_ids": ids, "url": f"/api/gallery/{ids[0]}.png", "elapsed_ms": round(elapsed, 1),
                       "clip_score": score, "diversity": spread, "seed": params.seed,
                       "params": params.model_dump(exclude={"schedule"}), "schedule": schedule, "lineage": lineage})

    def source_path(self, init_image: str) -> Path | None:
        """Where a picture named like init_image (an upload id or gallery:<id>) is read from."""
        return self._init_path(init_image)

    def _init_path(self, init_image: str) -> Path | None:
        """Where an init image is read from: the uploads folder, or the gallery for "gallery:<id>"."""
        source = gallery_source(init_image)
        if source is None:
            return self.uploads / f"{init_image}.png"
        try:
            return self.gallery.path_for(source)
        except ValueError:
            return None

    def _send_preview(self, sink: Sink, run_id: str, index: int, denoised, decoder: str, kind: str) -> None:
        """One preview frame drawn by `decoder`: "linear" (the fitted map), "tiny" (--preview-decoder) or
        "full" (the VAE)."""
        tiny = self.models.preview_decoder
        if decoder == "tiny" and tiny is not None:
            image = to_pil(tiny.preview(denoised))
        else:
            decoder = "full" if decoder == "full" else "linear"
            image = to_pil(preview_rgb(self.models, denoised, full=decoder == "full"))
        if decoder == "linear":  # the fast map works at latent resolution
            scale = self.models.vae_scale
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
        meta = {"run_id": run_id, "step": index, "width": image.width, "height": image.height,
                "format": "jpeg", "engine": "diffusion", "full": decoder == "full", "decoder": decoder}
        sink.image(meta, encode(image, "jpeg"), kind)  # type: ignore[arg-type]

    def timeline_preview(self, sink: Sink, run_id: str, index: int) -> bool:
        """Re-render a stored step's preview for timeline scrubbing (full decode)."""
        record = self.history.step(run_id, index)
        if record is None or record.denoised is None:
            return False
        self.encoder.submit(self._send_preview, sink, run_id, index, record.denoised, "full", "timeline")
        return True
