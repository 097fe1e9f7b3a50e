"""Tiny random-initialised models in the real checkpoint formats.

They serve two purposes: the fallback when `models/` holds no trained weights ("untrained demo
weights"), and the tiny models the tests build. Because they are written to disk as a diffusers
pipeline folder, a transformers `CLIPModel` folder and a StyleGAN2 safetensors file, loading
them exercises the same code path as real checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from app.clip.word_tokenizer import write_word_clip_tokenizer

DEMO_NOTICE = "untrained demo weights"


def tiny_clip_configs(vocab_size: int, *, width: int = 32, image_size: int = 32, max_len: int = 77):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=width * 2, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=max_len, projection_dim=width,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    vision = CLIPVisionConfig(
        hidden_size=width, intermediate_size=width * 2, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=8, projection_dim=width,
    )
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=width)


def build_tiny_clip(folder: Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """A random transformers `CLIPModel` folder with its tokenizer and image processor."""
    from transformers import CLIPImageProcessor, CLIPModel

    folder = Path(folder)
    vocab_size = write_word_clip_tokenizer(folder, [], max_length=77)
    torch.manual_seed(seed)
    model = CLIPModel(tiny_clip_configs(vocab_size, image_size=image_size)).eval()
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def build_tiny_diffusion(folder: Path, *, seed: int = 0, sample_size: int = 8, prediction_type: str = "epsilon",
                         words: list[str] | None = None) -> Path:
    """A random diffusers Stable Diffusion pipeline folder (UNet on 4-channel latents, f=4 VAE).

    `sample_size` is the latent side; images are 4x that. `words`: the words its tokenizer knows
    whole (none by default: every word splits into letters).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    tok_dir = folder / "tokenizer"
    vocab_size = write_word_clip_tokenizer(tok_dir, list(words or []), max_length=77)
    torch.manual_seed(seed)
    text_cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=8, sample_size=sample_size * 4,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_cfg), tokenizer=CLIPTokenizer.from_pretrained(tok_dir),
        unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_sdxl(folder: Path, *, seed: int = 0, sample_size: int = 8, words: list[str] | None = None) -> Path:
    """A random diffusers StableDiffusionXLPipeline folder in SDXL's shape at a tiny size: two text
    encoders of different widths (32 and 48, the second projecting to 32 and giving the pooled
    embedding), a UNet with `addition_embed_type="text_time"` (6 size ids x 8 + 32 pooled in),
    linear projections and more transformer layers deeper down, as SDXL has; an f=4 VAE."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    tok_dir = folder / "tokenizer"
    vocab_size = write_word_clip_tokenizer(tok_dir, list(words or []), max_length=77)
    torch.manual_seed(seed)

    def text_cfg(width: int, **kw) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                              num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
                              eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1, hidden_act="gelu", **kw)

    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), use_linear_projection=True,
        cross_attention_dim=32 + 48, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=8, sample_size=sample_size * 4, scaling_factor=0.13025, force_upcast=True,
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
    )
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_cfg(32)), text_encoder_2=CLIPTextModelWithProjection(
            text_cfg(48, projection_dim=32)), tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
        scheduler=scheduler, force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


TINY_BIGGAN = {"output_dim": 32, "z_dim": 8, "class_embed_dim": 8, "channel_width": 4, "num_classes": 5,
               "layers": [[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]],
               "attention_layer_position": 2, "eps": 1e-4, "n_stats": 51}


def settle_spectral_norms(model: torch.nn.Module) -> None:
    """Set every spectral-norm module's stored (u, v) to its weight's top singular pair, as training leaves
    them; random u, v give a tiny sigma and so huge weights and a saturated image."""
    with torch.no_grad():
        for m in model.modules():
            if all(hasattr(m, k) for k in ("weight_orig", "weight_u", "weight_v")):
                U, _, Vh = torch.linalg.svd(m.weight_orig.reshape(m.weight_orig.shape[0], -1), full_matrices=False)
                m.weight_u.copy_(U[:, 0])
                m.weight_v.copy_(Vh[0])


@torch.no_grad()
def vary_standing_stats(model: torch.nn.Module) -> None:
    """Give BigGAN's per-truncation batch-norm statistics (`running_means` / `running_vars`) spread-out
    random values, so a random network's picture depends on them as a trained one's does."""
    for name, t in model.named_buffers():
        if name.endswith("running_means"):
            t.normal_(0, 0.3)
        elif name.endswith("running_vars"):
            t.uniform_(0.5, 2.0)


def build_tiny_biggan(folder: Path, *, seed: int = 0, class_names: list[str] | None = None) -> Path:
    """A random BigGAN-deep folder (32 px, 5 classes) in the converted format, with varied standing statistics."""
    from app.gan import biggan
    from app.gan.folder import write_folder

    torch.manual_seed(seed)
    G = biggan.BigGAN(biggan.BigGANConfig.from_dict(TINY_BIGGAN))
    vary_standing_stats(G)
    with torch.no_grad():
        G.embeddings.weight.normal_(0, 1)
        for name, p in G.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    settle_spectral_norms(G)
    cfg = {"format": biggan.FORMAT, "class_name": "BigGAN", "init_kwargs": TINY_BIGGAN}
    if class_names is not None:
        cfg["class_names"] = class_names
    return write_folder(folder, G.state_dict(), cfg)


def build_tiny_dcgan(folder: Path, *, seed: int = 0) -> Path:
    """A random DCGAN folder (16 px, nz 8) in the converted format."""
    from app.gan import dcgan
    from app.gan.folder import write_folder

    torch.manual_seed(seed)
    init_kwargs = {"channels": [8, 16, 8, 3], "bias": False}
    G = dcgan.DCGANGenerator(**init_kwargs)
    return write_folder(folder, G.state_dict(), {"format": dcgan.FORMAT, "class_name": "DCGANGenerator",
                                                 "init_kwargs": init_kwargs})


def build_tiny_upscalers(folder: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Random upscalers in the real formats, for tests: a Real-ESRGAN RRDBNet x4 folder (safetensors +
    config.json) and a StableDiffusionUpscalePipeline folder (7-channel UNet with a noise-level
    embedding, f=4 VAE, CLIP text encoder, DDIM v-prediction, DDPM low_res_scheduler)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from app.upscale.gan import save_folder
    from app.upscale.rrdbnet import RRDBConfig, RRDBNet

    folder = Path(folder)
    torch.manual_seed(seed)
    gan = save_folder(RRDBNet(RRDBConfig(scale=4, num_feat=8, num_block=1, num_grow_ch=4)), folder / "gan")
    diffusion = folder / "diffusion"
    tok_dir = diffusion / "tokenizer"
    vocab_size = write_word_clip_tokenizer(tok_dir, [], max_length=77)
    text_cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8, num_class_embeds=1000,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=8, sample_size=64,
        scaling_factor=0.08333,  # the factor StableDiffusionUpscalePipeline gives every VAE (it warns otherwise)
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=CLIPTextModel(text_cfg), tokenizer=CLIPTokenizer.from_pretrained(tok_dir), unet=unet,
        low_res_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                        beta_schedule="scaled_linear"),
        scheduler=DDIMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                                steps_offset=1, prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(diffusion, safe_serialization=True)
    return gan, diffusion
