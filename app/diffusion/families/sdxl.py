"""Stable Diffusion XL (Podell et al. 2023): two text encoders and micro-conditioning.

The UNet's context is the penultimate hidden states of CLIP ViT-L and OpenCLIP ViT-bigG
concatenated along the feature axis ([B, 77, 768 + 1280] at full size); its added conditioning
is the second encoder's pooled, projected embedding and six size ids, (original height, width,
crop top, crop left, target height, target width) (§2.2), each embedded by the UNet's
`add_embedding`. The studio asks for an uncropped picture drawn at the size it renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.diffusion.denoiser import TextConditioning
from app.diffusion.families import Family


@dataclass(frozen=True)
class SDXLContext:
    """One batch of SDXL conditioning; rows pair up across the three tensors."""

    states: Tensor  # [B, L, D1 + D2] both encoders' penultimate hidden states
    pooled: Tensor  # [B, P] text_encoder_2's projected pooled output
    time_ids: Tensor  # [B, 6] original size, crop top-left, target size (h, w each)

    def unet_kwargs(self, dtype: torch.dtype) -> dict[str, Any]:
        return {"encoder_hidden_states": self.states.to(dtype),
                "added_cond_kwargs": {"text_embeds": self.pooled.to(dtype), "time_ids": self.time_ids.to(dtype)}}


def size_ids(width: int, height: int, crop_top: int = 0, crop_left: int = 0) -> Tensor:
    """[1, 6]: the picture as if originally (height, width), uncropped unless told, drawn at (height, width)."""
    return torch.tensor([[height, width, crop_top, crop_left, height, width]], dtype=torch.float32)


@dataclass(frozen=True)
class SDXLConditioner:
    tokenizers: tuple[Any, Any]
    encoders: tuple[torch.nn.Module, torch.nn.Module]  # CLIPTextModel, CLIPTextModelWithProjection
    zero_empty_negative: bool = True  # model_index `force_zeros_for_empty_prompt`: no negative -> zeros

    @property
    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.encoders

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """([n, L, D1 + D2] states, [n, P] pooled) of texts, each padded to the tokenizers' length."""
        states = []
        pooled = None
        for tokenizer, encoder in zip(self.tokenizers, self.encoders):
            ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(next(encoder.parameters()).device)
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]  # the projected pooled output: text_embeds of the last (projecting) encoder
        assert pooled is not None and pooled.ndim == 2
        return torch.cat(states, dim=-1), pooled

    def __call__(self, prompts: list[tuple[str, float]], negative: str, width: int, height: int) -> TextConditioning:
        states, pooled = self.encode([negative] + [p for p, _ in prompts])
        if not negative and self.zero_empty_negative:
            states[0], pooled[0] = 0.0, 0.0
        ids = size_ids(width, height).to(states.device).expand(len(states), -1)
        both = SDXLContext(states.float(), pooled.float(), ids)
        return TextConditioning(cond=SDXLContext(both.states[1:], both.pooled[1:], both.time_ids[1:]),
                                weights=tuple(w for _, w in prompts),
                                uncond=SDXLContext(both.states[:1], both.pooled[:1], both.time_ids[:1]))


def _from_pretrained(name: str, dtype: torch.dtype, local_only: bool) -> Any:
    """In fp16, the repository's fp16 weight files when it has them (half the download), else its own."""
    from diffusers import StableDiffusionXLPipeline

    if dtype == torch.float16:
        try:
            return StableDiffusionXLPipeline.from_pretrained(name, dtype=dtype, variant="fp16",
                                                             local_files_only=local_only)
        except (OSError, ValueError):
            pass
    return StableDiffusionXLPipeline.from_pretrained(name, dtype=dtype, local_files_only=local_only)


def _setup(pipe: Any, dtype: torch.dtype) -> None:
    """SDXL's own VAE overflows in fp16 (its config says `force_upcast`): keep it in fp32 then, as
    its pipeline does; the fp16-fixed VAE (force_upcast false) stays in fp16."""
    if dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)


def _conditioner(pipe: Any) -> SDXLConditioner:
    if pipe.text_encoder is None or pipe.tokenizer is None:
        raise ValueError("this SDXL pipeline has no first text encoder (a refiner?); the studio needs both")
    return SDXLConditioner((pipe.tokenizer, pipe.tokenizer_2), (pipe.text_encoder, pipe.text_encoder_2),
                           bool(pipe.config.get("force_zeros_for_empty_prompt", True)))


FAMILY = Family(
    name="sdxl",
    pipeline_classes=("StableDiffusionXLPipeline",),
    from_pretrained=_from_pretrained,
    conditioner=_conditioner,
    setup=_setup,
)
