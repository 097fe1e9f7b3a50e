"""Measure the loaded models on this device once at start-up, for the budget (app.engine.budget).

The UNet and the VAE decoder are timed on a 16x16 and a 32x32 latent (after a warm-up; the fastest
of three calls counts), which gives a fixed cost per call and a cost per pixel: scaling one small
call by pixels alone overstated a 1024x1024 step ~7x, since a small call is mostly overhead. CLIP's
image tower is timed once per image. Activation sizes are read by forward hooks during the
warm-up: the sum of every leaf module's output approximates what a backward pass keeps; the
largest one, what a no-grad pass holds. With the tiny test models it all takes well under a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.diffusion import previews
from app.diffusion.generate import family_of
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


def _timed(call: Callable[[], object], device: torch.device, repeats: int = 3, warm: bool = False) -> float:
    """The fastest of `repeats` calls (after one untimed call if `warm`): the least disturbed by other load."""
    if warm:
        call()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _line(small: tuple[float, float], large: tuple[float, float]) -> tuple[float, float]:
    """(fixed, per unit) through two (size, seconds) points; the slope at least a quarter of the
    large call's average, so that timing noise cannot make big calls look free."""
    (n1, t1), (n2, t2) = small, large
    slope = max((t2 - t1) / (n2 - n1), t2 / n2 / 4)
    return max(0.0, t2 - slope * n2), slope


def calibrate(models, latent_side: int = 16, cpu_threads: int = 0) -> Calibration:
    """Costs of `models` (app.diffusion.generate.DiffusionModels) on their device; on a CPU with the
    worker's torch thread count (`cpu_threads`, 0: torch's default), as the jobs will run."""
    before = torch.get_num_threads()
    if models.device.type == "cpu" and cpu_threads:
        torch.set_num_threads(cpu_threads)
    try:
        return _calibrate(models, latent_side)
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def _calibrate(models, latent_side: int) -> Calibration:
    device = models.device
    channels, scale = models.latent_channels, models.vae_scale
    latent_px = latent_side * latent_side
    image_px = latent_px * scale * scale
    latents = {side: torch.randn(1, channels, side, side, device=device) for side in (latent_side, 2 * latent_side)}
    probes = {side: family_of(models).probe(latent) for side, latent in latents.items()}

    def unet(side: int = latent_side) -> Callable[[], object]:
        return probes[side]

    def decode(side: int = latent_side) -> Callable[[], object]:
        return lambda: previews.decode(models.vae, latents[side])

    unet_sum, unet_max = _activations(models.unet, unet())
    decode_sum, decode_max = _activations(models.vae, decode())
    big = 2 * latent_side
    unet_fixed, unet_px = _line((latent_px, _timed(unet(), device)),
                                (4 * latent_px, _timed(unet(big), device, warm=True)))
    decode_fixed, decode_px = _line((image_px, _timed(decode(), device)),
                                    (4 * image_px, _timed(decode(big), device, warm=True)))
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
        unet_s_per_px=unet_px, decode_s_per_px=decode_px, clip_s_per_image=clip_s,
        unet_s_fixed=unet_fixed, decode_s_fixed=decode_fixed,
        unet_bytes_per_px=unet_sum / latent_px, decode_bytes_per_px=decode_sum / image_px,
        clip_bytes_per_image=clip_sum, unet_peak_bytes_per_px=unet_max / latent_px,
        decode_peak_bytes_per_px=decode_max / image_px, latent_channels=channels, vae_scale=scale,
        device=device.type, distilled_guidance=family_of(models).distilled_guidance,
    )
    log.info("calibrated on %s: UNet %.2f ms + %.4f ms per latent pixel, decode %.2f ms + %.5f ms per pixel, "
             "CLIP %.2f ms per image", device, unet_fixed * 1000, unet_px * 1000, decode_fixed * 1000,
             decode_px * 1000, clip_s * 1000)
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
