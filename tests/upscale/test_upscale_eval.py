"""`python -m app evaluate --upscale`'s parts: the metrics, and one evaluation of bicubic and a tiny random
diffusion upscaler (from noise and from the enlargement) through the studio's sampler code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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


def test_the_probe_resumes_from_the_targets_own_latent(tmp_path: Path) -> None:
    """Resumed at the last of 4 steps, only the smallest noise level is the (random) model's, so the picture
    keeps much of the target's (through the VAE); resumed at step 1 the random model has three steps to
    lose it, and ends as far from it as a run from noise."""
    from app.demo_models import build_tiny_upscalers
    from app.diffusion import previews
    from app.diffusion.generate import decode_to_pil, pil_to_tensor
    from app.train.upscale_eval import main, probe_upscaler
    from app.upscale.diffusion import load_upscaler_models

    _, folder = build_tiny_upscalers(tmp_path / "up")
    rng = np.random.default_rng(2)
    high = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # flat 8 px squares
    low = high[::4, ::4].copy()
    models = load_upscaler_models(folder, torch.device("cpu"), torch.float32)
    through_vae = np.asarray(decode_to_pil(models, previews.encode(models.vae, pil_to_tensor(Image.fromarray(high), 64, 64)))[0])
    late, early = (np.asarray(probe_upscaler(folder, 4, "euler", 0, start, [low], [high])(Image.fromarray(low), "a flag", 0))
                   for start in (3, 1))
    plain = np.asarray(diffusion_upscaler(folder, 4, "euler", 0, 1.0, None)(Image.fromarray(low), "a flag", 0))
    assert psnr(late, through_vae) > psnr(early, through_vae) + 3
    assert psnr(early, through_vae) == pytest.approx(psnr(plain, through_vae), abs=1.0)
    with pytest.raises(SystemExit):
        main(["--diffusion", str(folder), "--probe", "0"])  # step 0 is the plain run from noise
