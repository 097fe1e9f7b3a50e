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
from dataclasses import dataclass, field
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
from app.gan.family import Condition, GanFamily, controls_problem, load_family
from app.params import MAX_SEED, GanParams
from app.store.gallery import Gallery, ImageRecord

log = logging.getLogger(__name__)

W_CACHE = 256
CONDITIONS = 64


class GanInputError(ValueError):
    """A GAN request this generator cannot serve (e.g. a style-mix layer past num_ws)."""


@dataclass
class GanModel:
    """A loaded generator family, the CLIP model that conditions, searches and scores it, and its name."""

    family: GanFamily
    device: torch.device
    clip: ClipBackend | None
    name: str
    _texts: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict, repr=False)

    @property
    def G(self) -> torch.nn.Module:
        return self.family.G

    def text_use(self) -> str:
        """What the prompt does: 'condition' (c = its CLIP embedding), 'clip_search' (steers the search and
        is scored), 'none' (no CLIP model)."""
        controls = self.family.controls()
        if controls.condition == "text":
            return "condition"
        return "clip_search" if self.clip is not None and controls.search else "none"

    def info(self) -> dict[str, Any]:
        return {"name": Path(self.name).name, **self.family.info(), "text": self.text_use(),
                "controls": self.family.controls().describe()}

    @torch.no_grad()
    def condition(self, prompt: str, class_index: int | None = None) -> Condition:
        """The generator's condition for a request: the prompt's CLIP text embedding (text-conditioned),
        the class's c (class-conditional), or none."""
        kind = self.family.controls().condition
        if kind == "class":
            if class_index is None:
                raise GanInputError("this generator is class-conditional: class_index is required")
            return Condition(f"class:{class_index}", self.family.class_condition(class_index).to(self.device))
        if kind != "text":
            return Condition()
        if self.clip is None:
            raise GanInputError("this generator is text-conditioned but no CLIP model is loaded")
        if prompt not in self._texts:
            c = self.clip.encode_text([prompt])
            c_dim = int(getattr(self.family.G, "c_dim", c.shape[-1]))
            if c.shape[-1] != c_dim:
                raise GanInputError(f"the generator expects c of size {c_dim}, CLIP gives {c.shape[-1]}")
            self._texts[prompt] = c.to(self.device)
            while len(self._texts) > CONDITIONS:
                self._texts.popitem(last=False)
        self._texts.move_to_end(prompt)
        return Condition(f"text:{prompt}", self._texts[prompt])


def load_gan_model(folder: str | Path, device: torch.device, clip: ClipBackend | None = None) -> GanModel:
    """Load a converted generator folder as its family (app.gan.family.FAMILIES, by config.json "format")."""
    return GanModel(load_family(folder, device), device, clip, str(folder))


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 [N, H, W, C] (render's output) -> PIL images."""
    return [Image.fromarray(a) for a in images.cpu().numpy()]


def frame_png(image: Image.Image) -> bytes:
    """The render's frame: lossless, with the fastest zlib level (the gallery keeps its own PNG)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def run_task(p: GanParams) -> str:
    if p.walk_frames:
        return "walk"
    return "search" if p.search_steps else ("grid" if p.grid > 1 else "render")


def walk_webp(frames: list[Image.Image], fps: float, quality: int = 90) -> bytes:
    """The frames of a latent walk as one looping animated WebP (Pillow's encoder)."""
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=max(1, round(1000 / fps)),
                   loop=0, quality=quality)
    return buf.getvalue()


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

    def problem(self, p: GanParams) -> str | None:
        """Why this generator cannot serve `p` (checked before it is queued), or None."""
        family = self.model.family
        controls = family.controls()
        problem = controls_problem(controls, p) or family.problem(p)
        if problem:
            return problem
        blank = not p.prompt.strip()
        if controls.condition == "text" and blank:
            return ("prompt is empty: this GAN is text-conditioned (it draws the prompt's CLIP embedding), "
                    "so it needs a prompt, as Generate does")
        if controls.condition == "text" and self.model.clip is None:
            return "this GAN is text-conditioned but no CLIP model is loaded"
        if p.search_steps and not controls.search:
            return "search_steps: this generator has no CLIP search"
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

    def condition(self, p: GanParams) -> Condition:
        return self.model.condition(p.prompt, p.class_index)

    @torch.no_grad()
    def w_for(self, seed: int, cond: Condition) -> torch.Tensor:
        """The family's un-truncated latent [1, ...] of a seed under a condition (cached)."""
        key = (seed, cond.key)
        if key not in self._w_cache:
            self._w_cache[key] = self.model.family.seed_latent(seed, cond)
            while len(self._w_cache) > W_CACHE:
                self._w_cache.popitem(last=False)
        self._w_cache.move_to_end(key)
        return self._w_cache[key]

    @torch.no_grad()
    def styles(self, p: GanParams, seed: int) -> torch.Tensor:
        """What the family synthesises for seeds seed .. seed + grid - 1 under p's controls."""
        cond = self.condition(p)
        base = torch.cat([self.w_for(seed + i, cond) for i in range(p.grid)])
        mix = self.w_for(p.mix_seed, cond) if p.mix_seed is not None else None
        styles = self.model.family.styles(base, cond, p, mix)
        if not p.walk_t:
            return styles
        # One point of the walk (every grid cell goes towards the walk's one end).
        return self.model.family.interpolate(styles, self.walk_end(p, seed).expand_as(styles), p.walk_t)

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
            end = self.walk_end(p, seed) if p.walk_frames else None
        except GanInputError as exc:
            job.sink.send({"type": "error", "code": "bad_request", "run_id": job.run_id, "message": str(exc)})
            return
        family = self.model.family
        total = p.walk_frames or max(1, p.search_steps)
        job.sink.send({"type": "started", "run_id": job.run_id, "engine": "gan", "task": run_task(p), "total": total,
                       "seed": seed, "width": family.resolution, "height": family.resolution, "from_step": 0,
                       "parent": None})
        if end is not None:
            self._walk(job, p, seed, ws, end, t0)
            return
        if p.search_steps:
            reached = [0]
            try:
                ws = self._search(job, p, ws, t0, reached)
            except RunCancelled:
                self._flush()  # the steps already streamed go before `cancelled`
                job.sink.send({"type": "cancelled", "run_id": job.run_id, "index": reached[0]})
                return
        images = to_pil(family.render(ws, p))
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

    def walk_seed(self, p: GanParams, seed: int) -> int:
        return p.walk_seed if p.walk_seed is not None else (seed + 1) % (MAX_SEED + 1)

    @torch.no_grad()
    def walk_end(self, p: GanParams, seed: int) -> torch.Tensor:
        """The walk's last styles: walk_seed (and walk_class) under the same controls as the start."""
        cls = p.walk_class if p.walk_class is not None else p.class_index
        cond = self.model.condition(p.prompt, cls)
        base = self.w_for(self.walk_seed(p, seed), cond)
        mix = self.w_for(p.mix_seed, cond) if p.mix_seed is not None else None
        return self.model.family.styles(base, cond, p, mix)

    def _walk(self, job: Job, p: GanParams, seed: int, start: torch.Tensor, end: torch.Tensor, t0: float) -> None:
        """A latent walk: frame i renders the family's interpolation at t = i / (n - 1), streamed as a
        preview as soon as it is drawn; the final frame is the whole walk as an animated WebP."""
        family, n = self.model.family, p.walk_frames
        frames: list[Image.Image] = []
        try:
            for i in range(n):
                if job.live:
                    job.live.check()
                frames.append(to_pil(family.render(family.interpolate(start, end, i / (n - 1)), p))[0])
                elapsed = round((time.perf_counter() - t0) * 1000, 1)
                self.encoder.submit(self._walk_step, job, i + 1, n, elapsed, frames[-1])
                job.between_steps()
        except RunCancelled:
            self._flush()
            job.sink.send({"type": "cancelled", "run_id": job.run_id, "index": len(frames)})
            return
        self._flush()  # every frame before the animation
        elapsed = round((time.perf_counter() - t0) * 1000, 1)
        animation = walk_webp(frames, p.walk_fps)
        meta = {"run_id": job.run_id, "step": n, "width": frames[0].width, "height": frames[0].height,
                "format": "webp", "engine": "gan", "frames": n, "fps": p.walk_fps}
        job.sink.image(meta, animation, "final")
        job.sink.send({"type": "done", "run_id": job.run_id, "engine": "gan", "image_id": None, "image_ids": [],
                       "url": None, "elapsed_ms": elapsed, "clip_score": None, "diversity": None,
                       "score_skipped": True, "seed": seed, "params": p.model_dump(),
                       "walk": {"frames": n, "fps": p.walk_fps, "to_seed": self.walk_seed(p, seed),
                                "bytes": len(animation)}})

    def _walk_step(self, job: Job, index: int, total: int, elapsed: float, image: Image.Image) -> None:
        """On the encoder thread: one walk frame (lossless) and its step event."""
        try:
            meta = {"run_id": job.run_id, "step": index, "width": image.width, "height": image.height,
                    "format": "png", "engine": "gan"}
            job.sink.image(meta, frame_png(image), "preview")
            job.sink.send({"type": "step", "run_id": job.run_id, "index": index, "total": total, "sigma": None,
                           "elapsed_ms": elapsed, "clip_score": None})
        except Exception:  # an encoder task has no caller to report to
            log.exception("walk frame %d of run %s", index, job.run_id)

    def _finish(self, job: Job, p: GanParams, seed: int, images: list[Image.Image], final: Image.Image,
                elapsed: float, total: int) -> None:
        """After the frame: the CLIP score (skipped for a replaced slider render), the gallery, `done`."""
        skipped = p.supersedable and self.waiting is not None and self.waiting(job)
        score, spread = (None, None) if skipped else image_scores(self.model.clip, images, p.prompt)
        image_id = None
        if p.save:
            controls = self.model.family.controls()
            condition = {"text": "prompt", "class": "class"}.get(controls.condition, "none")
            extra = {"condition": condition}
            if condition == "class" and p.class_index is not None:  # the gallery names the class it drew
                extra["class_name"] = controls.classes[p.class_index]
            record = ImageRecord(engine="gan", params={**p.model_dump(), **extra},
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
            job.between_steps()
            return True

        result = self.model.family.search(clip, target.embeds, target.weights, ws, p, callback=on_iter)
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
