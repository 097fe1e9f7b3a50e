"""Samplers over a denoiser D(x, sigma) -> x0 estimate, in VE form x_sigma = x0 + sigma * eps.

Every sampler walks `sigmas[start_index:]` (a schedule ending in 0), after each step calls
`callback({"i", "x", "sigma", "sigma_next", "denoised"})` with x already updated, and catches
nothing: raising from the callback is how a run is cancelled. `eta` may be a float or a
zero-argument callable re-read at every step; `noise(i)` supplies step i's fresh noise.

In VE coordinates several classic samplers are one update written in different variables:
DDIM(eta=0) is Euler on the probability-flow ODE, DDIM(eta) is Euler ancestral(eta), and the
DDPM posterior is either of them at eta=1 (Song et al. 2021, eq. 12/16; Karras et al. 2022, §3).
Each is written here in its own paper's variables; tests check they agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]
NoiseFn = Callable[[int], Tensor]
Live = float | Callable[[], float]


def _read(value: Live) -> float:
    return float(value() if callable(value) else value)


def _levels(sigmas: Tensor | Sequence[float]) -> list[float]:
    levels = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]
    if not levels or levels[-1] != 0.0:
        raise ValueError("a sigma schedule must end in 0")
    return levels


def _noise(noise: NoiseFn | None, i: int, x: Tensor) -> Tensor:
    return torch.randn_like(x) if noise is None else noise(i).to(x.device, x.dtype)


def _denoise(model: Denoiser, x: Tensor, sigma: float) -> Tensor:
    return model(x, x.new_full((x.shape[0],), sigma))


def _emit(callback: Callback | None, i: int, x: Tensor, sigma: float, sigma_next: float, denoised: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up): reach sigma_next by a deterministic step to sigma_down plus fresh
    noise of std sigma_up; eta=1 is the DDPM posterior variance, eta=0 no noise."""
    if sigma_next == 0.0 or eta == 0.0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * sigma_next * math.sqrt(max(0.0, 1 - (sigma_next / sigma) ** 2)))
    return math.sqrt(sigma_next**2 - up**2), up


def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                 callback: Callback | None = None, start_index: int = 0) -> Tensor:
    """Euler on dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Alg. 1 without churn)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = _denoise(model, x, s[i])
        x = x + (x - denoised) / s[i] * (s[i + 1] - s[i])
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                           callback: Callback | None = None, start_index: int = 0, eta: Live = 1.0,
                           noise: NoiseFn | None = None) -> Tensor:
    """An Euler step down to sigma_down, then fresh noise of std sigma_up (k-diffusion's ancestral)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = _denoise(model, x, s[i])
        down, up = ancestral_split(s[i], s[i + 1], _read(eta))
        x = x + (x - denoised) / s[i] * (down - s[i])
        if up > 0:
            x = x + _noise(noise, i, x) * up
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def sample_ddim(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                noise: NoiseFn | None = None) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) divided through by sqrt(alpha_bar_prev):
    x' = x0 + sqrt(sigma'^2 - c^2) * eps + c * z, c = eta * sigma' * sqrt(1 - sigma'^2 / sigma^2)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = _denoise(model, x, s[i])
        eps = (x - denoised) / s[i]
        c = min(s[i + 1], _read(eta) * s[i + 1] * math.sqrt(max(0.0, 1 - (s[i + 1] / s[i]) ** 2)))
        x = denoised + eps * math.sqrt(s[i + 1] ** 2 - c**2)
        if c > 0:
            x = x + _noise(noise, i, x) * c
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def sample_ddpm(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, noise: NoiseFn | None = None) -> Tensor:
    """Ancestral sampling from the posterior q(x_sigma' | x_sigma, x0) (Ho et al. 2020, eq. 6-7),
    which in VE form is the Brownian bridge: mean x0 + (sigma'/sigma)^2 (x - x0),
    variance sigma'^2 (1 - (sigma'/sigma)^2)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = _denoise(model, x, s[i])
        ratio2 = (s[i + 1] / s[i]) ** 2
        x = denoised + (x - denoised) * ratio2
        if s[i + 1] > 0:
            x = x + _noise(noise, i, x) * (s[i + 1] * math.sqrt(1 - ratio2))
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def sample_dpmpp_2m(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                    callback: Callback | None = None, start_index: int = 0,
                    old_denoised: Tensor | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in t = -log sigma.

    The multistep history restarts at `start_index` (a first-order step) unless `old_denoised`,
    the x0 estimate of step start_index - 1, is given; then a resumed run equals the original.
    """
    s = _levels(sigmas)
    prev = old_denoised if start_index > 0 else None
    for i in range(start_index, len(s) - 1):
        denoised = _denoise(model, x, s[i])
        if s[i + 1] == 0.0:
            x = denoised
        else:
            h = math.log(s[i]) - math.log(s[i + 1])
            d = denoised
            if prev is not None:
                r = (math.log(s[i - 1]) - math.log(s[i])) / h
                d = denoised * (1 + 1 / (2 * r)) - prev * (1 / (2 * r))
            x = x * (s[i + 1] / s[i]) - d * math.expm1(-h)
        prev = denoised
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


STOCHASTIC = frozenset({"ddpm", "ddim", "euler_a"})


def run_sampler(name: str, model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                noise: NoiseFn | None = None, old_denoised: Tensor | None = None) -> Tensor:
    """Dispatch by the names of `DiffusionParams.sampler`, passing each sampler what it uses.

    ddim and euler_a take the live eta; ddpm is ancestral at eta=1 by definition; euler and
    dpmpp_2m are deterministic.
    """
    common = {"callback": callback, "start_index": start_index}
    if name == "euler":
        return sample_euler(model, x, sigmas, **common)
    if name == "euler_a":
        return sample_euler_ancestral(model, x, sigmas, eta=eta, noise=noise, **common)
    if name == "ddim":
        return sample_ddim(model, x, sigmas, eta=eta, noise=noise, **common)
    if name == "ddpm":
        return sample_ddpm(model, x, sigmas, noise=noise, **common)
    if name == "dpmpp_2m":
        return sample_dpmpp_2m(model, x, sigmas, old_denoised=old_denoised, **common)
    raise ValueError(f"unknown sampler {name!r}")
