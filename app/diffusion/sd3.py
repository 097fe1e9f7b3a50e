"""Stable Diffusion 3 / 3.5 (StableDiffusion3Pipeline): its text conditioning and its velocity call.

Conditioning (Esser et al. 2024, §3 and Fig. 2): the penultimate hidden states of CLIP-L and
CLIP-G side by side, zero-padded (or cut) to the T5 width, followed along the sequence by T5's last
hidden states (zeros where the pipeline has no T5); the pooled vector is both CLIPs' projected
embeddings side by side. The MMDiT (SD3Transformer2DModel) predicts the velocity at timestep
1000 t, as the pipeline feeds it the scheduler's timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

T5_TOKENS = 256  # StableDiffusion3Pipeline's max_sequence_length default


def clip_states(tokenizer, encoder: torch.nn.Module, texts: list[str]) -> tuple[Tensor, Tensor]:
    """(penultimate hidden states [n, 77, W], projected pooled embedding [n, P]) of a
    CLIPTextModelWithProjection, padded to the tokenizer's max length."""
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    out = encoder(ids.to(next(encoder.parameters()).device), output_hidden_states=True)
    return out.hidden_states[-2], out[0]


def t5_states(tokenizer, encoder: torch.nn.Module, texts: list[str], tokens: int) -> Tensor:
    """T5's last hidden states [n, tokens, D], padded / truncated to `tokens`."""
    ids = tokenizer(texts, padding="max_length", max_length=tokens, truncation=True, add_special_tokens=True,
                    return_tensors="pt").input_ids
    return encoder(ids.to(next(encoder.parameters()).device))[0]


@dataclass
class SD3:
    """The parts of a StableDiffusion3Pipeline the studio uses (text_encoder_3 may be None)."""

    transformer: torch.nn.Module
    tokenizer: object
    text_encoder: torch.nn.Module
    tokenizer_2: object
    text_encoder_2: torch.nn.Module
    tokenizer_3: object | None
    text_encoder_3: torch.nn.Module | None
    t5_tokens: int = T5_TOKENS
    distilled_guidance = False  # SD3 uses classifier-free guidance
    pipeline_linspace = False  # the pipeline takes the scheduler's own timesteps

    @property
    def pooled_dim(self) -> int:
        return int(self.transformer.config.pooled_projection_dim)

    @property
    def patch(self) -> int:
        return int(self.transformer.config.patch_size)

    @property
    def native_latent(self) -> int:
        return int(self.transformer.config.sample_size)

    def text_modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.text_encoder, self.text_encoder_2, self.text_encoder_3) if m is not None]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(token states [n, 77 + t5_tokens, D], pooled [n, P]) as StableDiffusion3Pipeline.encode_prompt."""
        l_states, l_pooled = clip_states(self.tokenizer, self.text_encoder, texts)
        g_states, g_pooled = clip_states(self.tokenizer_2, self.text_encoder_2, texts)
        width = int(self.transformer.config.joint_attention_dim)
        if self.text_encoder_3 is None:
            t5 = l_states.new_zeros(len(texts), self.t5_tokens, width)
        else:
            t5 = t5_states(self.tokenizer_3, self.text_encoder_3, texts, self.t5_tokens)
        clip = torch.cat([l_states, g_states], dim=-1)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))  # a negative pad cuts, as the pipeline does
        return torch.cat([clip, t5.to(clip.dtype)], dim=-2), torch.cat([l_pooled, g_pooled], dim=-1)

    def velocity(self, x: Tensor, t: Tensor, tokens: Tensor, pooled: Tensor,
                 guidance: Tensor | float | None = None) -> Tensor:
        """v_hat [B, C, h, w] (float32) at times t [B]."""
        dtype = next(self.transformer.parameters()).dtype
        return self.transformer(hidden_states=x.to(dtype), timestep=t.float() * 1000,
                                encoder_hidden_states=tokens.to(dtype), pooled_projections=pooled.to(dtype),
                                return_dict=False)[0].float()
