"""Sanity check of the shipped diffusion upscaler (skipped when models/upscaler-diffusion is absent): on a
drawn badge (not from the training data), its x4 upscale with the panel's defaults is closer to the 256 px
drawing than bicubic's on the judge's perceptual distance, the measure it was chosen on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from app.settings import MODELS_DIR

FOLDER = Path(__file__).resolve().parents[2] / "models" / "upscaler-diffusion"


def drawing() -> Image.Image:
    big = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(big)
    draw.rounded_rectangle((28, 28, 228, 228), radius=40, fill=(70, 130, 200), outline=(30, 60, 110), width=8)
    draw.ellipse((78, 78, 178, 178), fill=(250, 210, 40), outline=(150, 100, 10), width=6)
    draw.rectangle((112, 120, 144, 136), fill=(200, 40, 40))
    return big


@pytest.mark.skipif(not (FOLDER / "model_index.json").is_file(), reason="models/upscaler-diffusion is not there")
def test_shipped_diffusion_upscaler_beats_bicubic_on_a_drawing() -> None:
    from app.params import UPSCALE_SAMPLER
    from app.train.judge import load_judge
    from app.train.perceptual import perceptual_distance
    from app.train.upscale_eval import diffusion_upscaler

    big = drawing()
    small = big.resize((64, 64), Image.Resampling.LANCZOS)
    ours = diffusion_upscaler(FOLDER, 20, UPSCALE_SAMPLER, 20, 1.0, None)(small, "a blue badge with a yellow coin", 0)
    bicubic = small.resize((256, 256), Image.Resampling.BICUBIC)
    judge = load_judge(MODELS_DIR / "judge")
    as_t = lambda im: torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        d_ours, d_bicubic = (float(perceptual_distance(judge, as_t(im), as_t(big))[0]) for im in (ours, bicubic))
    assert ours.size == (256, 256)
    assert d_ours < d_bicubic, (d_ours, d_bicubic)
