"""CUDA path: fp16 pipeline, the full websocket-free generate loop. Skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.params import DiffusionParams


@pytest.mark.gpu
def test_generate_on_cuda_fp16(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    from app.clip import load_clip
    from app.diffusion.generate import decode_to_pil, generate, load_diffusion_models

    device = torch.device("cuda")
    clip = load_clip(str(tiny_clip_dir), device, torch.float16)
    models = load_diffusion_models(str(tiny_diffusion_dir), device, torch.float16, clip=clip, cache_dir=tmp_path)
    params = DiffusionParams(prompt="red heart", seed=3, steps=6, width=32, height=32, clip_guidance_scale=50)
    live = params.live()
    seen: list[float] = []
    latent = generate(models, params, live=lambda: live, on_step=lambda info: seen.append(info.sigma))
    assert len(seen) == 6 and torch.isfinite(latent).all()
    assert decode_to_pil(models, latent)[0].size == (32, 32)
