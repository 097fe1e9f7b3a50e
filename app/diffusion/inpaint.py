"""Inpainting by latent masking, the standard method for SD-family models (the "known region"
replacement of RePaint, Lugmayr et al. 2022, without its resampling; what diffusers'
StableDiffusionInpaintPipeline does for a 4-channel UNet and A1111's img2img inpaint does).

mask = 1 where the picture is re-generated, 0 where it is kept. Before every denoiser call at
noise level sigma the kept region of x is replaced by the init latent noised to that level,
    x <- mask * x + (1 - mask) * (x0_init + sigma * noise),
with the run's initial noise, so the model always sees the true picture around the hole; after the
last step the kept region is pasted exactly: x <- mask * x + (1 - mask) * x0_init. The samplers'
updates are elementwise in x, so blending the denoiser's input equals blending after each step,
and the samplers stay as they are.

A diffusers inpainting UNet (9 input channels: latent, mask, masked-image latent) also gets its own
conditioning (`concat`), built as StableDiffusionInpaintPipeline builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from app.diffusion.samplers import Denoiser

INPAINT_UNET_CHANNELS = 9  # latent (4) + mask (1) + masked-image latent (4)


def pixel_mask(mask: Image.Image, width: int, height: int) -> Tensor:
    """A mask image (white = re-generate; its luminance is read, as a grayscale PNG) resized to the
    run's size -> [1, 1, height, width] in [0, 1]."""
    gray = mask.convert("L").resize((width, height), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(gray).copy()).float().div(255)[None, None]


def latent_mask(pixels: Tensor, scale: int) -> Tensor:
    """[1, 1, H, W] pixel mask -> [1, 1, H/scale, W/scale]: each latent cell takes the largest value
    of its pixels, so a cell with any painted pixel is re-generated and a kept cell is wholly unpainted."""
    return F.max_pool2d(pixels, kernel_size=scale, stride=scale)


@dataclass(frozen=True)
class Inpaint:
    """What a masked run needs at every step, on the sampling device."""

    known: Tensor  # [B, C, h, w] the init image's latent (x0 of the kept region)
    noise: Tensor  # [B, C, h, w] the run's initial noise
    mask: Tensor  # [1, 1, h, w] 1 = re-generate, 0 = keep
    # x0's coefficient at a noise level: None for VE form (1); rectified flow's 1 - t (app.diffusion.flow.signal)
    signal: Callable[[float | Tensor], float | Tensor] | None = None

    def blend(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """x with the kept region replaced by the init latent at noise level `sigma`."""
        if isinstance(sigma, Tensor):
            sigma = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        known = self.known if self.signal is None else self.known * self.signal(sigma)
        noised = known + self.noise * sigma
        return torch.lerp(noised, x, self.mask)  # exactly `noised` where mask == 0

    def paste(self, x: Tensor) -> Tensor:
        """The final latent: the kept region exactly the init's."""
        return torch.lerp(self.known, x, self.mask)

    def shown(self, denoised: Tensor) -> Tensor:
        """An x0 estimate as the picture it will become: the kept region already the init's (previews)."""
        return torch.lerp(self.known, denoised, self.mask)


def masked_denoiser(model: Denoiser, inpaint: Inpaint) -> Denoiser:
    """D(x, sigma) that sees the kept region as the noised init (the per-step hook of this method).
    It only maps the input, so a denoiser written as network calls (app.diffusion.generate) works too."""

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        return model(inpaint.blend(x, sigma), sigma)

    return denoise


def inpaint_conditioning(encode: Callable[[Tensor], Tensor], image: Tensor, pixels: Tensor | None,
                         cells: Tensor | None, shape: tuple[int, int, int]) -> Tensor:
    """The 9-channel UNet's extra input, [1, 1 + C, h, w]: the latent mask and the latent of the image
    with the masked pixels blanked (StableDiffusionInpaintPipeline: image * (mask < 0.5), encoded);
    `pixels` is the pixel mask, `cells` the latent mask (latent_mask), both [1, 1, ...].
    Without a mask (text-to-image on an inpainting UNet) everything is masked and the image blank,
    as A1111 conditions such a model. `encode` maps [1, 3, H, W] in [-1, 1] to scaled latents."""
    if pixels is None or cells is None:
        blank = torch.zeros_like(image)
        return torch.cat([image.new_ones(1, 1, *shape[1:]), encode(blank)], dim=1)
    kept = image * (pixels < 0.5).to(image.dtype)
    return torch.cat([(cells > 0).to(image.dtype), encode(kept)], dim=1)
