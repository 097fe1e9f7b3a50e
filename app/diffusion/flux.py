"""FLUX.1 (FluxPipeline): its text conditioning, latent packing and velocity call.

Conditioning: T5's last hidden states (512 tokens) and CLIP-L's pooled output. The transformer
sees the latent as a sequence of 2 x 2 patches ([B, C, h, w] -> [B, h/2 * w/2, 4C]) with position
ids (0, row, col) per patch and zeros per text token (the rotary embedding's axes). FLUX.1-dev is
guidance-distilled: the guidance scale is an input (`guidance`, an embedding like the timestep's),
not a second model call; a FLUX without that input (schnell) takes true classifier-free guidance.
The pipeline feeds the timestep as t in [0, 1] (it divides the scheduler's 1000 t by 1000).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.diffusion.sd3 import t5_states

T5_TOKENS = 512  # FluxPipeline's max_sequence_length default


def pack_latents(x: Tensor) -> Tensor:
    """[B, C, h, w] -> [B, (h/2)(w/2), 4C]: each 2 x 2 patch as one token, channels (c, dy, dx)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: Tensor, h: int, w: int) -> Tensor:
    """The inverse of pack_latents for an [h, w] latent."""
    b, _, d = tokens.shape
    return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[(h/2)(w/2), 3] position ids (0, row, col) of the packed patches."""
    rows = torch.arange(h // 2, device=device, dtype=dtype)[:, None].expand(h // 2, w // 2)
    cols = torch.arange(w // 2, device=device, dtype=dtype)[None, :].expand(h // 2, w // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)


@dataclass
class Flux:
    """The parts of a FluxPipeline the studio uses."""

    transformer: torch.nn.Module
    tokenizer: object
    text_encoder: torch.nn.Module
    tokenizer_2: object
    text_encoder_2: torch.nn.Module
    t5_tokens: int = T5_TOKENS
    _ids: dict[tuple, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)  # per latent size and text length
    patch = 2  # the pipeline's 2 x 2 packing
    pipeline_linspace = True  # FluxPipeline passes sigmas = linspace(1, 1/n, n)
    native_latent = 128  # FluxPipeline's default_sample_size

    @property
    def distilled_guidance(self) -> bool:
        return bool(self.transformer.config.guidance_embeds)

    @property
    def pooled_dim(self) -> int:
        return int(self.transformer.config.pooled_projection_dim)

    def text_modules(self) -> list[torch.nn.Module]:
        return [self.text_encoder, self.text_encoder_2]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(T5 states [n, t5_tokens, D], CLIP pooled [n, P]) as FluxPipeline.encode_prompt."""
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        pooled = self.text_encoder(ids.to(next(self.text_encoder.parameters()).device),
                                   output_hidden_states=False).pooler_output
        tokens = t5_states(self.tokenizer_2, self.text_encoder_2, texts, self.t5_tokens)
        return tokens, pooled.to(tokens.dtype)

    def velocity(self, x: Tensor, t: Tensor, tokens: Tensor, pooled: Tensor,
                 guidance: Tensor | float | None = None) -> Tensor:
        """v_hat [B, C, h, w] (float32) at times t [B]; `guidance` ([B] or one number for all, default 1)
        feeds the distilled-guidance input."""
        dtype = next(self.transformer.parameters()).dtype
        b, _, h, w = x.shape
        g = None
        if self.distilled_guidance:
            if isinstance(guidance, Tensor):
                g = guidance.to(x.device, torch.float32).expand(b)
            else:
                g = torch.full((b,), 1.0 if guidance is None else float(guidance), device=x.device,
                               dtype=torch.float32)
        key = (h, w, tokens.shape[1], x.device, dtype)
        if key not in self._ids:
            self._ids[key] = (tokens.new_zeros(tokens.shape[1], 3, dtype=dtype), image_ids(h, w, x.device, dtype))
        txt_ids, img_ids = self._ids[key]
        out = self.transformer(hidden_states=pack_latents(x).to(dtype), timestep=t.to(dtype), guidance=g,
                               pooled_projections=pooled.to(dtype), encoder_hidden_states=tokens.to(dtype),
                               txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        return unpack_latents(out.float(), h, w)
