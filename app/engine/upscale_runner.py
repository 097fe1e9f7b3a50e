"""Runs one GAN-upscaler job: read the source picture, one RRDBNet pass (x4), final frame, gallery, `done`.

The diffusion upscaler needs no runner of its own: its runs are diffusion runs (DiffusionParams with
`upscale`) on a DiffusionRunner holding the upscale pipeline, so they stream previews, take live
parameters, fork and cancel as every diffusion run does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.engine.images import encode
from app.engine.jobs import Job
from app.params import UPSCALE_FACTOR, UpscaleParams, gallery_source
from app.store.gallery import Gallery, ImageRecord
from app.upscale.rrdbnet import RRDBNet, upscale


def upscale_lineage(source: str, upscaler: str, **params: Any) -> dict[str, Any]:
    """Where an upscaled picture comes from: the gallery image (or an upload) and the upscaler with its settings."""
    gallery_id = gallery_source(source)
    origin = {"source_image": gallery_id} if gallery_id else {"source_upload": source}
    return {**origin, "upscaler": upscaler, **params}


@torch.no_grad()
def gan_upscale(net: RRDBNet, image: Image.Image) -> Image.Image:
    """PIL RGB -> PIL RGB, x the network's scale."""
    x = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None]
    device = next(net.parameters()).device
    y = upscale(net, x.to(device).float().div(255))[0]
    return Image.fromarray(y.mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


class GanUpscaleRunner:
    def __init__(self, net: RRDBNet, gallery: Gallery, source_path: Callable[[str], Path | None],
                 model_ids: dict[str, Any]) -> None:
        self.net = net
        self.gallery = gallery
        self.source_path = source_path
        self.model_ids = model_ids

    def run(self, job: Job) -> None:
        p: UpscaleParams = job.params  # type: ignore[assignment]
        path = self.source_path(p.source)
        try:
            if path is None:
                raise FileNotFoundError(p.source)
            with Image.open(path) as opened:
                source = opened.convert("RGB")
        except FileNotFoundError:
            job.sink.send({"type": "error", "code": "not_found", "run_id": job.run_id,
                           "message": "the picture to upscale is not there any more (deleted, or the upload expired)"})
            return
        w, h = source.width * UPSCALE_FACTOR, source.height * UPSCALE_FACTOR
        job.sink.send({"type": "started", "run_id": job.run_id, "engine": "upscale", "total": 1, "seed": None,
                       "width": w, "height": h, "from_step": 0, "parent": None})
        t0 = time.perf_counter()
        image = gan_upscale(self.net, source)
        elapsed = round((time.perf_counter() - t0) * 1000, 1)
        if job.live is not None:
            job.live.check()
        lineage = upscale_lineage(p.source, "gan", scale=self.net.cfg.scale, model=self.model_ids.get("upscaler_gan"))
        record = ImageRecord(engine="upscale", params={"source": p.source, "upscaler": "gan"}, models=self.model_ids,
                             timings={"total_ms": elapsed, "steps": 1, "ms_per_step": elapsed},
                             lineage=lineage, run_id=job.run_id)
        image_id = self.gallery.add(image, record)
        meta = {"run_id": job.run_id, "step": 1, "width": image.width, "height": image.height, "format": "png",
                "engine": "upscale", "image_id": image_id}
        job.sink.image(meta, encode(image, "png"), "final")
        job.sink.send({"type": "step", "run_id": job.run_id, "index": 1, "total": 1, "sigma": None,
                       "elapsed_ms": elapsed, "clip_score": None})
        job.sink.send({"type": "done", "run_id": job.run_id, "engine": "upscale", "upscaler": "gan",
                       "image_id": image_id, "image_ids": [image_id], "url": f"/api/gallery/{image_id}.png",
                       "elapsed_ms": elapsed, "clip_score": None, "seed": None, "params": p.model_dump(),
                       "lineage": lineage})
