"""Measure the loaded models on this device once at start-up, for the budget (app.engine.budget).

One warm-up and two timed calls (the faster counts) each of the UNet (a 16x16 latent), the VAE decoder and CLIP's image
tower, scaled per pixel. Activation sizes are read by forward hooks during the warm-up: the sum of
every leaf module's output approximates what a backward pass keeps; the largest one, what a no-grad
pass holds. With the tiny test models all of it takes a few tens of milliseconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.diffusion import previews
from app.diffusion.denoiser import encode_text
from app.engine.budget import Calibration, meminfo_available

log = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _activations(module: torch.nn.Module, call: Callable[[], object]) -> tuple[float, float]:
    """(sum, max) in bytes of the tensors the leaf modules of `module` output during `call()`."""
    total = largest = 0.0

    def hook(_m: torch.nn.Module, _inputs: object, output: object) -> None:
        nonlocal total, largest
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for t in outs:
            if isinstance(t, torch.Tensor):
                size = float(t.numel() * t.element_size())
                total += size
                largest = max(largest, size)

    handles = [m.register_forward_hook(hook) for m in module.modules() if not any(m.children())]
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return total, largest


def _timed(call: Callable[[], object], device: torch.device, repeats: int = 2) -> float:
    """The fastest of `repeats` calls (after a warm-up elsewhere): the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def calibrate(models, latent_side: int = 16) -> Calibration:
    """Per-pixel costs of `models` (app.diffusion.generate.DiffusionModels) on their device."""
    device = models.device
    channels, scale = models.latent_channels, models.vae_scale
    latent_px = latent_side * latent_side
    image_px = latent_px * scale * scale
    x = torch.randn(1, channels, latent_side, latent_side, device=device)
    sigma = torch.full((1,), models.denoiser.sigma_max, device=device)
    context = encode_text(models.tokenizer, models.text_encoder, [""])

    def unet() -> object:
        return models.denoiser(x, sigma, context)

    def decode() -> object:
        return previews.decode(models.vae, x)

    unet_sum, unet_max = _activations(models.unet, unet)
    unet_s = _timed(unet, device)
    decode_sum, decode_max = _activations(models.vae, decode)
    decode_s = _timed(decode, device)
    clip_s = clip_sum = 0.0
    if models.clip is not None:
        size = models.clip.image_size
        images = torch.rand(1, 3, size, size, device=device)

        def clip() -> object:
            return models.clip.encode_image(images)

        inner = getattr(models.clip, "model", None)
        clip_sum = _activations(inner, clip)[0] if isinstance(inner, torch.nn.Module) else 0.0
        clip_s = _timed(clip, device)
    cal = Calibration(
        unet_s_per_px=unet_s / latent_px, decode_s_per_px=decode_s / image_px, clip_s_per_image=clip_s,
        unet_bytes_per_px=unet_sum / latent_px, decode_bytes_per_px=decode_sum / image_px,
        clip_bytes_per_image=clip_sum, unet_peak_bytes_per_px=unet_max / latent_px,
        decode_peak_bytes_per_px=decode_max / image_px, latent_channels=channels, vae_scale=scale,
        device=device.type,
    )
    log.info("calibrated on %s: UNet %.2f ms, decode %.2f ms, CLIP %.2f ms (a %dx%d latent)", device,
             unet_s * 1000, decode_s * 1000, clip_s * 1000, latent_side, latent_side)
    return cal


def available_memory(device: torch.device, meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """Bytes a job may still use: free CUDA memory on that device, else the kernel's MemAvailable
    (None where neither can be read: no memory check then)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        return meminfo_available(meminfo.read_text())
    except OSError:
        return None
