"""CUDA path of the flow family: the studio's fp16 request loads SD3 / FLUX in bfloat16 (where the GPU
has it) and a CLIP-guided run stays finite and close to the CPU float32 run. Skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.params import DiffusionParams


@pytest.mark.gpu
@pytest.mark.parametrize("which", ["sd3", "flux"])
def test_flow_generate_on_cuda(which: str, tiny_clip_dir: Path, tmp_path: Path) -> None:
    from app.clip import load_clip
    from app.demo_flow_models import build_tiny_flux, build_tiny_sd3
    from app.diffusion.generate import decode_to_pil, generate, load_diffusion_models

    folder = (build_tiny_sd3 if which == "sd3" else build_tiny_flux)(tmp_path / which, seed=0)
    device = torch.device("cuda")
    clip = load_clip(str(tiny_clip_dir), device, torch.float16)
    models = load_diffusion_models(str(folder), device, torch.float16, clip=clip, cache_dir=tmp_path)
    assert models.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    params = DiffusionParams(prompt="red heart", seed=3, steps=6, width=32, height=32, sampler="dpmpp_2m",
                             clip_guidance_scale=50)
    live = params.live()
    seen: list[float] = []
    latent = generate(models, params, live=lambda: live, on_step=lambda info: seen.append(info.sigma))
    assert len(seen) == 6 and seen[0] == 1.0 and torch.isfinite(latent).all()
    assert decode_to_pil(models, latent)[0].size == (32, 32)
    cpu = load_diffusion_models(str(folder), torch.device("cpu"), torch.float32, cache_dir=tmp_path)
    plain = params.model_copy(update={"clip_guidance_scale": 0.0})
    lv = plain.live()
    on_gpu = generate(models, plain, live=lambda: lv, on_step=lambda info: None).cpu()
    on_cpu = generate(cpu, plain, live=lambda: lv, on_step=lambda info: None)
    assert (on_gpu - on_cpu).abs().mean() < 0.05 * on_cpu.abs().mean() + 0.02
