"""Preview frames from a tiny decoder: a diffusers `AutoencoderTiny` (TAESD, Bohan 2023: a distilled
decoder of a few conv blocks, madebyollin/taesd for SD 1.x / 2.x, taesdxl, taesd3, taef1) in place of
the full VAE between full decodes.

TAESD reads the sampler's latents as they are (the full VAE's scaled latents); its own
`scaling_factor` / `shift_factor` say how to map them for the families that need it (as diffusers'
pipelines do: latent / scaling_factor + shift_factor). It must draw the loaded model's latent space:
the same channel count and the same pixels per latent, checked at load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from app.diffusion import previews


@dataclass
class TinyDecoder:
    name: str
    vae: torch.nn.Module  # diffusers AutoencoderTiny

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scale(self) -> int:
        """Image pixels per latent pixel along one side: one upsampling per decoder block but the last."""
        cfg = self.vae.config
        return int(cfg.upsampling_scaling_factor) ** (len(cfg.decoder_block_out_channels) - 1)

    @torch.no_grad()
    def decode(self, latent: Tensor) -> Tensor:
        """Scaled latents [B, C, h, w] -> images [B, 3, h * scale, w * scale] in [0, 1], float32."""
        cfg = self.vae.config
        param = next(self.vae.parameters())
        z = latent.to(param.device, torch.float32) / float(cfg.scaling_factor) + float(cfg.shift_factor)
        return self.vae.decode(z.to(param.dtype)).sample.float().add(1).div(2).clamp(0, 1)

    def preview(self, latent: Tensor) -> np.ndarray:
        """uint8 H x W x 3 at image resolution (a batch as a grid, as the other previews)."""
        if latent.ndim == 3:
            latent = latent[None]
        return previews.to_uint8_hwc(self.decode(latent))


def check_fits(decoder: TinyDecoder, latent_channels: int, vae_scale: int) -> None:
    """ValueError unless `decoder` draws latents of this many channels at this many pixels per latent."""
    if decoder.latent_channels != latent_channels or decoder.scale != vae_scale:
        raise ValueError(
            f"preview decoder {decoder.name}: it decodes {decoder.latent_channels}-channel latents at "
            f"{decoder.scale}x, the diffusion model's VAE {latent_channels}-channel latents at {vae_scale}x; "
            "use the tiny decoder made for this model family (taesd: SD 1.x / 2.x, taesdxl: SDXL, taesd3: SD3, "
            "taef1: FLUX)")


def load_tiny_decoder(name_or_path: str, device: torch.device, dtype: torch.dtype) -> TinyDecoder:
    """An `AutoencoderTiny` folder or hub id; HF_HUB_OFFLINE=1 keeps a hub id to the local cache, and a
    decoder that cannot be had is a ValueError naming it."""
    from diffusers import AutoencoderTiny

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        vae = AutoencoderTiny.from_pretrained(name_or_path, dtype=dtype, local_files_only=offline)
    except (OSError, ValueError) as exc:
        where = "the local cache (HF_HUB_OFFLINE=1)" if offline else "a folder or the hub"
        raise ValueError(f"preview decoder {name_or_path!r}: no AutoencoderTiny could be loaded from {where} "
                         f"({type(exc).__name__})") from None
    vae.to(device).eval().requires_grad_(False)
    return TinyDecoder(os.path.basename(os.path.normpath(name_or_path)) if os.path.exists(name_or_path)
                       else name_or_path, vae)
