"""app.diffusion.accel on CUDA (fp16, inductor with CUDA graphs): the same images as eager, no
recompile on a live CFG change, the side stream's scores. Skipped without a GPU (`pytest -m gpu`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from app.params import DiffusionParams

pytestmark = pytest.mark.gpu


@pytest.fixture()
def cuda_models(tiny_diffusion_dir: Path, tiny_clip_dir: Path, tmp_path: Path):
    from app.clip import load_clip
    from app.diffusion.accel import restore_unet
    from app.diffusion.generate import load_diffusion_models

    device = torch.device("cuda")
    clip = load_clip(str(tiny_clip_dir), device, torch.float16)
    models = load_diffusion_models(str(tiny_diffusion_dir), device, torch.float16, clip=clip, cache_dir=tmp_path)
    torch._dynamo.reset()
    yield models
    restore_unet(models.unet)
    torch._dynamo.reset()


def run(models, steps: int, cfg0: float, size: int = 64):
    """(final latent, fast previews, CLIP scores) of a run whose CFG changes at every step boundary."""
    from app.diffusion.generate import generate
    from app.diffusion.previews import fast_preview

    params = DiffusionParams(prompt="red heart", negative_prompt="blue", seed=3, steps=steps, width=size,
                             height=size, cfg_scale=cfg0, sampler="dpmpp_2m", karras=True)
    state = {"live": params.live().model_copy(update={"full_decode_every": 2})}
    previews, scores = [], []

    def boundary(n: int) -> None:
        state["live"] = state["live"].model_copy(update={"cfg_scale": cfg0 + 0.5 * n})

    def on_step(info) -> None:
        previews.append(fast_preview(models.rgb_map, info.denoised))
        scores.append(info.clip_score)

    latent = generate(models, params, live=lambda: state["live"], on_step=on_step, on_boundary=boundary)
    return latent, previews, scores


def test_fp16_compiled_cuda_graphs_match_eager_without_recompiling(cuda_models) -> None:
    from torch._dynamo.utils import counters

    from app.diffusion.accel import AccelOptions, prepare_models

    eager, eager_previews, eager_scores = run(cuda_models, steps=6, cfg0=5.0)
    prepare_models(cuda_models, AccelOptions(channels_last=True, compile_mode="reduce-overhead"))
    compiled, previews, scores = run(cuda_models, steps=6, cfg0=5.0)
    torch.testing.assert_close(compiled, eager, rtol=2e-2, atol=2e-2)
    assert len(previews) == len(eager_previews) == 6
    for a, b in zip(previews, eager_previews):
        assert abs(a.astype(int) - b.astype(int)).max() <= 3
    assert [s is None for s in scores] == [s is None for s in eager_scores]
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        run(cuda_models, steps=9, cfg0=3.0)  # other sigmas and another CFG ramp
    assert counters["stats"]["unique_graphs"] == graphs


def test_side_stream_scores_equal_one_stream(cuda_models) -> None:
    cuda_models.side_stream = True
    _, _, side = run(cuda_models, steps=4, cfg0=6.0)
    cuda_models.side_stream = False
    _, _, inline = run(cuda_models, steps=4, cfg0=6.0)
    assert any(s is not None for s in side)
    assert side == pytest.approx(inline, abs=1e-3)


def test_time_to_first_preview_is_measured(cuda_models, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, not asserted (timings go in bench/): generate -> first fast preview, 512x512 latents' worth."""
    from app.diffusion.generate import generate
    from app.diffusion.previews import fast_preview

    params = DiffusionParams(prompt="red heart", seed=1, steps=20, width=256, height=256)
    lv = params.live()
    seen: list[float] = []

    class Stop(Exception):
        pass

    def on_step(info) -> None:
        fast_preview(cuda_models.rgb_map, info.denoised)
        seen.append(time.perf_counter() - t0)
        raise Stop

    for _ in range(3):  # the first includes CUDA warm-up
        t0 = time.perf_counter()
        with pytest.raises(Stop):
            generate(cuda_models, params, live=lambda: lv, on_step=on_step)
    with capsys.disabled():
        print(f"\ntime to first preview (tiny UNet, 256x256, warm): {min(seen[1:]) * 1000:.1f} ms")
    assert len(seen) == 3
