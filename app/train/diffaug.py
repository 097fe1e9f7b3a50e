"""Differentiable augmentation for GAN training on small data (Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training", policy 'color,translation,cutout').

The same random transform family is applied to real and generated images before D, and every op
is differentiable so G's gradient passes through it. Pure functions of (x, generator).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=x.device if generator is None else generator.device,
                      dtype=x.dtype).to(x.device)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) on images in [-1, 1]."""
    n = x.shape[0]
    x = x + (_rand((n, 1, 1, 1), x, generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((n, 1, 1, 1), x, generator) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((n, 1, 1, 1), x, generator) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift by up to `ratio` of the side in each axis, zero-filling (a gather, so differentiable)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = (_rand((n, 1, 1), x, generator) * (2 * sh + 1)).long() - sh
    ty = (_rand((n, 1, 1), x, generator) * (2 * sw + 1)).long() - sw
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy.unsqueeze(0) + tx + 1).clamp(0, h + 1)
    gx = (gx.unsqueeze(0) + ty + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    idx = (gy * (w + 2) + gx).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, idx).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one random square of side `ratio` * side per image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = (_rand((n, 1, 1), x, generator) * (h + 1 - ch % 2)).long()
    ox = (_rand((n, 1, 1), x, generator) * (w + 1 - cw % 2)).long()
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((gy - oy + ch // 2) >= 0) & ((gy - oy + ch // 2) < ch) & ((gx - ox + cw // 2) >= 0) & ((gx - ox + cw // 2) < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the comma-separated ops of `policy` in order; '' returns x unchanged."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        x = POLICIES[name](x, generator=generator)
    return x
