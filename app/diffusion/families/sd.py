"""Stable Diffusion 1.x / 2.x: one CLIP text encoder, its last hidden states as the UNet's context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from app.diffusion.denoiser import TextConditioning, text_conditioning
from app.diffusion.families import Family


@dataclass(frozen=True)
class ClipConditioner:
    tokenizer: Any
    text_encoder: torch.nn.Module

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.text_encoder,)

    def __call__(self, prompts: list[tuple[str, float]], negative: str, width: int, height: int) -> TextConditioning:
        return text_conditioning(self.tokenizer, self.text_encoder, prompts, negative)


def _from_pretrained(name: str, dtype: torch.dtype, local_only: bool) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(name, dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=local_only)


FAMILY = Family(
    name="sd",
    pipeline_classes=("StableDiffusionPipeline", "StableDiffusionInpaintPipeline"),
    from_pretrained=_from_pretrained,
    conditioner=lambda pipe: ClipConditioner(pipe.tokenizer, pipe.text_encoder),
)


def _upscaler_only(name: str, dtype: torch.dtype, local_only: bool) -> Any:
    raise ValueError(f"{name} is a diffusion upscaler (StableDiffusionUpscalePipeline): load it with "
                     "--upscaler-diffusion, not --diffusion-model")


# A StableDiffusionUpscalePipeline (app.upscale.diffusion loads it): SD's text conditioning; its low-res
# image and noise level reach the UNet through UNetFamily.calls' `concat` and `class_labels`.
UPSCALE_FAMILY = Family(
    name="sd-upscale",
    pipeline_classes=("StableDiffusionUpscalePipeline",),
    from_pretrained=_upscaler_only,
    conditioner=lambda pipe: ClipConditioner(pipe.tokenizer, pipe.text_encoder),
)
