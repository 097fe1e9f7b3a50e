"""Latent -> image: the VAE decode, and a cheap per-pixel linear map for every-step previews.

The map (C x 3 weights + a bias, what ComfyUI and A1111 hard-code for SD 1.5) is fitted for any
VAE by least squares: encode a few smooth synthetic images, decode their latents, average-pool
the decodes to latent resolution and solve pixel-wise. Fits are cached on disk by a hash of
the VAE's weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LatentRGBMap:
    weight: Tensor  # [C, 3]
    bias: Tensor  # [3]

    def __call__(self, latent: Tensor) -> Tensor:
        """[B, C, h, w] scaled latents -> [B, 3, h, w] images, roughly in [-1, 1]."""
        w = self.weight.to(latent.device, latent.dtype)
        return torch.einsum("bchw,cr->brhw", latent, w) + self.bias.to(latent.device, latent.dtype).view(1, 3, 1, 1)

    def to_json(self) -> str:
        return json.dumps({"weight": self.weight.tolist(), "bias": self.bias.tolist()})

    @classmethod
    def from_json(cls, text: str) -> LatentRGBMap:
        d = json.loads(text)
        return cls(torch.tensor(d["weight"], dtype=torch.float32), torch.tensor(d["bias"], dtype=torch.float32))


def scaling_factor(vae: torch.nn.Module) -> float:
    return float(getattr(vae.config, "scaling_factor", 0.18215))


def shift_factor(vae: torch.nn.Module) -> float:
    """The latent mean the VAE subtracts before scaling (SD3: 0.0609, FLUX: 0.1159; none for SD 1.x / 2.x)."""
    return float(getattr(vae.config, "shift_factor", None) or 0.0)


def vae_scale(vae: torch.nn.Module) -> int:
    """Image pixels per latent pixel along one side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def decode(vae: torch.nn.Module, latent: Tensor) -> Tensor:
    """Scaled latents -> images in about [-1, 1], float32; differentiable."""
    dtype = next(vae.parameters()).dtype
    return vae.decode((latent / scaling_factor(vae) + shift_factor(vae)).to(dtype)).sample.float()


@torch.no_grad()
def encode(vae: torch.nn.Module, images: Tensor) -> Tensor:
    """Images in [-1, 1] -> scaled latents (the posterior mean), float32."""
    dtype = next(vae.parameters()).dtype
    return (vae.encode(images.to(dtype)).latent_dist.mean.float() - shift_factor(vae)) * scaling_factor(vae)


@torch.no_grad()
def full_decode(vae: torch.nn.Module, latent: Tensor) -> Tensor:
    """Scaled latents -> images in [0, 1]."""
    return decode(vae, latent).add(1).div(2).clamp(0, 1)


def to_uint8_hwc(images01: Tensor, cols: int = 4) -> np.ndarray:
    """[B, 3, H, W] in [0, 1] -> one uint8 H x W x 3 array (a grid when B > 1)."""
    b, _, h, w = images01.shape
    cols = min(b, cols)
    rows = -(-b // cols)
    grid = images01.new_zeros(3, rows * h, cols * w)
    for k in range(b):
        r, c = divmod(k, cols)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = images01[k]
    return grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def fast_preview(rgb_map: LatentRGBMap, latent: Tensor) -> np.ndarray:
    """Scaled latents [B, C, h, w] (or [C, h, w]) -> uint8 h x w x 3 at latent resolution."""
    if latent.ndim == 3:
        latent = latent[None]
    return to_uint8_hwc(rgb_map(latent.float()).add(1).div(2).clamp(0, 1))


def synthetic_images(n: int, size: int, seed: int = 0) -> Tensor:
    """[n, 3, size, size] in [-1, 1]: smooth random colour fields with some finer texture."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.randn(n, 3, 4, 4, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    fine = F.interpolate(torch.randn(n, 3, 16, 16, generator=g), size=(size, size), mode="bilinear", align_corners=False)
    return torch.tanh(coarse + 0.3 * fine)


@torch.no_grad()
def fitting_pairs(vae: torch.nn.Module, n: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(latents [n, C, h, w], decodes pooled to [n, 3, h, w]) of synthetic images.

    The encodes are rescaled to unit standard deviation, the scale samplers work at; for a
    trained VAE with its scaling_factor that changes little, for an untrained one a lot.
    """
    device = next(vae.parameters()).device
    size = 16 * vae_scale(vae)
    latents = encode(vae, synthetic_images(n, size, seed).to(device))
    mean = latents.mean(dim=(0, 2, 3), keepdim=True)
    latents = mean + (latents - mean) / (latents - mean).std().clamp(min=1e-6)
    images = F.adaptive_avg_pool2d(decode(vae, latents), latents.shape[-2:])
    return latents.cpu(), images.cpu()


def fit_latent_rgb(latents: Tensor, images: Tensor) -> LatentRGBMap:
    """Least-squares [C, 3] + [3] with images ~= latents^T W + b, pixel by pixel."""
    c = latents.shape[1]
    x = latents.permute(0, 2, 3, 1).reshape(-1, c).double()
    y = images.permute(0, 2, 3, 1).reshape(-1, 3).double()
    keep = torch.isfinite(x).all(1) & torch.isfinite(y).all(1)
    x, y = x[keep], y[keep]
    if len(x) <= c:  # nothing usable (e.g. a VAE whose decodes overflow): a neutral grey map
        return LatentRGBMap(torch.zeros(c, 3), torch.zeros(3))
    sol = torch.linalg.lstsq(torch.cat([x, torch.ones_like(x[:, :1])], 1), y).solution
    return LatentRGBMap(sol[:c].float(), sol[c].float())


def vae_fingerprint(vae: torch.nn.Module) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(vae.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_or_fit(vae: torch.nn.Module, cache_dir: Path | None) -> LatentRGBMap:
    """The VAE's fitted map, from `cache_dir/<fingerprint>.json` when present."""
    path = None if cache_dir is None else Path(cache_dir) / f"latent_rgb_{vae_fingerprint(vae)}.json"
    if path is not None and path.is_file():
        return LatentRGBMap.from_json(path.read_text())
    rgb_map = fit_latent_rgb(*fitting_pairs(vae))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(rgb_map.to_json())
        tmp.replace(path)
    return rgb_map
