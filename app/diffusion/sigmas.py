"""Noise-level schedules in VE form (x_sigma = x0 + sigma * eps), always ending in sigma = 0."""

from __future__ import annotations

import torch
from torch import Tensor

Spacing = str  # "leading" | "trailing" | "linspace", as diffusers names them


def model_sigmas(alphas_cumprod: Tensor) -> Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), ascending in t (Karras et al. 2022, Table 1)."""
    ac = alphas_cumprod.double()
    return ((1 - ac) / ac).sqrt()


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """n noise levels evenly spaced in sigma^(1/rho) (Karras et al. 2022, eq. 5), then 0."""
    if n < 1:
        raise ValueError("need at least one step")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


def discrete_timesteps(n: int, num_train: int, spacing: Spacing = "leading", steps_offset: int = 0) -> Tensor:
    """The model timesteps an n-step run visits, descending (the spacings of diffusers' schedulers)."""
    if not 1 <= n <= num_train:
        raise ValueError(f"steps must be between 1 and {num_train}")
    if spacing == "leading":
        ratio = num_train // n
        t = (torch.arange(n, dtype=torch.float64) * ratio).round() + steps_offset
    elif spacing == "trailing":
        ratio = num_train / n
        t = torch.arange(num_train, 0, -ratio, dtype=torch.float64).round().flip(0) - 1
    elif spacing == "linspace":
        t = torch.linspace(0, num_train - 1, n, dtype=torch.float64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}")
    return t.clamp(0, num_train - 1).flip(0)


def discrete_sigmas(alphas_cumprod: Tensor, n: int, spacing: Spacing = "leading", steps_offset: int = 0) -> Tensor:
    """The model's own schedule at n steps, sigma linearly interpolated at fractional timesteps, then 0."""
    table = model_sigmas(alphas_cumprod)
    t = discrete_timesteps(n, len(table), spacing, steps_offset)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=len(table) - 1)
    w = t - lo
    sig = table[lo] * (1 - w) + table[hi] * w
    return torch.cat([sig, sig.new_zeros(1)])


def sigma_to_t(sigma: Tensor, log_sigmas: Tensor) -> Tensor:
    """Fractional model timestep of a noise level, interpolating linearly in log sigma.

    `log_sigmas` is ascending (one entry per training timestep); sigmas outside the table clamp
    to its ends.
    """
    log_s = sigma.to(log_sigmas.dtype).clamp(min=1e-10).log()
    hi = torch.searchsorted(log_sigmas, log_s).clamp(1, len(log_sigmas) - 1)
    lo = hi - 1
    w = ((log_s - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])).clamp(0, 1)
    return lo + w

