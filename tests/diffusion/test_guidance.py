from __future__ import annotations

from types import SimpleNamespace

import torch

from app.diffusion.cutouts import CutSpec, make_cutouts
from app.diffusion.guidance import clamp_rms, clip_guided, range_loss, spherical_dist, tv_loss
from app.diffusion.noise import CUTS, generator


def knobs(**kw) -> SimpleNamespace:
    base = dict(clip_guidance_scale=0.0, cutn_overview="[4]*1000", cutn_inner="[3]*1000", cut_ic_pow=1.0,
                cut_icgray_p="[0.5]*1000", cut_flip=True, tv_scale=0.0, range_scale=0.0, sat_scale=0.0,
                clamp_grad=False, clamp_max=0.05)
    return SimpleNamespace(**(base | kw))


def test_cutouts_shape_and_determinism() -> None:
    img = torch.rand(2, 3, 20, 28)
    spec = CutSpec(overview=4, inner=3, ic_pow=2.0, grey_p=0.5, flip=True)
    a = make_cutouts(img, 16, spec, generator(1, CUTS, 7))
    b = make_cutouts(img, 16, spec, generator(1, CUTS, 7))
    c = make_cutouts(img, 16, spec, generator(1, CUTS, 8))
    assert a.shape == (2, 7, 3, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a[:, 4:], c[:, 4:])
    assert torch.equal(a[:, 1], a[:, 0].flip(-1))  # overview variants: plain, mirrored, grey, grey mirrored
    assert torch.allclose(a[:, 2, 0], a[:, 2, 1]) and not torch.allclose(a[:, 0, 0], a[:, 0, 1])
    img.requires_grad_(True)
    make_cutouts(img, 16, spec, generator(1, CUTS, 7)).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert make_cutouts(img, 16, CutSpec(0, 0), generator(1, CUTS, 0)).shape == (2, 0, 3, 16, 16)


def test_losses_and_clamp() -> None:
    assert float(spherical_dist(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))) == 0.0
    opposite = float(spherical_dist(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])))
    assert abs(opposite - 2 * (torch.pi / 2) ** 2) < 1e-5
    flat = torch.zeros(1, 3, 5, 5)
    assert float(tv_loss(flat)) == 0.0 and float(tv_loss(torch.rand(1, 3, 5, 5))) > 0
    assert float(range_loss(flat)) == 0.0 and float(range_loss(flat + 2)) == 1.0
    g = torch.randn(2, 4, 3, 3)
    g[1] *= 1e-4
    out = clamp_rms(g, 0.05)
    assert abs(float(out[0].pow(2).mean().sqrt()) - 0.05) < 1e-6
    assert torch.equal(out[1], g[1])


def test_guided_denoiser_moves_against_the_loss_gradient() -> None:
    """With an identity 'decoder' and only the range loss, guidance pulls x0 back into [-1, 1],
    by -grad * sigma^2; NaN gradients become 0 and the RMS clamp bounds the step."""
    base = lambda x, sigma: x * 0.5  # noqa: E731
    sigmas = [3.0, 1.0, 0.0]
    x = torch.full((1, 3, 4, 4), 6.0)
    x[0, 0, 0, 0] = 0.0
    sigma = torch.full((1,), 1.0)
    k = knobs(range_scale=1.0)
    den = clip_guided(base, lambda z: z, lambda: k, sigmas, seed=0)(x, sigma)
    grad = 2 * (x * 0.5 - 1) * 0.5 / x[0].numel()
    grad[0, 0, 0, 0] = 0.0
    torch.testing.assert_close(den, x * 0.5 - grad * 1.0)
    k.clamp_grad, k.clamp_max = True, 0.01  # the raw RMS is about 0.04
    clamped = clip_guided(base, lambda z: z, lambda: k, sigmas, seed=0)(x, torch.full((1,), 3.0))
    shift = (clamped - x * 0.5) / 9.0
    assert abs(float(shift.pow(2).mean().sqrt()) - 0.01) < 1e-6 and float(shift.max()) <= 0
    nan_decode = lambda z: z * torch.tensor(float("nan"))  # noqa: E731
    k = knobs(range_scale=1.0)
    assert torch.equal(clip_guided(base, nan_decode, lambda: k, sigmas, seed=0)(x, sigma), x * 0.5)
    off = knobs()
    assert torch.equal(clip_guided(base, lambda z: z, lambda: off, sigmas, seed=0)(x, sigma), x * 0.5)
