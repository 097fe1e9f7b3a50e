"""Which image sizes the loaded diffusion model can draw: read from its own configs, never a fixed list.

- native: the side the model was trained at. diffusers' pipelines default to `unet.sample_size x vae
  scale`; the VAE's own `sample_size` is in pixels. Where both are set the smaller wins (SD 1.5: 64 x 8
  and 512 agree; the embedded model's VAE says 64 px while its UNet config says a 64-latent side).
- step: sizes are multiples of the VAE's scale times the UNet's total downsampling, so every UNet level
  gets a whole number of latent pixels (the embedded model: 4 x 4 = 16 px; SD 1.5: 8 x 8 = 64 px).
- min: half the native side (at least one step). Below it the UNet sees less than a quarter of the area
  it learnt on and gives only noise (issue 17: 8-16 px on the 64 px model), so those sizes are refused.
- max: 4x native, capped by the server's `max_pixels` for a square image. Sizes above native are offered
  with a warning: the model never saw them and tends to repeat or blur its subject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SizeRange:
    native: int
    step: int  # sizes offered are multiples of this
    grid: int  # sizes accepted are multiples of this (the VAE's scale)
    min: int
    max: int

    def options(self) -> list[int]:
        return list(range(self.min, self.max + 1, self.step))

    def info(self) -> dict[str, Any]:
        return {"native": self.native, "step": self.step, "multiple_of": self.grid, "min": self.min,
                "max": self.max, "options": self.options()}

    def problem(self, name: str, value: int) -> str | None:
        """Why `value` cannot be drawn, or None."""
        if value < self.min:
            return (f"{name} {value} px is too small for this model (trained at {self.native} px): "
                    f"use at least {self.min} px, smaller sizes only give noise")
        if value % self.grid:
            return f"{name} {value} px is not a multiple of {self.grid} px (the VAE's scale)"
        return None


def _side(value: Any) -> int | None:
    if isinstance(value, (list, tuple)) and value:
        value = min(value)
    return int(value) if isinstance(value, int) and value > 0 else None


def model_sizes(unet: Any, vae: Any, vae_scale: int, max_pixels: int) -> SizeRange:
    """The SizeRange of a loaded UNet and VAE (diffusers modules: their `config`)."""
    return size_range(dict(getattr(unet, "config", {}) or {}), dict(getattr(vae, "config", {}) or {}),
                      vae_scale, max_pixels)


def size_range(unet_cfg: dict[str, Any], vae_cfg: dict[str, Any], vae_scale: int, max_pixels: int) -> SizeRange:
    levels = len(unet_cfg.get("block_out_channels") or [1])
    step = vae_scale * 2 ** max(0, levels - 1)
    latent_side, vae_side = _side(unet_cfg.get("sample_size")), _side(vae_cfg.get("sample_size"))
    candidates = [s for s in (latent_side and latent_side * vae_scale, vae_side) if s]
    native = min(candidates) if candidates else 8 * step
    native = max(step, native // step * step)
    low = max(step, -(-(native // 2) // step) * step)
    cap = math.isqrt(max_pixels) // step * step
    high = max(low, min(4 * native, cap))
    return SizeRange(native=native, step=step, grid=vae_scale, min=low, max=high)
