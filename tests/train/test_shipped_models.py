"""The committed models/: the pipeline draws the sanity prompts and the shipped CLIP recognises them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

MODELS = Path(__file__).resolve().parents[2] / "models"

pytestmark = pytest.mark.skipif(not (MODELS / "diffusion" / "model_index.json").exists(),
                                reason="no trained models/ in this checkout")


def test_shipped_pipeline_draws_what_clip_recognises() -> None:
    from app.clip import load_clip
    from app.train.export import SANITY_PROMPTS, load_pipeline

    pipe = load_pipeline(MODELS / "diffusion")
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    images = pipe(list(SANITY_PROMPTS), num_inference_steps=12, guidance_scale=5.0, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (len(SANITY_PROMPTS), 3, 64, 64)
    clip = load_clip(str(MODELS / "clip"), torch.device("cpu"))
    sims = clip.encode_image(images) @ clip.encode_text(list(SANITY_PROMPTS)).T
    assert sims.argmax(dim=1).tolist() == list(range(len(SANITY_PROMPTS)))
