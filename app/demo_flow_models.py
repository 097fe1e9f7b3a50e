"""Tiny random flow-matching pipelines in the real diffusers formats (StableDiffusion3Pipeline,
FluxPipeline folders), for the tests and bench/bench_diffusion.py; shapes after diffusers' own
pipeline tests. Written to disk, so loading them takes the same path as a real SD3 / FLUX folder."""

from __future__ import annotations

from pathlib import Path

import torch

from app.clip.word_tokenizer import write_word_clip_tokenizer

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def write_tiny_t5_tokenizer(folder: Path, max_length: int = 512) -> int:
    """A T5-style Unigram tokenizer (Metaspace pieces, </s> appended, pad 0) over word-initial and
    inner letters and digits, saved as tokenizer.json for T5TokenizerFast. Returns its vocab size.
    (T5's own spiece.model needs sentencepiece and a download; this one has the same interface.)"""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + c, -1.0) for c in LETTERS] + [(c, -2.0) for c in LETTERS] + [("\u2581", -3.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=max_length)
    fast.save_pretrained(folder)
    return len(vocab)


def _tiny_clip(folder: Path, projection: bool, width: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = write_word_clip_tokenizer(folder, [], max_length=77)
    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, projection_dim=width,
                         bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)
    return model, CLIPTokenizer.from_pretrained(folder)


def _tiny_t5(folder: Path, width: int = 32):
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    vocab = write_tiny_t5_tokenizer(folder)
    cfg = T5Config(vocab_size=vocab, d_model=width, d_kv=8, d_ff=2 * width, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(cfg), T5TokenizerFast.from_pretrained(folder)


def _tiny_vae(shift_factor: float, scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=32, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=shift_factor, scaling_factor=scaling_factor)


def build_tiny_sd3(folder: Path, *, seed: int = 0, t5: bool = True) -> Path:
    """A random StableDiffusion3Pipeline folder: MMDiT with patch 2 on 4-channel latents, f=2 VAE,
    CLIP-L / CLIP-G-shaped encoders with projections, a T5 encoder (or none), shift 3.0."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    te, tok = _tiny_clip(folder / "tokenizer", projection=True)
    te2, tok2 = _tiny_clip(folder / "tokenizer_2", projection=True)
    te3, tok3 = _tiny_t5(folder / "tokenizer_3") if t5 else (None, None)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=32,
                                        caption_projection_dim=32, pooled_projection_dim=64, out_channels=4,
                                        pos_embed_max_size=32)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=_tiny_vae(0.0609, 1.5305), text_encoder=te, tokenizer=tok, text_encoder_2=te2,
                                    tokenizer_2=tok2, text_encoder_3=te3, tokenizer_3=tok3)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_flux(folder: Path, *, seed: int = 0, guidance_embeds: bool = True) -> Path:
    """A random FluxPipeline folder: a FLUX transformer on packed 2 x 2 patches of 4-channel latents,
    f=2 VAE, CLIP-L-shaped and T5 encoders, dynamic shifting; `guidance_embeds` as FLUX.1-dev
    (False: as schnell)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    te, tok = _tiny_clip(folder / "tokenizer", projection=False)
    te2, tok2 = _tiny_t5(folder / "tokenizer_2")
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=guidance_embeds,
                                         axes_dims_rope=(4, 4, 8))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_tiny_vae(0.1159, 0.3611),
                        text_encoder=te, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
