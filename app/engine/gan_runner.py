"""Runs GAN jobs: one forward pass per render (sent as one frame), or a CLIP search in w space
streamed as steps. The un-truncated w of each (seed, prompt) is cached, so sliders that only move
w (truncation, style mixing) re-render without running the mapping network again.

A render sends its frame first and then computes what the page can wait for: the CLIP score, the
gallery PNG and `done`. A slider render that a newer request from the same page already waits
behind skips its score, so a dragged slider is not slowed by scores nobody sees."""

from __future__ import annotations

import io
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from app.clip import ClipBackend
from app.diffusion.guidance import clip_target
from app.diffusion.prompts import parse_prompt
from app.engine.images import encode, grid
from app.engine.jobs import Job
from app.engine.live import RunCancelled
from app.engine.scores import image_scores
from app.gan.networks import Generator, mix_styles, truncate
from app.gan.render import clip_search, conditional_centre, render, seed_to_w
from app.params import GanParams
from app.store.gallery import Gallery, ImageRecord

log = logging.getLogger(__name__)

W_CACHE = 256


class GanInputError(ValueError):
    """A GAN request this generator cannot serve (e.g. a style-mix layer past num_ws)."""


@dataclass
class GanModel:
    G: Generator
    device: torch.device
    clip: ClipBackend | None
    name: str

    def info(self) -> dict[str, Any]:
        text = "condition" if self.G.c_dim else ("clip_search" if self.clip is not None else "none")
        return {"name": Path(self.name).name, "z_dim": self.G.z_dim, "c_dim": self.G.c_dim, "w_dim": self.G.w_dim,
                "resolution": self.G.img_resolution, "num_ws": self.G.num_ws, "text": text,
                "truncation_centre": "prompt" if self.G.c_dim else "w_avg"}

    @torch.no_grad()
    def condition(self, prompt: str) -> torch.Tensor | None:
        """c for a prompt: the CLIP text embedding (conditional generators), None for c_dim = 0."""
        if not self.G.c_dim:
            return None
        if self.clip is None:
            raise GanInputError("this generator is text-conditioned but no CLIP model is loaded")
        c = self.clip.encode_text([prompt])
        if c.shape[-1] != self.G.c_dim:
            raise GanInputError(f"the generator expects c of size {self.G.c_dim}, CLIP gives {c.shape[-1]}")
        return c.to(self.device)


def load_gan_model(folder: str | Path, device: torch.device, clip: ClipBackend | None = None) -> GanModel:
    from app.gan.convert import load_generator

    G = load_generator(folder, device).eval().requires_grad_(False)
    return GanModel(G, device, clip, str(folder))


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 [N, H, W, C] (render's output) -> PIL images."""
    return [Image.fromarray(a) for a in images.cpu().numpy()]


def frame_png(image: Image.Image) -> bytes:
    """The render's frame: lossless, with the fastest zlib level (the gallery keeps its own PNG)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def run_task(p: GanParams) -> str:
    return "search" if p.search_steps else ("grid" if p.grid > 1 else "render")


class GanRunner:
    def __init__(self, model: GanModel, gallery: Gallery, encoder: Executor, model_ids: dict[str, Any],
                 waiting: Callable[[Job], bool] | None = None) -> None:
        """`waiting(job)`: whether a newer request of the same page waits behind `job`."""
        self.model = model
        self.gallery = gallery
        self.encoder = encoder
        self.model_ids = model_ids
        self.waiting = waiting
        self._w_cache: OrderedDict[tuple[int, str], torch.Tensor] = OrderedDict()
        self._centres: OrderedDict[str, torch.Tensor] = OrderedDict()

    def problem(self, p: GanParams) -> str | None:
        """Why this generator cannot serve `p` (checked before it is queued), or None."""
        G = self.model.G
        if p.mix_seed is not None and p.mix_layer >= G.num_ws:
            return f"mix_layer must be below {G.num_ws} for this generator"
        blank = not p.prompt.strip()
        if G.c_dim and blank:
            return ("prompt is empty: this GAN is text-conditioned (it draws the prompt's CLIP embedding), "
                    "so it needs a prompt, as Generate does")
        if G.c_dim and self.model.clip is None:
            return "this GAN is text-conditioned but no CLIP model is loaded"
        if p.search_steps and self.model.clip is None:
            return "search_steps: the CLIP search needs a CLIP model, and none is loaded"
        if p.search_steps and blank:
            return "prompt is empty: the CLIP search steers towards the prompt"
        if p.search_steps:
            try:
                parse_prompt(p.prompt)  # the search's weighted prompts ('a fox:1 | blur:-0.5')
            except ValueError as exc:
                return f"prompt: {exc}"
        return None

    @torch.no_grad()
    def w_for(self, seed: int, prompt: str) -> torch.Tensor:
        """Un-truncated ws [1, num_ws, w_dim] for a seed and prompt (cached)."""
        key = (seed, prompt if self.model.G.c_dim else "")
        if key not in self._w_cache:
            self._w_cache[key] = seed_to_w(self.model.G, seed, self.model.condition(prompt))
            while len(self._w_cache) > W_CACHE:
                self._w_cache.popitem(last=False)
        self._w_cache.move_to_end(key)
        return self._w_cache[key]

    def centre_for(self, prompt: str) -> torch.Tensor:
        """Truncation centre: the prompt's own mean w for text-conditioned generators (cached)."""
        key = prompt if self.model.G.c_dim else ""
        if key not in self._centres:
            self._centres[key] = conditional_centre(self.model.G, self.model.condition(prompt))
            while len(self._centres) > W_CACHE:
                self._centres.popitem(last=False)
        self._centres.move_to_end(key)
        return self._centres[key]

    def styles(self, p: GanParams, seed: int) -> torch.Tensor:
        ws = torch.cat([self.w_for(seed + i, p.prompt) for i in range(p.grid)])
        centre = self.centre_for(p.prompt)
        ws = truncate(centre, ws, p.truncation_psi, p.truncation_cutoff)
        if p.mix_seed is not None:
            other = truncate(centre, self.w_for(p.mix_seed, p.prompt), p.truncation_psi, p.truncation_cutoff)
            ws = mix_styles(ws, other.expand_as(ws), p.mix_layer)
        return ws

    def run(self, job: Job) -> None:
        p: GanParams = job.params  # type: ignore[assignment]
        if p.seed is None:
            p = p.model_copy(update={"seed": random.randrange(2**32 - p.grid)})
            job.params = p
        seed = int(p.seed)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        try:
            problem = self.problem(p)
            if problem:
                raise GanInputError(problem)
            ws = self.styles(p, seed)
        except GanInputError as exc:
            job.sink.send({"type": "error", "code": "bad_request", "run_id": job.run_id, "message": str(exc)})
            return
        G = self.model.G
        total = max(1, p.search_steps)
        job.sink.send({"type": "started", "run_id": job.run_id, "engine": "gan", "task": run_task(p), "total": total,
                       "seed": seed, "width": G.img_resolution, "height": G.img_resolution, "from_step": 0,
                       "parent": None})
        if p.search_steps:
            reached = [0]
            try:
                ws = self._search(job, p, ws, t0, reached)
            except RunCancelled:
                self._flush()  # the steps already streamed go before `cancelled`
                job.sink.send({"type": "cancelled", "run_id": job.run_id, "index": reached[0]})
                return
        images = to_pil(render(G, ws, p.noise_mode))
        elapsed = round((time.perf_counter() - t0) * 1000, 1)
        final = images[0] if len(images) == 1 else grid(images)
        if p.search_steps:
            self._flush()  # no search preview or step may arrive after the final frame
        meta = {"run_id": job.run_id, "step": total, "width": final.width, "height": final.height,
                "format": "png", "engine": "gan"}
        job.sink.image(meta, frame_png(final), "final")  # first: nothing else wakes the event loop before it
        if not p.search_steps:
            job.sink.send({"type": "step", "run_id": job.run_id, "index": 1, "total": 1, "sigma": None,
                           "elapsed_ms": elapsed, "clip_score": None})
        self._finish(job, p, seed, images, final, elapsed, total)

    def _finish(self, job: Job, p: GanParams, seed: int, images: list[Image.Image], final: Image.Image,
                elapsed: float, total: int) -> None:
        """After the frame: the CLIP score (skipped for a replaced slider render), the gallery, `done`."""
        skipped = p.supersedable and self.waiting is not None and self.waiting(job)
        score, spread = (None, None) if skipped else image_scores(self.model.clip, images, p.prompt)
        image_id = None
        if p.save:
            condition = "prompt" if self.model.G.c_dim else "none"
            record = ImageRecord(engine="gan", params={**p.model_dump(), "condition": condition},
                                 seed=seed, clip_score=score, models=self.model_ids,
                                 timings={"total_ms": elapsed, "steps": total,
                                          "ms_per_step": round(elapsed / total, 2)})
            image_id = self.gallery.add(final, record)
        job.sink.send({"type": "done", "run_id": job.run_id, "engine": "gan", "image_id": image_id,
                       "image_ids": [image_id] if image_id else [],
                       "url": f"/api/gallery/{image_id}.png" if image_id else None,
                       "elapsed_ms": elapsed, "clip_score": score, "diversity": spread, "score_skipped": skipped,
                       "seed": seed, "params": p.model_dump()})

    def _flush(self) -> None:
        """Wait until the encoder thread has sent everything submitted so far."""
        self.encoder.submit(lambda: None).result()

    def _search(self, job: Job, p: GanParams, ws: torch.Tensor, t0: float, reached: list[int]) -> torch.Tensor:
        clip = self.model.clip
        assert clip is not None
        target = clip_target(clip, parse_prompt(p.prompt))  # the prompts and weights the CLIP score uses

        def on_iter(i: int, image: torch.Tensor, loss: float) -> bool:
            job.live.check() if job.live else None
            reached[0] = i + 1
            elapsed = round((time.perf_counter() - t0) * 1000, 1)
            self.encoder.submit(self._search_step, job, p, i + 1, elapsed, loss, to_pil(image))
            return True

        result = clip_search(self.model.G, clip, target.embeds, ws, steps=p.search_steps, lr=p.search_lr,
                             pull=p.search_pull, cutn=p.search_cutn, noise_mode=p.noise_mode, callback=on_iter,
                             weights=target.weights)
        return result.ws.detach()

    def _search_step(self, job: Job, p: GanParams, index: int, elapsed: float, loss: float,
                     frames: list[Image.Image]) -> None:
        """On the encoder thread: a search step's preview, then its step event with the CLIP score of the
        image (the same score as `done`'s), so the search's own thread does not wait for either."""
        try:
            image = frames[0] if len(frames) == 1 else grid(frames)
            meta = {"run_id": job.run_id, "step": index, "width": image.width, "height": image.height,
                    "format": "jpeg", "engine": "gan"}
            job.sink.image(meta, encode(image, "jpeg"), "preview")
            score, _ = image_scores(self.model.clip, frames, p.prompt)
            job.sink.send({"type": "step", "run_id": job.run_id, "index": index, "total": p.search_steps,
                           "sigma": None, "loss": round(float(loss), 5), "elapsed_ms": elapsed, "clip_score": score})
        except Exception:  # an encoder task has no caller to report to
            log.exception("search step %d of run %s", index, job.run_id)
