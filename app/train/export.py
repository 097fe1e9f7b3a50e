"""Turn trained runs into the shipped folders (models/clip, models/diffusion) and draw a sample grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from app.train.models import sample_scheduler

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
SANITY_PROMPTS = ("red heart", "pizza", "cat face", "smiling face with sunglasses")


def copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(src / name, dst / name)


def load_as_float32(folder: Path) -> None:
    """Mark a transformers folder's fp16 weights to load as float32 by default.

    transformers 5 loads in the config's dtype unless told otherwise; left at float16 the pipeline's
    text encoder would feed half-precision states into a float32 UNet.
    """
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg["dtype"] = "float32"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def export_clip(src: Path, dst: Path, dtype: torch.dtype = torch.float16) -> Path:
    """A CLIPModel folder (weights in `dtype`) with tokenizer and image processor."""
    from transformers import CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(src, dtype=torch.float32)
    dst.mkdir(parents=True, exist_ok=True)
    model.to(dtype).save_pretrained(dst, safe_serialization=True)
    CLIPImageProcessor.from_pretrained(src).save_pretrained(dst)
    copy_tokenizer(src, dst)
    load_as_float32(dst)
    return dst


def export_pipeline(clip: Path, vae: Path, unet: Path, dst: Path, dtype: torch.dtype = torch.float16) -> Path:
    """A StableDiffusionPipeline folder: the CLIP's text tower, the VAE, the (EMA) UNet, DDIM."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from app.train.unet import text_tower

    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(vae, torch_dtype=torch.float32),
        text_encoder=text_tower(clip),
        tokenizer=CLIPTokenizer.from_pretrained(clip),
        unet=UNet2DConditionModel.from_pretrained(unet, torch_dtype=torch.float32),
        scheduler=sample_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(dtype).save_pretrained(dst, safe_serialization=True)
    copy_tokenizer(clip, dst / "tokenizer")
    load_as_float32(dst / "text_encoder")
    return dst


def load_pipeline(folder: Path, device: str = "cpu"):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def sample_grid(folder: Path, png: Path, prompts: tuple[str, ...] = SANITY_PROMPTS, per_prompt: int = 6,
                steps: int = 30, guidance: float = 5.0, seed: int = 0, device: str = "cpu") -> Path:
    """One row per prompt (label on the left), `per_prompt` seeds per row, written as a PNG."""
    from PIL import Image, ImageDraw

    pipe = load_pipeline(folder, device)
    rows = []
    for k, prompt in enumerate(prompts):
        gen = torch.Generator(device="cpu").manual_seed(seed + k)
        out = pipe([prompt] * per_prompt, num_inference_steps=steps, guidance_scale=guidance, generator=gen,
                   output_type="np").images
        rows.append(np.concatenate(list((out * 255).round().astype(np.uint8)), axis=1))
    grid = np.concatenate(rows, axis=0)
    h = grid.shape[0] // len(prompts)
    label_w = 180
    canvas = Image.new("RGB", (grid.shape[1] + label_w, grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid), (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for k, prompt in enumerate(prompts):
        draw.text((4, k * h + h // 2 - 6), prompt, fill="black")
    png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(png)
    return png
