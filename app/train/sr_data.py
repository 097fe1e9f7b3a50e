"""Pairs for the upscalers: the 256 px renders of the emoji set and their degraded 64 px versions.

High-resolution targets come from `python -m app.train.data build --out data/emoji256 --size 256`
(the same concepts, art sets, rows and split as data/emoji, drawn at 256 px). Low-resolution inputs
are made on the fly from random crops of them by a first-order version of Real-ESRGAN's degradation
model (Wang et al. 2021, §3.1; they apply it twice):

1. blur, p = 0.5: an isotropic Gaussian, sigma ~ U(0.2, 1.5) px at the high resolution;
2. x4 down-scaling, by bicubic (p = 0.5), bilinear (0.25) or area (0.25), antialiased;
3. Gaussian noise, p = 0.3: sigma ~ U(1, 5) / 255, the same in every channel half the time;
4. JPEG, p = 0.3: quality ~ U(70, 95) (Pillow, 4:2:0);
5. rounding to 8 bits (what every real input is).

About a quarter of the inputs are therefore a clean antialiased x4 down-scale, the shape of the
64 px renders of data/emoji the evaluation feeds in; the rest teach robustness to the softer,
noisier pictures the generators draw. Held-out concepts never appear in training crops.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.train.data import Records, load_records

SCALE = 4
HR_NPZ = "emoji256.npz"


def load_hr(path: str | Path, split: str = "train") -> Records:
    """The rows of one split ('train', 'heldout', 'all') of the 256 px set (a folder or its .npz)."""
    p = Path(path)
    rec = load_records(p / HR_NPZ if p.is_dir() else p)
    if split != "all":
        rec = rec.select(np.flatnonzero(np.asarray(rec.split) == split))
    return rec


def crop_boxes(shape: tuple[int, ...], size: int, count: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, tops, lefts) of `count` random size x size crops of images [N, H, W, ...], corners on the
    scale's grid so that a crop lines up with its low-resolution input and with an f=4 latent."""
    n, h, w = shape[:3]
    idx = torch.randint(0, n, (count,), generator=generator)
    ys = torch.randint(0, (h - size) // SCALE + 1, (count,), generator=generator) * SCALE
    xs = torch.randint(0, (w - size) // SCALE + 1, (count,), generator=generator) * SCALE
    return idx, ys, xs


def crops_at(images: np.ndarray, boxes: tuple[torch.Tensor, torch.Tensor, torch.Tensor], size: int) -> torch.Tensor:
    """The crops `boxes` (crop_boxes) of uint8 [N, H, W, 3] as float [count, 3, size, size] in [0, 1]."""
    crops = np.stack([images[i, y:y + size, x:x + size] for i, y, x in zip(*(b.tolist() for b in boxes))])
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)


def latent_crops(latents: torch.Tensor, boxes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 size: int) -> torch.Tensor:
    """The size x size latent cells (last two dims of [N, ..., H/4, W/4]) under the pixel crops `boxes`
    (crop_boxes) of an f=4 latent: [count, ..., size, size]."""
    return torch.stack([latents[i, ..., y // SCALE:y // SCALE + size, x // SCALE:x // SCALE + size]
                        for i, y, x in zip(*(b.tolist() for b in boxes))])


def random_crops(images: np.ndarray, size: int, count: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random crops (aligned to the scale) of uint8 [N, H, W, 3] -> (float [count, 3, size, size]
    in [0, 1], the rows they came from)."""
    boxes = crop_boxes(images.shape, size, count, generator)
    return crops_at(images, boxes, size), boxes[0]


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image isotropic Gaussian blur, sigma [B] in pixels (kernel 2*ceil(3*max sigma)+1)."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # [B, K]
    b, c, h, w = x.shape
    flat = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    kx = k.repeat_interleave(c, 0)[:, None, None, :]
    ky = k.repeat_interleave(c, 0)[:, None, :, None]
    flat = F.conv2d(F.conv2d(flat, kx, groups=b * c), ky, groups=b * c)
    return flat.reshape(b, c, h, w)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """One image [3, h, w] in [0, 1] through a JPEG round trip."""
    arr = (x.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return torch.from_numpy(back.copy()).permute(2, 0, 1).float().div(255)


def downscale(x: torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
    """x4 antialiased down-scale ('area' is a box filter)."""
    size = (x.shape[-2] // SCALE, x.shape[-1] // SCALE)
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)


def degrade(hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """High-resolution crops [B, 3, H, W] in [0, 1] -> low-resolution inputs [B, 3, H/4, W/4] (module docstring)."""
    b = hr.shape[0]

    def u(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    x = hr
    blur = torch.rand(b, generator=generator) < 0.5
    if blur.any():
        x = torch.where(blur[:, None, None, None], gaussian_blur(x, u(0.2, 1.5)), x)
    pick = torch.rand(b, generator=generator)
    modes = np.where(pick < 0.5, "bicubic", np.where(pick < 0.75, "bilinear", "area"))
    x = torch.cat([downscale(x[i:i + 1], str(m)) for i, m in enumerate(modes)])
    noisy = torch.rand(b, generator=generator) < 0.3
    if noisy.any():
        sigma = u(1, 5)[:, None, None, None] / 255
        gray = torch.rand(b, generator=generator)[:, None, None, None] < 0.5
        n = torch.randn(x.shape, generator=generator)
        n = torch.where(gray, n[:, :1].expand_as(n), n)
        x = torch.where(noisy[:, None, None, None], x + sigma * n, x)
    x = x.clamp(0, 1)
    for i in torch.nonzero(torch.rand(b, generator=generator) < 0.3).flatten().tolist():
        x[i] = jpeg(x[i], int(torch.randint(70, 96, (1,), generator=generator)))
    return (x * 255).round().div(255)
