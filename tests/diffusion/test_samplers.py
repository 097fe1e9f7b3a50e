"""Samplers against a Gaussian data distribution N(mu, s^2), whose ideal denoiser is known in
closed form: D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2)."""

from __future__ import annotations

import math

import pytest
import torch

from app.diffusion.noise import initial_noise, step_noise
from app.diffusion.samplers import (
    ancestral_split,
    run_sampler,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
)
from app.diffusion.sigmas import discrete_sigmas, discrete_timesteps, karras_sigmas, model_sigmas, sigma_to_t

MU, S = 1.5, 0.5
N = 20000


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
    return (S**2 * x + s2 * MU) / (S**2 + s2)


def start(sigma_max: float, seed: int = 0) -> torch.Tensor:
    """Samples of the exact marginal at sigma_max, as a batch of N one-pixel images."""
    return MU + math.sqrt(S**2 + sigma_max**2) * initial_noise([seed], (N, 1, 1, 1))[0]


# Ancestral samplers under-disperse by O(step size) (they plug in E[x0|x], not a draw of x0),
# so they get more steps than the ODE solvers.
@pytest.mark.parametrize("name,eta,steps", [
    ("euler", 0.0, 40), ("euler_a", 1.0, 200), ("ddim", 0.0, 40), ("ddim", 0.5, 200),
    ("ddpm", 0.0, 200), ("dpmpp_2m", 0.0, 20),
])
def test_recovers_gaussian(name: str, eta: float, steps: int) -> None:
    sigmas = karras_sigmas(steps, 0.02, 40.0)
    x = start(40.0)
    out = run_sampler(name, gaussian_denoiser, x, sigmas, eta=eta, noise=step_noise([7], (N, 1, 1, 1)))
    assert abs(out.mean().item() - MU) < 0.03
    assert abs(out.std().item() / S - 1) < 0.05


def test_convergence_order() -> None:
    """Doubling the steps halves Euler's error (first order) and quarters DPM++ 2M's (second)."""
    x = start(40.0)
    # The probability-flow ODE of a Gaussian: x(sigma) = mu + (x_T - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2).
    exact = MU + (x - MU) * S / math.sqrt(S**2 + 40.0**2)

    def err(sampler, n: int) -> float:
        return float((sampler(gaussian_denoiser, x, karras_sigmas(n, 0.02, 40.0)) - exact).abs().max())

    assert 1.6 < err(sample_euler, 16) / err(sample_euler, 32) < 2.5
    assert err(sample_dpmpp_2m, 16) / err(sample_dpmpp_2m, 32) > 3.0
    assert err(sample_dpmpp_2m, 16) < err(sample_euler, 16) / 3


def test_equivalent_forms_agree() -> None:
    """DDIM(eta) == Euler ancestral(eta) and DDPM == DDIM(1) in VE coordinates; DDIM(0) == Euler."""
    sigmas = karras_sigmas(10, 0.02, 40.0)
    x = start(40.0)[:256]
    noise = step_noise([3], (256, 1, 1, 1))
    for eta in (0.0, 0.3, 1.0):
        a = sample_ddim(gaussian_denoiser, x, sigmas, eta=eta, noise=noise)
        b = sample_euler_ancestral(gaussian_denoiser, x, sigmas, eta=eta, noise=noise)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sample_ddpm(gaussian_denoiser, x, sigmas, noise=noise),
                               sample_ddim(gaussian_denoiser, x, sigmas, eta=1.0, noise=noise), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sample_ddim(gaussian_denoiser, x, sigmas),
                               sample_euler(gaussian_denoiser, x, sigmas), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["euler", "euler_a", "ddim", "ddpm", "dpmpp_2m"])
def test_same_seed_bit_identical_and_fork_reproduces_tail(name: str) -> None:
    sigmas = karras_sigmas(12, 0.02, 40.0)
    x = start(40.0)[:64]

    def run(x0: torch.Tensor, k: int = 0, old: torch.Tensor | None = None) -> list[dict]:
        seen: list[dict] = []
        run_sampler(name, gaussian_denoiser, x0, sigmas, eta=0.7, noise=step_noise([11], (64, 1, 1, 1)),
                    start_index=k, old_denoised=old, callback=lambda d: seen.append(dict(d)))
        return seen

    first, second = run(x), run(x)
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(first, second, strict=True))
    k = 5
    fork = run(first[k - 1]["x"], k, first[k - 1]["denoised"])
    assert [d["i"] for d in fork] == list(range(k, 12))
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(first[k:], fork, strict=True))
    if name == "dpmpp_2m":  # without its history the resumed run restarts with a first-order step
        restarted = run(first[k - 1]["x"], k)
        assert not torch.equal(restarted[0]["x"], first[k]["x"])


def test_live_eta_is_reread_every_step() -> None:
    sigmas = karras_sigmas(6, 0.02, 40.0)
    reads: list[int] = []

    def eta() -> float:
        reads.append(1)
        return 0.0 if len(reads) > 2 else 1.0

    noise = step_noise([1], (4, 1, 1, 1))
    x = start(40.0)[:4]
    live = sample_euler_ancestral(gaussian_denoiser, x, sigmas, eta=eta, noise=noise)
    assert len(reads) == 6
    assert not torch.equal(live, sample_euler_ancestral(gaussian_denoiser, x, sigmas, eta=1.0, noise=noise))


def test_callback_exception_propagates() -> None:
    class Stop(Exception):
        pass

    def cb(d: dict) -> None:
        if d["i"] == 2:
            raise Stop

    with pytest.raises(Stop):
        sample_dpmpp_2m(gaussian_denoiser, start(40.0)[:4], karras_sigmas(6, 0.02, 40.0), callback=cb)


def test_ancestral_split_preserves_variance() -> None:
    down, up = ancestral_split(3.0, 1.0, 1.0)
    assert math.isclose(down**2 + up**2, 1.0)
    assert ancestral_split(3.0, 0.0, 1.0) == (0.0, 0.0)


def test_schedules() -> None:
    ks = karras_sigmas(10, 0.03, 14.6)
    assert len(ks) == 11 and ks[-1] == 0 and math.isclose(ks[0], 14.6) and math.isclose(ks[-2], 0.03)
    assert bool((ks[:-1] > ks[1:]).all())
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    assert discrete_timesteps(10, 1000, "leading", 1).tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert discrete_timesteps(10, 1000, "trailing").tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    ds = discrete_sigmas(ac, 10, "trailing")
    table = model_sigmas(ac)
    assert ds[0] == table[999] and ds[-2] == table[99] and ds[-1] == 0
    lin = discrete_sigmas(ac, 7, "linspace")
    assert math.isclose(lin[0], table[999]) and math.isclose(lin[-2], table[0])
    t = sigma_to_t(table[[0, 10, 500, 999]], table.log())
    torch.testing.assert_close(t, torch.tensor([0.0, 10.0, 500.0, 999.0], dtype=torch.float64))
    mid = sigma_to_t((table[10] * table[11]).sqrt().view(1), table.log())
    assert 10 < float(mid) < 11
    with pytest.raises(ValueError):
        discrete_timesteps(0, 1000)
