"""`python -m app evaluate --upscale`'s parts: the metrics, and one evaluation of bicubic and a tiny random
diffusion upscaler (from noise and from the enlargement) through the studio's sampler code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.settings import MODELS_DIR
from app.train.upscale_eval import bicubic, diffusion_upscaler, evaluate, psnr, ssim


def test_psnr_and_ssim_of_known_pairs() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)))
    assert ssim(a, 255 - a) < 0.0 < ssim(a, b) < 1.0  # an inverted picture anti-correlates


@pytest.mark.skipif(not (MODELS_DIR / "judge").is_dir(), reason="the judge ships in models/judge")
def test_one_run_evaluates_every_method_on_the_same_pictures(tmp_path: Path) -> None:
    from app.demo_models import build_tiny_upscalers

    _, folder = build_tiny_upscalers(tmp_path / "up")
    rng = np.random.default_rng(1)
    highs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    lows = [h[::4, ::4].copy() for h in highs]
    methods = {"bicubic": bicubic,
               "diffusion": diffusion_upscaler(folder, 4, "euler", 0, 1.0, None),
               "diffusion (strength 0.5)": diffusion_upscaler(folder, 4, "euler", 0, 1.0, None, strength=0.5)}
    out = evaluate(methods, lows, highs, ["a cat", "a dog"], MODELS_DIR / "judge")
    assert set(out) == set(methods)
    for row in out.values():
        assert set(row) == {"psnr", "ssim", "perceptual", "ms_per_image"} and row["ms_per_image"] >= 0
    assert out["diffusion (strength 0.5)"]["psnr"] != out["diffusion"]["psnr"]
