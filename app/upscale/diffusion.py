"""The diffusion upscaler: a StableDiffusionUpscalePipeline folder (stabilityai/stable-diffusion-x4-upscaler's
layout) loaded as the studio's DiffusionModels, so it runs through the studio's own samplers: every
step's x0 estimate previews, live parameters, forks and cancellation work as for any diffusion run.

What differs from text-to-image lives in app.diffusion.generate (low_res_conditioning) and the
denoiser's `concat` / `class_labels`: the UNet sees [latent, noised low-resolution RGB] and the
noise level, which the low_res_scheduler (DDPM) sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from app.diffusion.generate import DiffusionModels, models_from_pipeline

SCALE = 4  # the latent is the low-resolution image's size; the f=4 VAE decodes it 4x larger


def is_upscale_pipeline(folder: str | Path) -> bool:
    index = Path(folder) / "model_index.json"
    try:
        return json.loads(index.read_text()).get("_class_name") == "StableDiffusionUpscalePipeline"
    except (OSError, ValueError):
        return False


def load_upscaler_models(name_or_path: str | Path, device: torch.device, dtype: torch.dtype,
                         cache_dir: Path | None = None) -> DiffusionModels:
    """A StableDiffusionUpscalePipeline folder or hub id -> DiffusionModels with its low-res noise schedule."""
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_pretrained(
        name_or_path, dtype=dtype, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    return upscaler_from_pipeline(pipe, str(name_or_path), device, dtype, cache_dir)


def upscaler_from_pipeline(pipe, name: str, device: torch.device, dtype: torch.dtype,
                           cache_dir: Path | None = None) -> DiffusionModels:
    from dataclasses import replace

    from diffusers import DDPMScheduler

    unet_in, latent = int(pipe.unet.config.in_channels), int(pipe.vae.config.latent_channels)
    if unet_in != latent + 3:
        raise ValueError(f"{name}: an upscaler UNet takes {latent + 3} channels (latent + RGB), this one {unet_in}")
    models = models_from_pipeline(pipe, name, device, dtype, None, cache_dir)
    low = DDPMScheduler.from_config(pipe.low_res_scheduler.config).alphas_cumprod.double()
    return replace(models, low_res_alphas=low, max_noise_level=int(pipe.config.max_noise_level))
