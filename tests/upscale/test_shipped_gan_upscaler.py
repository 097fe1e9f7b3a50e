"""Sanity check of the shipped GAN upscaler (skipped when models/upscaler-gan is absent): on a drawn shape
(not from the training data), its x4 upscale is closer to the 256 px drawing than bicubic's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.engine.upscale_runner import gan_upscale

FOLDER = Path(__file__).resolve().parents[2] / "models" / "upscaler-gan"


@pytest.mark.skipif(not (FOLDER / "model.safetensors").is_file(), reason="models/upscaler-gan is not there")
def test_shipped_gan_upscaler_beats_bicubic_on_a_drawing() -> None:
    from app.upscale.gan import load_folder

    big = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(big)
    draw.ellipse((40, 40, 216, 216), fill=(230, 40, 40), outline=(20, 20, 20), width=6)
    draw.rectangle((100, 110, 156, 150), fill=(250, 210, 30))
    small = big.resize((64, 64), Image.Resampling.LANCZOS)
    truth = np.asarray(big, dtype=np.float64)
    ours = np.asarray(gan_upscale(load_folder(FOLDER), small), dtype=np.float64)
    bicubic = np.asarray(small.resize((256, 256), Image.Resampling.BICUBIC), dtype=np.float64)
    assert ours.shape == truth.shape
    assert np.abs(ours - truth).mean() < np.abs(bicubic - truth).mean()
