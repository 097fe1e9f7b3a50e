from __future__ import annotations

import pytest
import torch

from app.diffusion.denoiser import TextConditioning, UNetDenoiser, cfg_denoiser


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_x0_matches_diffusers_scheduler(tiny_diffusion_dir, pred: str) -> None:
    """At a training timestep our D(x_ve, sigma) equals diffusers' pred_original_sample."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_diffusion_dir, subfolder="unet").eval()
    sched = DDIMScheduler.from_pretrained(tiny_diffusion_dir, subfolder="scheduler", prediction_type=pred)
    sched.set_timesteps(10)
    den = UNetDenoiser(unet, sched.alphas_cumprod, pred)
    g = torch.Generator().manual_seed(0)
    x_vp = torch.randn(2, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 77, 32, generator=g)
    for t in sched.timesteps[[1, 6]]:
        with torch.no_grad():
            ref = sched.step(unet(x_vp, t, ctx).sample, t, x_vp).pred_original_sample
            ac = sched.alphas_cumprod[t]
            sigma = ((1 - ac) / ac).sqrt().expand(2)
            ours = den(x_vp / ac.sqrt(), sigma, ctx)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_cfg_weighted_prompts_one_batched_call() -> None:
    calls: list[int] = []

    def model(x: torch.Tensor, sigma: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x * ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1) + sigma.view(-1, 1, 1, 1)

    ctx = lambda v: torch.full((1, 3, 2), float(v))  # noqa: E731
    cond = TextConditioning(torch.cat([ctx(2), ctx(5)]), (1.0, -0.5), ctx(1))
    scale = {"v": 3.0}
    den = cfg_denoiser(model, cond, lambda: scale["v"])
    x = torch.randn(2, 1, 2, 2)
    sigma = torch.full((2,), 0.5)
    u, c1, c2 = x * 1 + 0.5, x * 2 + 0.5, x * 5 + 0.5
    torch.testing.assert_close(den(x, sigma), u + 3.0 * ((c1 - u) * 1.0 + (c2 - u) * -0.5))
    assert calls == [6]
    scale["v"] = 0.0
    torch.testing.assert_close(den(x, sigma), u)
    assert calls[-1] == 2
