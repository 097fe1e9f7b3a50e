"""Rectified-flow schedule and samplers (app.diffusion.flow) against diffusers' scheduler, the VE
samplers under the change of variables, and the Gaussian case where the ideal velocity is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.diffusion import flow
from app.diffusion.samplers import run_sampler

# data ~ N(mu, s^2), one (mu, s) per dimension
MU = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
S = torch.tensor([0.3, 1.5, 0.05, 1.0], dtype=torch.float64)


def ideal_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The optimal v = E[eps - x0 | x_t] for Gaussian data: E[x0 | x_t] is linear in x_t."""
    t = t.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    a = 1 - t
    x0 = MU + a * S**2 / (a**2 * S**2 + t**2) * (x - a * MU)
    return (x - x0) / t


def ideal_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """D(x_t, t) = x_t - t v, the flow adapter's formula, on the analytic velocity."""
    return x - t.view(-1, *([1] * (x.ndim - 1))).to(x.dtype) * ideal_velocity(x, t)


def sd3_times(n: int) -> torch.Tensor:
    return flow.flow_times(flow.FlowSchedule(shift=3.0), n, 0)


# --- schedule --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 4, 28])
@pytest.mark.parametrize("config", [{"shift": 3.0}, {"shift": 1.0}, {"shift": 3.0, "shift_terminal": 0.1}])
def test_static_shift_matches_diffusers(n: int, config: dict) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(**config)
    sched.set_timesteps(n)
    ours = flow.flow_times(flow.FlowSchedule.from_config(dict(sched.config)), n, 0)
    if n == 1 and config.get("shift_terminal"):  # diffusers divides 0 by 0 there; ours stays at t = 1
        assert ours.tolist() == [1.0, 0.0]
        return
    assert torch.equal(ours.float(), sched.sigmas)
    assert ours[0] == 1.0 or config.get("shift_terminal")


@pytest.mark.parametrize("n,side", [(4, 16), (20, 64), (50, 128)])
def test_dynamic_shift_matches_flux_pipeline(n: int, side: int) -> None:
    """FluxPipeline: sigmas = linspace(1, 1/n, n), mu from the packed sequence length."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                            base_image_seq_len=256, max_image_seq_len=4096)
    seq = (side // 2) ** 2
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=calculate_shift(seq))
    ours = flow.flow_times(flow.FlowSchedule.from_config(dict(sched.config)), n, seq, pipeline_linspace=True)
    torch.testing.assert_close(ours.float(), sched.sigmas, rtol=0, atol=1e-7)


def test_schedule_refusals() -> None:
    with pytest.raises(ValueError):
        flow.flow_times(flow.FlowSchedule(), 0, 0)
    with pytest.raises(ValueError):
        flow.FlowSchedule.from_config({"time_shift_type": "cubic"})
    with pytest.raises(ValueError):
        flow.sample_flow_euler(ideal_denoiser, torch.zeros(1, 4), [2.0, 0.0])


# --- samplers vs diffusers and vs the VE samplers ---------------------------------------------------

def test_euler_is_flow_match_euler_step_by_step() -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(6)
    x0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs = x0.clone()
    for t in sched.timesteps:
        v = ideal_velocity(theirs, (t / 1000).double().expand(3))
        theirs = sched.step(v, t, theirs).prev_sample.double()
    ours = flow.sample_flow_euler(ideal_denoiser, x0.clone(), sched.sigmas.double())
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def ve_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The same model in VE form: x_VE = x_t / (1 - t), sigma = t / (1 - t)."""
    t = sigma / (1 + sigma)
    return ideal_denoiser(x / (1 + sigma.view(-1, 1)), t)


@pytest.mark.parametrize("name,eta", [("euler", 0.0), ("euler_a", 0.7), ("ddim", 0.4), ("ddpm", 1.0),
                                      ("dpmpp_2m", 0.0)])
def test_flow_samplers_equal_ve_samplers_where_sigma_is_finite(name: str, eta: float) -> None:
    ts = flow.shift_time(np.linspace(0.97, 0.02, 7), 3.0).tolist() + [0.0]
    sigmas = [flow.ve_sigma(t) for t in ts]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    zs = [torch.randn(5, 4, generator=gen, dtype=torch.float64) for _ in ts]
    got = flow.run_flow_sampler(name, ideal_denoiser, x * ts[0], ts, eta=eta, noise=lambda i: zs[i])
    want = run_sampler(name, ve_model, x * sigmas[0], sigmas, eta=eta, noise=lambda i: zs[i])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["euler", "euler_a", "ddpm", "dpmpp_2m"])
def test_from_pure_noise_resume_and_callback(name: str) -> None:
    ts = sd3_times(6)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    zs = [torch.randn(2, 4, generator=gen, dtype=torch.float64) for _ in ts]
    seen: list[dict] = []
    out = flow.run_flow_sampler(name, ideal_denoiser, x, ts, eta=1.0, noise=lambda i: zs[i], callback=seen.append)
    assert torch.isfinite(out).all() and [d["i"] for d in seen] == list(range(6))
    assert seen[0]["sigma"] == 1.0 and seen[-1]["sigma_next"] == 0.0
    k = 3
    resumed = flow.run_flow_sampler(name, ideal_denoiser, seen[k - 1]["x"], ts, eta=1.0, noise=lambda i: zs[i],
                                    start_index=k, old_denoised=seen[k - 1]["denoised"])
    assert torch.equal(resumed, out)


# --- the Gaussian case ------------------------------------------------------------------------------

def endpoint_error(name: str, ts: list[float] | torch.Tensor, eps: torch.Tensor) -> float:
    """RMS error (in units of the data's std) of a deterministic sampler from x_1 = eps: the exact ODE
    endpoint is mu + s eps (the flow moves each point along its quantile)."""
    out = flow.run_flow_sampler(name, ideal_denoiser, eps.clone(), ts)
    return float(((out - (MU + S * eps)) / S).pow(2).mean().sqrt())


def flux_times(n: int) -> torch.Tensor:
    return flow.flow_times(flow.FlowSchedule(use_dynamic_shifting=True), n, 1024, pipeline_linspace=True)


def log_snr_times(n: int) -> list[float]:
    """t = 1, then n - 1 times evenly spaced in log-SNR log((1 - t) / t) from -6 to 6, then 0."""
    lam = np.linspace(-6, 6, n - 1)
    return [1.0, *(1 / (1 + np.exp(lam))).tolist(), 0.0]


STEPS = (8, 16, 32, 64)


@pytest.mark.parametrize("times", [sd3_times, flux_times, log_snr_times])
def test_deterministic_samplers_converge_higher_order_smaller_error(times) -> None:
    eps = torch.randn(256, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    errors = {name: [endpoint_error(name, times(n), eps) for n in STEPS] for name in ("euler", "dpmpp_2m")}
    for name, errs in errors.items():
        assert all(a > b for a, b in zip(errs, errs[1:])), (name, errs)
    assert all(h < e for h, e in zip(errors["dpmpp_2m"], errors["euler"])), errors


def test_observed_orders_on_an_even_log_snr_grid() -> None:
    """Halving the step in log-SNR halves Euler's error (first order) and quarters DPM++ 2M's (second)."""
    eps = torch.randn(256, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for name, order in (("euler", 1), ("dpmpp_2m", 2)):
        errs = [endpoint_error(name, log_snr_times(n), eps) for n in (32, 64, 128)]
        observed = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
        assert all(abs(o - order) < 0.3 for o in observed), (name, observed)
    assert endpoint_error("dpmpp_2m", log_snr_times(128), eps) < 1e-3


@pytest.mark.parametrize("name", ["euler_a", "ddpm"])
def test_stochastic_samplers_converge_to_the_data_distribution(name: str) -> None:
    """The mean is right at any step count; the spread, which ancestral steps shrink by a first-order
    error, approaches the data's as the steps grow."""
    gen = torch.Generator().manual_seed(4)
    n = 20000
    spread_errors = []
    for steps in (25, 100, 400):
        ts = log_snr_times(steps)
        zs = [torch.randn(n, 4, generator=gen, dtype=torch.float64) for _ in ts]
        out = flow.run_flow_sampler(name, ideal_denoiser, torch.randn(n, 4, generator=gen, dtype=torch.float64), ts,
                                    eta=1.0, noise=lambda i: zs[i])
        torch.testing.assert_close((out.mean(0) - MU) / S, torch.zeros(4, dtype=torch.float64), rtol=0, atol=0.03)
        spread_errors.append(float((out.std(0) / S - 1).abs().max()))
    assert spread_errors[0] > spread_errors[1] > spread_errors[2], spread_errors
    assert spread_errors[2] < 0.03, spread_errors


def test_guidance_weight_is_tweedie_capped() -> None:
    t = torch.tensor([0.0, 0.5, 0.9, 1.0])
    w = flow.guidance_weight(t)
    torch.testing.assert_close(w[:3], t[:3] ** 2 / (1 - t[:3]))
    assert w[3] == pytest.approx(flow.GUIDANCE_WEIGHT_CAP)
    assert flow.ve_sigma(1.0) == math.inf and flow.ve_sigma(0.5) == 1.0
