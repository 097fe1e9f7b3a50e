"""Samplers over a denoiser D(x, sigma) -> x0 estimate, in VE form x_sigma = x0 + sigma * eps.

Every sampler walks `sigmas[start_index:]` (a schedule ending in 0), after each step calls
`callback({"i", "x", "sigma", "sigma_next", "denoised"})` with x already updated, and catches
nothing: raising from the callback is how a run is cancelled. `eta` may be a float or a
zero-argument callable re-read at every step; `noise(i)` supplies step i's fresh noise.

In VE coordinates several classic samplers are one update written in different variables:
DDIM(eta=0) is Euler on the probability-flow ODE, DDIM(eta) is Euler ancestral(eta), and the
DDPM posterior is either of them at eta=1 (Song et al. 2021, eq. 12/16; Karras et al. 2022, §3).
Each is written here in its own paper's variables; tests check they agree.

Each sampler is written once, as a generator of its steps (`*_steps`): it yields the request
"denoise this x at this sigma" and receives the x0 estimate (`denoised = yield x, sigma`), so the
maths never calls a network. `sample_*` drive that generator with a denoiser for one run (the
k-diffusion shape); the engine drives many runs' generators together and answers their requests
with one batched network call (app.engine.batcher).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]
NoiseFn = Callable[[int], Tensor]
Live = float | Callable[[], float]
Request = tuple[Tensor, Tensor]  # (x, sigma as a [batch] tensor): "denoise this"
Steps = Generator[Request, Tensor, Tensor]  # yields requests, receives x0 estimates, returns the final x


def _read(value: Live) -> float:
    return float(value() if callable(value) else value)


def _levels(sigmas: Tensor | Sequence[float]) -> list[float]:
    levels = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]
    if not levels or levels[-1] != 0.0:
        raise ValueError("a sigma schedule must end in 0")
    return levels


def _noise(noise: NoiseFn | None, i: int, x: Tensor) -> Tensor:
    return torch.randn_like(x) if noise is None else noise(i).to(x.device, x.dtype)


def _ask(x: Tensor, sigma: float) -> Request:
    return x, x.new_full((x.shape[0],), sigma)


def drive(steps: Steps, model: Denoiser) -> Tensor:
    """Run a sampler's steps to the end, answering each request with `model`; the final x."""
    try:
        request = next(steps)
        while True:
            request = steps.send(model(*request))
    except StopIteration as done:
        return done.value


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


def euler_steps(x: Tensor, sigmas: Tensor | Sequence[float], *,
                 callback: Callback | None = None, start_index: int = 0) -> Steps:
    """Euler on dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Alg. 1 without churn)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
        x = x + (x - denoised) / s[i] * (s[i + 1] - s[i])
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def euler_ancestral_steps(x: Tensor, sigmas: Tensor | Sequence[float], *,
                           callback: Callback | None = None, start_index: int = 0, eta: Live = 1.0,
                           noise: NoiseFn | None = None) -> Steps:
    """An Euler step down to sigma_down, then fresh noise of std sigma_up (k-diffusion's ancestral)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
        down, up = ancestral_split(s[i], s[i + 1], _read(eta))
        x = x + (x - denoised) / s[i] * (down - s[i])
        if up > 0:
            x = x + _noise(noise, i, x) * up
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def ddim_steps(x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                noise: NoiseFn | None = None) -> Steps:
    """DDIM (Song et al. 2021, eq. 12) divided through by sqrt(alpha_bar_prev):
    x' = x0 + sqrt(sigma'^2 - c^2) * eps + c * z, c = eta * sigma' * sqrt(1 - sigma'^2 / sigma^2)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
        eps = (x - denoised) / s[i]
        c = min(s[i + 1], _read(eta) * s[i + 1] * math.sqrt(max(0.0, 1 - (s[i + 1] / s[i]) ** 2)))
        x = denoised + eps * math.sqrt(s[i + 1] ** 2 - c**2)
        if c > 0:
            x = x + _noise(noise, i, x) * c
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def ddpm_steps(x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, noise: NoiseFn | None = None) -> Steps:
    """Ancestral sampling from the posterior q(x_sigma' | x_sigma, x0) (Ho et al. 2020, eq. 6-7),
    which in VE form is the Brownian bridge: mean x0 + (sigma'/sigma)^2 (x - x0),
    variance sigma'^2 (1 - (sigma'/sigma)^2)."""
    s = _levels(sigmas)
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
        ratio2 = (s[i + 1] / s[i]) ** 2
        x = denoised + (x - denoised) * ratio2
        if s[i + 1] > 0:
            x = x + _noise(noise, i, x) * (s[i + 1] * math.sqrt(1 - ratio2))
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def dpmpp_2m_steps(x: Tensor, sigmas: Tensor | Sequence[float], *,
                    callback: Callback | None = None, start_index: int = 0,
                    old_denoised: Tensor | None = None) -> Steps:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in t = -log sigma.

    The multistep history restarts at `start_index` (a first-order step) unless `old_denoised`,
    the x0 estimate of step start_index - 1, is given; then a resumed run equals the original.
    """
    s = _levels(sigmas)
    prev = old_denoised if start_index > 0 else None
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
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


def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                 callback: Callback | None = None, start_index: int = 0) -> Tensor:
    """`euler_steps` driven by `model`."""
    return drive(euler_steps(x, sigmas, callback=callback, start_index=start_index), model)


def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                           callback: Callback | None = None, start_index: int = 0, eta: Live = 1.0,
                           noise: NoiseFn | None = None) -> Tensor:
    """`euler_ancestral_steps` driven by `model`."""
    return drive(euler_ancestral_steps(x, sigmas, callback=callback, start_index=start_index, eta=eta,
                                       noise=noise), model)


def sample_ddim(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                noise: NoiseFn | None = None) -> Tensor:
    """`ddim_steps` driven by `model`."""
    return drive(ddim_steps(x, sigmas, callback=callback, start_index=start_index, eta=eta, noise=noise), model)


def sample_ddpm(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, noise: NoiseFn | None = None) -> Tensor:
    """`ddpm_steps` driven by `model`."""
    return drive(ddpm_steps(x, sigmas, callback=callback, start_index=start_index, noise=noise), model)


def sample_dpmpp_2m(model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                    callback: Callback | None = None, start_index: int = 0,
                    old_denoised: Tensor | None = None) -> Tensor:
    """`dpmpp_2m_steps` driven by `model`."""
    return drive(dpmpp_2m_steps(x, sigmas, callback=callback, start_index=start_index,
                                old_denoised=old_denoised), model)


STOCHASTIC = frozenset({"ddpm", "ddim", "euler_a"})


def sampler_steps(name: str, x: Tensor, sigmas: Tensor | Sequence[float], *,
                  callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                  noise: NoiseFn | None = None, old_denoised: Tensor | None = None) -> Steps:
    """The steps of the sampler named as in `DiffusionParams.sampler`, passing each what it uses.

    ddim and euler_a take the live eta; ddpm is ancestral at eta=1 by definition; euler and
    dpmpp_2m are deterministic.
    """
    common = {"callback": callback, "start_index": start_index}
    if name == "euler":
        return euler_steps(x, sigmas, **common)
    if name == "euler_a":
        return euler_ancestral_steps(x, sigmas, eta=eta, noise=noise, **common)
    if name == "ddim":
        return ddim_steps(x, sigmas, eta=eta, noise=noise, **common)
    if name == "ddpm":
        return ddpm_steps(x, sigmas, noise=noise, **common)
    if name == "dpmpp_2m":
        return dpmpp_2m_steps(x, sigmas, old_denoised=old_denoised, **common)
    raise ValueError(f"unknown sampler {name!r}")


def run_sampler(name: str, model: Denoiser, x: Tensor, sigmas: Tensor | Sequence[float], *,
                callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                noise: NoiseFn | None = None, old_denoised: Tensor | None = None) -> Tensor:
    """`sampler_steps(name, ...)` driven by `model`."""
    return drive(sampler_steps(name, x, sigmas, callback=callback, start_index=start_index, eta=eta, noise=noise,
                               old_denoised=old_denoised), model)
