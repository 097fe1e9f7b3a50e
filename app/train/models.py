"""Architectures of the embedded models, in one place: CLIP, the f=4 VAE, the latent UNet, schedulers.

`FULL` is what models/ ships; `TINY` is for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGE_SIZE = 64
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Sizes:
    clip_width: int = 192
    text_layers: int = 3
    vision_layers: int = 3
    clip_heads: int = 4
    patch: int = 8
    max_length: int = 32
    vae_channels: tuple[int, ...] = (32, 64, 96)
    vae_groups: int = 16
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_heads: int = 8
    unet_groups: int = 32


FULL = Sizes()
TINY = Sizes(clip_width=32, text_layers=1, vision_layers=1, clip_heads=2, max_length=32,
             vae_channels=(8, 16, 16), vae_groups=4, unet_channels=(16, 32, 32), unet_heads=2, unet_groups=8)


def clip_model(vocab_size: int, s: Sizes = FULL):
    """A transformers CLIPModel; bos/eos are the tokenizer's last two ids (see app.clip.word_tokenizer)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=s.clip_width, intermediate_size=4 * s.clip_width,
        num_hidden_layers=s.text_layers, num_attention_heads=s.clip_heads, max_position_embeddings=s.max_length,
        projection_dim=s.clip_width, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    vision = CLIPVisionConfig(
        hidden_size=s.clip_width, intermediate_size=4 * s.clip_width, num_hidden_layers=s.vision_layers,
        num_attention_heads=s.clip_heads, image_size=IMAGE_SIZE, patch_size=s.patch, projection_dim=s.clip_width,
    )
    cfg = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=s.clip_width)
    return CLIPModel(cfg)


def vae_model(s: Sizes = FULL):
    """AutoencoderKL with two downsamplings: 64x64x3 -> 16x16x4."""
    from diffusers import AutoencoderKL

    n = len(s.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=s.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=1, norm_num_groups=s.vae_groups, sample_size=IMAGE_SIZE,
    )


def unet_model(cross_attention_dim: int, s: Sizes = FULL):
    """UNet2DConditionModel on 16x16x4 latents; cross-attention at the 8x8 and 4x4 levels."""
    from diffusers import UNet2DConditionModel

    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(s.unet_channels) - 1)
    up = tuple(t.replace("Down", "Up") for t in reversed(down))
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=s.unet_channels, down_block_types=down, up_block_types=up,
        cross_attention_dim=cross_attention_dim, attention_head_dim=s.unet_heads, norm_num_groups=s.unet_groups,
    )


def train_scheduler():
    """DDPM, scaled_linear betas, epsilon prediction (Stable Diffusion's training schedule)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False)


def sample_scheduler():
    """The pipeline's default sampler: DDIM on the same schedule."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
