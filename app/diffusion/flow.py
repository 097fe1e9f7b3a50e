"""Rectified flow (SD3, FLUX.1): the schedule, the noising and the samplers, as pure functions.

The forward process is x_t = (1 - t) x0 + t eps for t in [0, 1]; the network predicts the velocity
v = dx_t/dt = eps - x0, so the x0 estimate is D(x_t, t) = x_t - t v (Liu et al. 2022; Esser et al.
2024, eq. 1-3). In VE terms x_t / (1 - t) = x0 + sigma eps with sigma = t / (1 - t).

Why flow-native samplers, not the VE samplers on x_t / (1 - t): the schedules of these models start
at t = 1 exactly (pure noise, sigma = infinity), and near it the VE state x_t / (1 - t) is so large
that float32 loses the x0 estimate in x - D (at sigma = 1e4 one ulp of x is about 1e-3). So here the
state stays x_t, the denoiser is D(x_t, t) -> x0 and every sampler keeps samplers.py's form (a
generator of its steps, `denoised = yield x_t, t`, driven by `sample_*` for one run alone) and
callback ({"i", "x", "sigma", "sigma_next", "denoised"}, with "sigma" = t). Each update is the VE
sampler's update written in the finite quantities D and eps_hat = (x_t - (1 - t) D) / t (which is
x_t itself at t = 1), then scaled back by 1 - t'. Marginals and fixed points are those of the VE
samplers (tests check they agree where sigma is finite):
  euler     samplers.euler_steps unchanged: (x_t - D) / t = v exactly, so its step x + (t' - t) v is
            FlowMatchEulerDiscreteScheduler's.
  euler_a   ancestral Euler (eta live); ddim with eta is the same update (samplers.py), eta 0 = euler.
  ddpm      the posterior, which is ancestral at eta = 1.
  dpmpp_2m  DPM-Solver++(2M) (Lu et al. 2022) in log-SNR, second order; from t = 1 its first two
            steps are first order (the log-SNR of pure noise is -infinity).

The schedule reproduces FlowMatchEulerDiscreteScheduler's timesteps: the static `shift`
(SD3: 3.0, t' = s t / (1 + (s - 1) t)) or the resolution-dependent exponential shift by mu (FLUX:
mu linear in the number of image tokens, t' = e^mu / (e^mu + 1/t - 1)), and `shift_terminal`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.diffusion.samplers import (
    Callback,
    Denoiser,
    Live,
    NoiseFn,
    Steps,
    _ask,
    _emit,
    _levels,
    _noise,
    _read,
    ancestral_split,
    drive,
    euler_steps,
)

# CLIP guidance's score correction t^2 / (1 - t) is unbounded at t = 1 (pure noise says nothing of
# x0); it is capped at SD 1.x's largest, sigma_max^2 = 14.61^2, so a guidance scale means about the same.
GUIDANCE_WEIGHT_CAP = 14.61**2


def ve_sigma(t: float) -> float:
    """The VE noise level of flow time t: sigma = t / (1 - t), infinite at t = 1."""
    return math.inf if t >= 1.0 else t / (1.0 - t)


def noised(x0: Tensor | None, noise: Tensor, t: float) -> Tensor:
    """x_t = (1 - t) x0 + t eps; x0 = None stands for 0 (a start from noise at level t)."""
    return noise * t if x0 is None else x0 * (1.0 - t) + noise * t


def signal(t: float | Tensor) -> float | Tensor:
    """The x0 coefficient of x_t at time t."""
    return 1.0 - t


def guidance_weight(t: Tensor) -> Tensor:
    """The factor that turns a loss gradient g on x_t into an x0 correction: D - g t^2 / (1 - t),
    Tweedie's formula for x_t = (1 - t) x0 + t eps (a score correction s adds t^2 / (1 - t) s to D)."""
    t = t.double()
    return (t**2 / (1 - t).clamp(min=1e-12)).clamp(max=GUIDANCE_WEIGHT_CAP).float()


# --- schedule ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowSchedule:
    """The fields of a FlowMatchEulerDiscreteScheduler config that place the timesteps."""

    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    shift_terminal: float | None = None
    time_shift_type: str = "exponential"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FlowSchedule:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in config.items() if k in known and v is not None}
        if kept.get("time_shift_type", "exponential") not in ("exponential", "linear"):
            raise ValueError(f"unknown time_shift_type {kept['time_shift_type']!r}")
        return cls(**kept)

    def mu(self, image_seq_len: int) -> float:
        """The dynamic shift for `image_seq_len` image tokens: linear between (base_image_seq_len,
        base_shift) and (max_image_seq_len, max_shift), as the FLUX and SD3 pipelines compute it."""
        slope = (self.max_shift - self.base_shift) / (self.max_image_seq_len - self.base_image_seq_len)
        return image_seq_len * slope + self.base_shift - slope * self.base_image_seq_len


def shift_time(t: np.ndarray, shift: float) -> np.ndarray:
    """SD3's static shift: t' = s t / (1 + (s - 1) t) (Esser et al. 2024, §5.3.2)."""
    return shift * t / (1 + (shift - 1) * t)


def time_shift(t: np.ndarray, mu: float, kind: str = "exponential") -> np.ndarray:
    """The resolution-dependent shift: e^mu / (e^mu + 1/t - 1), or mu / (mu + 1/t - 1) ("linear")."""
    m = math.exp(mu) if kind == "exponential" else mu
    return m / (m + (1 / t - 1))


def flow_times(schedule: FlowSchedule, n: int, image_seq_len: int, *, pipeline_linspace: bool = False) -> Tensor:
    """The n times t an n-step run visits, descending from 1, then 0 (float64, float32-rounded
    values as the scheduler holds them).

    `pipeline_linspace`: the base times are linspace(1, 1/n, n), what FluxPipeline passes as
    `sigmas`; otherwise the scheduler's own, linspace over its (shifted) training range, as
    StableDiffusion3Pipeline uses it. The shift is then applied (dynamic: with mu from
    `image_seq_len`), then `shift_terminal`.
    """
    if n < 1:
        raise ValueError("need at least one step")
    if pipeline_linspace:
        base = np.linspace(1.0, 1 / n, n).astype(np.float32)  # as set_timesteps(sigmas=...) casts them
    else:
        big_n = schedule.num_train_timesteps
        train = torch.from_numpy(np.linspace(1, big_n, big_n, dtype=np.float32)[::-1].copy()) / big_n
        if not schedule.use_dynamic_shifting:
            train = schedule.shift * train / (1 + (schedule.shift - 1) * train)
        hi, lo = train[0].item(), train[-1].item()
        base = np.linspace(hi * big_n, lo * big_n, n) / big_n
    if schedule.use_dynamic_shifting:
        t = time_shift(base, schedule.mu(image_seq_len), schedule.time_shift_type)
    else:
        t = shift_time(base, schedule.shift)
    one_minus = 1 - t
    if schedule.shift_terminal and one_minus[-1] > 0:  # (a 1-step run is t = 1 alone: nothing to stretch)
        t = 1 - one_minus / (one_minus[-1] / (1 - schedule.shift_terminal))
    t32 = torch.from_numpy(np.asarray(t)).float().double()
    return torch.cat([t32, t32.new_zeros(1)])


# --- samplers ------------------------------------------------------------------------------------

def _times(ts: Tensor | Sequence[float]) -> list[float]:
    levels = _levels(ts)
    if any(not 0.0 <= t <= 1.0 for t in levels):
        raise ValueError("flow times must lie in [0, 1]")
    return levels


def _eps(x: Tensor, denoised: Tensor, t: float) -> Tensor:
    """eps_hat = (x_t - (1 - t) x0_hat) / t; x_t itself at t = 1."""
    return x if t >= 1.0 else (x - denoised * (1.0 - t)) / t


def flow_euler_steps(x: Tensor, ts: Tensor | Sequence[float], *,
                     callback: Callback | None = None, start_index: int = 0) -> Steps:
    """Euler on dx_t/dt = v = (x_t - D) / t: samplers.euler_steps itself (see the module docstring)."""
    return euler_steps(x, _times(ts), callback=callback, start_index=start_index)


def flow_ancestral_steps(x: Tensor, ts: Tensor | Sequence[float], *,
                         callback: Callback | None = None, start_index: int = 0, eta: Live = 1.0,
                         noise: NoiseFn | None = None) -> Steps:
    """Ancestral Euler in VE levels (samplers.euler_ancestral_steps): a deterministic step to
    sigma_down, fresh noise of std sigma_up, both in x_t / (1 - t); here scaled by 1 - t'."""
    s = _times(ts)
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
        down, up = ancestral_split(ve_sigma(s[i]), ve_sigma(s[i + 1]), _read(eta))
        keep = 1.0 - s[i + 1]
        x = (denoised + _eps(x, denoised, s[i]) * down) * keep
        if up > 0:
            x = x + _noise(noise, i, x) * (up * keep)
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def flow_dpmpp_2m_steps(x: Tensor, ts: Tensor | Sequence[float], *,
                        callback: Callback | None = None, start_index: int = 0,
                        old_denoised: Tensor | None = None) -> Steps:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) with alpha = 1 - t, sigma = t.

    In VE levels sigma = t / (1 - t) the step is x' = r x + (1 - r) d with r = sigma'/sigma;
    written with x = D + sigma eps_hat that is r D + sigma' eps_hat + (1 - r) d, finite at t = 1.
    d is D, or D(1 + 1/(2 q)) - D_prev / (2 q) with q the ratio of the last two log-SNR steps.
    Resume as samplers.dpmpp_2m_steps: `old_denoised` is step start_index - 1's x0 estimate.
    """
    s = _times(ts)
    sig = [ve_sigma(t) for t in s]
    prev = old_denoised if start_index > 0 else None
    for i in range(start_index, len(s) - 1):
        denoised = yield _ask(x, s[i])
        if s[i + 1] == 0.0:
            x = denoised
        else:
            ratio = sig[i + 1] / sig[i]
            d = denoised
            if prev is not None:
                q = (math.log(sig[i - 1]) - math.log(sig[i])) / (math.log(sig[i]) - math.log(sig[i + 1]))
                d = denoised * (1 + 1 / (2 * q)) - prev * (1 / (2 * q))
            x = (denoised * ratio + _eps(x, denoised, s[i]) * sig[i + 1] + d * (1 - ratio)) * (1.0 - s[i + 1])
        prev = denoised
        _emit(callback, i, x, s[i], s[i + 1], denoised)
    return x


def sample_flow_euler(model: Denoiser, x: Tensor, ts: Tensor | Sequence[float], *,
                      callback: Callback | None = None, start_index: int = 0) -> Tensor:
    """`flow_euler_steps` driven by `model`."""
    return drive(flow_euler_steps(x, ts, callback=callback, start_index=start_index), model)


def sample_flow_ancestral(model: Denoiser, x: Tensor, ts: Tensor | Sequence[float], *,
                          callback: Callback | None = None, start_index: int = 0, eta: Live = 1.0,
                          noise: NoiseFn | None = None) -> Tensor:
    """`flow_ancestral_steps` driven by `model`."""
    return drive(flow_ancestral_steps(x, ts, callback=callback, start_index=start_index, eta=eta, noise=noise),
                 model)


def sample_flow_dpmpp_2m(model: Denoiser, x: Tensor, ts: Tensor | Sequence[float], *,
                         callback: Callback | None = None, start_index: int = 0,
                         old_denoised: Tensor | None = None) -> Tensor:
    """`flow_dpmpp_2m_steps` driven by `model`."""
    return drive(flow_dpmpp_2m_steps(x, ts, callback=callback, start_index=start_index,
                                     old_denoised=old_denoised), model)


FLOW_SAMPLERS = ("euler", "euler_a", "ddim", "ddpm", "dpmpp_2m")


def flow_sampler_steps(name: str, x: Tensor, ts: Tensor | Sequence[float], *,
                       callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                       noise: NoiseFn | None = None, old_denoised: Tensor | None = None) -> Steps:
    """The steps of the flow sampler named as in `DiffusionParams.sampler` (samplers.sampler_steps'
    names): ddim is ancestral Euler with the live eta, ddpm ancestral at eta = 1."""
    common = {"callback": callback, "start_index": start_index}
    if name == "euler":
        return flow_euler_steps(x, ts, **common)
    if name in ("euler_a", "ddim"):
        return flow_ancestral_steps(x, ts, eta=eta, noise=noise, **common)
    if name == "ddpm":
        return flow_ancestral_steps(x, ts, eta=1.0, noise=noise, **common)
    if name == "dpmpp_2m":
        return flow_dpmpp_2m_steps(x, ts, old_denoised=old_denoised, **common)
    raise ValueError(f"unknown sampler {name!r}")


def run_flow_sampler(name: str, model: Denoiser, x: Tensor, ts: Tensor | Sequence[float], *,
                     callback: Callback | None = None, start_index: int = 0, eta: Live = 0.0,
                     noise: NoiseFn | None = None, old_denoised: Tensor | None = None) -> Tensor:
    """`flow_sampler_steps(name, ...)` driven by `model`, as samplers.run_sampler."""
    return drive(flow_sampler_steps(name, x, ts, callback=callback, start_index=start_index, eta=eta, noise=noise,
                                    old_denoised=old_denoised), model)
